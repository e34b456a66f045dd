"""The policy interface every enpire policy implements (shipped, trained or agent-written).

A policy is a plain Python class; enpire calls it at 10 Hz::

    class Policy:
        def reset(self, seed: int) -> None: ...          # a new episode starts
        def act(self, obs: dict) -> dict: ...             # one control step
        def metadata(self) -> dict: ...                   # name, version, parameters

Observations (``obs``) hold plain lists/floats so they cross process boundaries as JSON:

- ``block_pose``: ``[x, y, theta]`` of the T in workspace px (gym-pusht's frame) as the camera
  estimates it, or None when the block is not seen
- ``tip``: ``[u, v]`` tool tip in workspace px; ``tip_height``: metres above the table
- ``joints``: the six joint positions [rad] (SO-101 order); ``step``: index from 0; ``dt``: s
- ``goal_pose``: ``[x, y, theta]`` of the target region
- ``image``: top-down RGB (H x W x 3 uint8), only for policies that ask for it
  (``metadata()["needs_image"] = True``)

Actions (the return of ``act``) are one of:

- ``{"tip": [u, v], "lift": False}`` — move the tool tip to a workspace point, low enough to
  push (``lift: True`` keeps it above the block, to reposition without touching it);
- ``{"joints": [q0, ..., q5]}`` — joint position targets, passed on unchanged.

Both go through the safety filter; enpire converts tip targets with IK on the SO-101 URDF.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np


class ActionError(ValueError):
    """An action enpire cannot execute (wrong keys, shapes or non-finite values)."""


@dataclass(frozen=True)
class Action:
    tip: tuple[float, float] | None = None
    lift: bool = False
    joints: tuple[float, ...] | None = None

    @classmethod
    def parse(cls, raw) -> Action:
        """Validate what a policy returned; raise ActionError saying what is wrong."""
        if isinstance(raw, Action):
            raw = raw.to_dict()
        if not isinstance(raw, dict):
            raise ActionError(f"action must be a dict, got {type(raw).__name__}")
        unknown = set(raw) - {"tip", "lift", "joints"}
        if unknown:
            raise ActionError(f"unknown action keys {sorted(unknown)}")
        if ("tip" in raw) == ("joints" in raw):
            raise ActionError("action needs exactly one of 'tip' or 'joints'")
        if "tip" in raw:
            tip = _floats(raw["tip"], 2, "tip")
            return cls(tip=(tip[0], tip[1]), lift=bool(raw.get("lift", False)))
        return cls(joints=tuple(_floats(raw["joints"], 6, "joints")))

    def to_dict(self) -> dict:
        if self.joints is not None:
            return {"joints": list(self.joints)}
        return {"tip": list(self.tip), "lift": self.lift}


def _floats(value, n: int, name: str) -> list[float]:
    try:
        arr = [float(v) for v in np.asarray(value, dtype=float).reshape(-1)]
    except (TypeError, ValueError) as e:
        raise ActionError(f"'{name}' must be {n} numbers: {e}") from None
    if len(arr) != n:
        raise ActionError(f"'{name}' must have {n} values, got {len(arr)}")
    if not all(math.isfinite(v) for v in arr):
        raise ActionError(f"'{name}' has non-finite values: {arr}")
    return arr


class Policy(abc.ABC):
    """Base class for policies (subclassing it is optional: duck typing is enough)."""

    name = "policy"

    def reset(self, seed: int) -> None:  # noqa: B027  (optional hook)
        """Called before each episode."""

    @abc.abstractmethod
    def act(self, obs: dict) -> dict:
        """Return an action dict for an observation dict."""

    def metadata(self) -> dict:
        return {"name": self.name, "needs_image": False}
