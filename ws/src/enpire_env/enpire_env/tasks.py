"""Task definitions: names, start-state layout and the benchmark's initial-state distribution.

ROS-free. A task's *start state* is what a reset must establish; for PushT it is the block pose
``(x, y, theta)`` in the 512 x 512 px workspace of gym-pusht.
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass

import numpy as np


class UnknownTaskError(KeyError):
    """Raised for a task name that is not registered."""


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    state_names: tuple[str, ...]
    state_low: tuple[float, ...]
    state_high: tuple[float, ...]
    max_steps: int
    control_hz: float

    def sample_start_state(self, seed: int) -> np.ndarray:
        raise NotImplementedError

    def validate_start_state(self, state) -> np.ndarray:
        """Return ``state`` as a float array, or raise ValueError saying what is wrong."""
        arr = np.asarray(state, dtype=float).reshape(-1)
        if arr.shape != (len(self.state_names),):
            raise ValueError(
                f"task '{self.name}' start state needs {len(self.state_names)} values "
                f"{list(self.state_names)}, got {arr.size}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"task '{self.name}' start state has non-finite values: {arr}")
        lo, hi = np.asarray(self.state_low), np.asarray(self.state_high)
        bad = (arr < lo) | (arr > hi)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"task '{self.name}' start state {self.state_names[i]}={arr[i]:g} is outside "
                f"[{lo[i]:g}, {hi[i]:g}]"
            )
        return arr


@dataclass(frozen=True)
class PushTTask(TaskSpec):
    goal_pose: tuple[float, float, float] = (256.0, 256.0, math.pi / 4)

    def sample_start_state(self, seed: int) -> np.ndarray:
        """The block pose gym-pusht's ``reset(seed=seed)`` produces (its own sampler and physics).

        gym-pusht draws a position and angle, then sets the angle about the centre of mass and
        steps the physics once, so the pose it starts from is not the drawn numbers: we ask the
        package rather than reimplement that.
        """
        with _PUSHT_LOCK:
            env = _pusht_env()
            obs, _ = env.reset(seed=int(seed))
        x, y, theta = (float(v) for v in obs[2:5])
        return np.array([x, y, wrap_angle(theta)])


_PUSHT_LOCK = threading.Lock()


@functools.cache
def _pusht_env():
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    return gym.make("gym_pusht/PushT-v0", obs_type="state").unwrapped


def wrap_angle(a: float) -> float:
    """Angle in [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


PUSHT = PushTTask(
    name="pusht",
    description="Push the T-shaped block onto the goal pose (gym-pusht PushT-v0).",
    state_names=("block_x", "block_y", "block_theta"),
    state_low=(0.0, 0.0, -math.pi),
    state_high=(512.0, 512.0, math.pi),
    max_steps=300,
    control_hz=10.0,
)

TASKS: dict[str, TaskSpec] = {PUSHT.name: PUSHT}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task '{name}'; known tasks: {', '.join(sorted(TASKS))}"
        ) from None
