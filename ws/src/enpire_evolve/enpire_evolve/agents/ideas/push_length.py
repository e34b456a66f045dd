"""Push-length control: push a fraction of what is left, within bounds, instead of a fixed step.

A fixed step overshoots near the goal (the block passes its pose and has to come back) and is
slow far from it. Push ``push_gain`` of the remaining optimal push, at least ``min_push`` and at
most ``max_push`` px per step.
"""

import numpy as np

IDEA = {
    "title": "push-length control",
    "replaces": ["push_length"],
    "requires": [],
    "cures": "overshoot",
}

PARAMS = {"push_gain": 0.5, "max_push": 20.0, "min_push": 1.5}


def push_length(plan: dict, p: dict) -> float:
    """A fraction of the push still wanted, bounded."""
    return float(np.clip(p["push_gain"] * plan["length"], p["min_push"], p["max_push"]))
