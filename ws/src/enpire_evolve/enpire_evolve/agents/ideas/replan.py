"""Closed-loop contact choice: re-plan every step and switch contacts when it pays.

Pushing one contact until it stops helping wastes steps once the block has turned: another
contact would do much better. Score contacts by what they remove minus what it costs to get
there (``travel_cost`` per px, ``reposition_cost`` for the lift and lower), and leave the current
contact when another is ``switch_ratio`` times better.
"""

import numpy as np

IDEA = {
    "title": "closed-loop correction: re-plan the contact while pushing",
    "replaces": ["contact_scores", "worth_switching"],
    "requires": ["contact_model"],
    "cures": "stalled",
}

PARAMS = {"travel_cost": 0.05, "reposition_cost": 20.0, "switch_ratio": 1.5}


def contact_scores(gains: np.ndarray, travel: np.ndarray, p: dict) -> np.ndarray:
    """What a push there removes, less the cost of getting there."""
    return gains - p["travel_cost"] * travel - p["reposition_cost"]


def worth_switching(current: float, best: float, p: dict) -> bool:
    """Switch when another contact is ``switch_ratio`` times better than the current one."""
    return current * p["switch_ratio"] < best
