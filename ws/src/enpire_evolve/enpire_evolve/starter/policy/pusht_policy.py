"""The PushT policy this agent owns. It starts as the naive baseline.

enpire imports this module in a sandbox and calls ``make_policy()`` (or
``make_policy(params={...})`` when a recipe tunes it), then ``reset(seed)`` and
``act(obs)`` at 10 Hz. See ``enpire_policy.interface`` for observations and actions.

``STRATEGY`` picks one of the strategies below and ``PARAMS`` holds its numbers; both, and the
strategies themselves, are yours to change. Keep ``tests/`` passing.
"""

from __future__ import annotations

import math

import numpy as np

STRATEGY = "centre_push"
PARAMS = {"standoff": 45.0, "step": 12.0}

# what each strategy starts from when it is first chosen
DEFAULTS = {
    "centre_push": {"standoff": 45.0, "step": 12.0},
    "turn_then_push": {"standoff": 45.0, "step": 10.0, "lever": 50.0, "turn_tol": 0.3},
    "contact_planning": {"angle_weight": 15.0, "max_push": 6.0},
}

WORKSPACE = (25.0, 487.0)  # px: where the tool tip may go


class CentrePush:
    """Push straight at the block's centre, toward the goal position (ignores orientation)."""

    def __init__(self, standoff: float = 45.0, step: float = 12.0):
        self.standoff, self.step = standoff, step
        self.pushing = False

    def reset(self, seed: int) -> None:
        self.pushing = False

    def _push_toward(self, obs: dict, point: np.ndarray, target: np.ndarray) -> dict:
        tip = np.asarray(obs["tip"], dtype=float)
        d = target - point
        dist = float(np.linalg.norm(d))
        if dist < 2.0:
            self.pushing = False
            return {"tip": tip.tolist(), "lift": True}
        u = d / dist
        behind = np.clip(point - u * self.standoff, *WORKSPACE)
        if self.pushing and np.linalg.norm(tip - point) > self.standoff + 25:
            self.pushing = False  # lost the block: go round again
        if not self.pushing:
            if np.linalg.norm(tip - behind) > 5.0:
                return {"tip": behind.tolist(), "lift": True}
            self.pushing = obs.get("tip_height", 0.0) < 0.02
            return {"tip": behind.tolist(), "lift": False}
        return {"tip": (tip + u * min(self.step, dist)).tolist(), "lift": False}

    def act(self, obs: dict) -> dict:
        pose = obs.get("block_pose")
        if pose is None:
            return {"tip": list(obs["tip"]), "lift": True}
        block = np.asarray(pose[:2], dtype=float)
        return self._push_toward(obs, block, np.asarray(obs["goal_pose"][:2], dtype=float))


class TurnThenPush(CentrePush):
    """First turn the T by pushing one end of its bar sideways, then push its centre home."""

    def __init__(self, standoff=45.0, step=10.0, lever=50.0, turn_tol=0.3):
        super().__init__(standoff, step)
        self.lever, self.turn_tol = lever, turn_tol

    def act(self, obs: dict) -> dict:
        pose = obs.get("block_pose")
        if pose is None:
            return {"tip": list(obs["tip"]), "lift": True}
        x, y, th = (float(v) for v in pose)
        err = (float(obs["goal_pose"][2]) - th + math.pi) % (2 * math.pi) - math.pi
        if abs(err) < self.turn_tol:
            return super().act(obs)
        end = np.array([x + self.lever * math.cos(th), y + self.lever * math.sin(th)])
        side = np.array([-math.sin(th), math.cos(th)]) * math.copysign(1.0, err)
        return self._push_toward(obs, end, end + side * 40.0)


class ContactPlanning:
    """Contact planning on the T's outline with a quasi-static push model (enpire's planner);
    PARAMS are fields of ``enpire_policy.heuristic.HeuristicParams``."""

    def __init__(self, **params):
        from enpire_policy.heuristic import HeuristicParams, HeuristicPushT

        self.inner = HeuristicPushT(HeuristicParams.from_dict(params))

    def reset(self, seed: int) -> None:
        self.inner.reset(seed)

    def act(self, obs: dict) -> dict:
        return self.inner.act(obs)


STRATEGIES = {
    "centre_push": CentrePush,
    "turn_then_push": TurnThenPush,
    "contact_planning": ContactPlanning,
}


class AgentPolicy:
    name = "agent_policy"

    def __init__(self, strategy: str, params: dict):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; known: {sorted(STRATEGIES)}")
        self.strategy, self.params = strategy, dict(params)
        self.impl = STRATEGIES[strategy](**self.params)

    def reset(self, seed: int) -> None:
        self.impl.reset(seed)

    def act(self, obs: dict) -> dict:
        return self.impl.act(obs)

    def metadata(self) -> dict:
        return {"name": self.name, "strategy": self.strategy, "params": self.params,
                "needs_image": False}  # fmt: skip


def make_policy(params: dict | None = None, strategy: str | None = None) -> AgentPolicy:
    strategy = strategy or STRATEGY
    merged = dict(PARAMS if strategy == STRATEGY else DEFAULTS.get(strategy, {}))
    merged.update(params or {})
    return AgentPolicy(strategy, merged)
