"""Approach paths that lift over the block: go round to a new contact without knocking the T.

Sliding low straight to the next contact drags the tip across the block whenever the contact
is on its far side, undoing the last pushes. Slide low only when the straight path keeps clear
of the T by more than the tip's radius; otherwise lift, move, and lower beside the contact.
"""

import math

import numpy as np

IDEA = {
    "title": "approach paths that lift over the block",
    "replaces": ["approach"],
    "requires": [],
    "cures": "knocked",
}

TIP_RADIUS = 15.0  # px
CLEARANCE = 2.0  # px kept between the sliding tip and the T
TEE_BOXES = ((-60.0, 60.0, 0.0, 30.0), (-15.0, 15.0, 30.0, 120.0))  # the T in its frame


def path_is_clear(a: np.ndarray, b: np.ndarray, pose) -> bool:
    """Whether a tip sliding from a to b (world px) stays clear of the T at ``pose``."""
    n = max(int(np.hypot(*(b - a)) / 4.0), 1)
    pts = a + (b - a) * np.linspace(0, 1, n + 1)[:, None]
    c, s = math.cos(pose[2]), math.sin(pose[2])
    local = (pts - np.asarray(pose[:2], dtype=float)) @ np.array([[c, -s], [s, c]])
    d = np.full(len(local), np.inf)
    for x0, x1, y0, y1 in TEE_BOXES:
        dx = np.maximum(np.maximum(x0 - local[:, 0], local[:, 0] - x1), 0)
        dy = np.maximum(np.maximum(y0 - local[:, 1], local[:, 1] - y1), 0)
        d = np.minimum(d, np.hypot(dx, dy))
    return bool(np.all(d > TIP_RADIUS + CLEARANCE))


def approach(obs: dict, target: np.ndarray, memory: dict, p: dict) -> dict:
    """Slide low when the way is clear, otherwise lift over the block."""
    tip = np.asarray(obs["tip"], dtype=float)
    low = obs.get("tip_height", 0.0) < 0.02
    clear = path_is_clear(tip, np.asarray(target, dtype=float), obs["block_pose"])
    return {"tip": list(map(float, target)), "lift": not (low and clear)}
