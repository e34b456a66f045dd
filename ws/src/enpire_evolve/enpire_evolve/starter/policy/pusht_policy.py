"""The PushT policy this agent owns. It starts as the naive baseline.

enpire imports this module in a sandbox and calls ``make_policy()`` (or
``make_policy(params={...})`` when a recipe tunes it), then ``reset(seed)`` and
``act(obs)`` at 10 Hz. Observations: ``tip`` ([u, v] workspace px), ``tip_height`` (m above
the table), ``block_pose`` ([x, y, theta] of the T, or None when it is not seen),
``goal_pose``, ``step``, ``dt``. Actions: ``{"tip": [u, v], "lift": bool}`` (``lift`` keeps the
tip above the block while it moves).

How it works: each step ``plan_push`` says where to push the block and which way,
``approach`` brings the tip there, and once the tip is down at the contact it pushes
``push_length`` px along the planned direction. All of it, and ``PARAMS``, is yours to change;
keep ``tests/`` passing. This file imports only the standard library and numpy.
"""

from __future__ import annotations

import numpy as np

PARAMS = {"standoff": 45.0, "step": 12.0, "approach_gap": 5.0, "engage_tol": 4.0}

WORKSPACE = (25.0, 487.0)  # px: where the tool tip may go
LOST_CONTACT = 25.0  # px: a pushing tip this far from its contact has lost the block


def plan_push(obs: dict, memory: dict, p: dict) -> dict | None:
    """The next push, or None when there is nothing to push. Keys: ``touch`` (where the tip's
    centre is when it touches the block, world px), ``normal`` (unit, from the block out toward
    the tip), ``direction`` (unit push direction), ``length`` (px of push still wanted) and
    ``key`` (which contact: a change of key means the tip must go round to a new place).

    Naive: push through the block's position toward the goal position; orientation ignored."""
    block = np.asarray(obs["block_pose"][:2], dtype=float)
    goal = np.asarray(obs["goal_pose"][:2], dtype=float)
    d = goal - block
    dist = float(np.linalg.norm(d))
    if dist < 2.0:
        return None
    u = d / dist
    touch = np.clip(block - u * p["standoff"], *WORKSPACE)
    return {"touch": touch, "normal": -u, "direction": u, "length": dist, "key": "centre"}


def approach(obs: dict, target: np.ndarray, memory: dict, p: dict) -> dict:
    """Move the tip to ``target`` (just outside the contact). Naive: lifted all the way, then
    lowered there."""
    return {"tip": target.tolist(), "lift": True}


def push_length(plan: dict, p: dict) -> float:
    """How far to push this step. Naive: always the same step."""
    return float(p["step"])


class AgentPolicy:
    name = "agent_policy"

    def __init__(self, params: dict):
        self.params = dict(params)
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.memory = {"key": None, "engaged": False}

    def act(self, obs: dict) -> dict:
        p, mem = self.params, self.memory
        tip = np.asarray(obs["tip"], dtype=float)
        if obs.get("block_pose") is None:
            mem["engaged"] = False
            return {"tip": tip.tolist(), "lift": True}
        plan = plan_push(obs, mem, p)
        if plan is None:
            mem["engaged"] = False
            return {"tip": tip.tolist(), "lift": True}
        touch = np.asarray(plan["touch"], dtype=float)
        if plan["key"] != mem["key"] or np.linalg.norm(tip - touch) > LOST_CONTACT:
            mem["engaged"] = False  # a new contact, or the block got away: go round again
        mem["key"] = plan["key"]
        if mem["engaged"]:
            step = push_length(plan, p)
            return {"tip": (touch + np.asarray(plan["direction"]) * step).tolist(), "lift": False}
        start = touch + np.asarray(plan["normal"]) * p["approach_gap"]
        start = np.clip(start, *WORKSPACE)
        if np.linalg.norm(tip - start) <= p["engage_tol"]:
            mem["engaged"] = obs.get("tip_height", 0.0) < 0.02
            return {"tip": start.tolist(), "lift": False}
        return approach(obs, start, mem, p)

    def metadata(self) -> dict:
        return {"name": self.name, "params": self.params, "needs_image": False}


def make_policy(params: dict | None = None) -> AgentPolicy:
    return AgentPolicy({**PARAMS, **(params or {})})
