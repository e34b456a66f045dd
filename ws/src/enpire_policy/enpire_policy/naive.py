"""The deliberately naive baseline: push straight at the block's centre, toward the goal.

It is where the agents start in the demo; it solves few episodes.
"""

from __future__ import annotations

import numpy as np

from enpire_policy.interface import Policy


class NaivePolicy(Policy):
    name = "naive"

    def __init__(self, standoff: float = 45.0, step: float = 12.0):
        self.standoff = standoff  # px behind the block's centre where a push starts
        self.step = step  # px of tip travel per control step while pushing
        self.pushing = False

    def reset(self, seed: int) -> None:
        self.pushing = False

    def metadata(self) -> dict:
        return {"name": self.name, "needs_image": False, "standoff": self.standoff,
                "step": self.step}  # fmt: skip

    def act(self, obs: dict) -> dict:
        tip = np.asarray(obs["tip"], dtype=float)
        pose = obs.get("block_pose")
        if pose is None:
            return {"tip": tip.tolist(), "lift": True}
        block = np.asarray(pose[:2], dtype=float)
        d = np.asarray(obs["goal_pose"][:2], dtype=float) - block
        dist = float(np.linalg.norm(d))
        if dist < 2.0:
            self.pushing = False
            return {"tip": tip.tolist(), "lift": True}
        u = d / dist
        behind = np.clip(block - u * self.standoff, 25.0, 487.0)
        if self.pushing and np.linalg.norm(tip - block) > self.standoff + 25:
            self.pushing = False  # lost the block: go round again
        if not self.pushing:
            if np.linalg.norm(tip - behind) > 5.0:
                return {"tip": behind.tolist(), "lift": True}
            self.pushing = obs.get("tip_height", 0.0) < 0.02
            return {"tip": behind.tolist(), "lift": False}
        return {"tip": (tip + u * min(self.step, dist)).tolist(), "lift": False}


def make_policy() -> NaivePolicy:
    return NaivePolicy()
