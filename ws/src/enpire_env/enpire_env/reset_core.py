"""The ROS-free core of the Reset action: goal validation, per-robot exclusion, routines.

The node (``env_node``) only maps the action onto this module.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from enpire_env.tasks import UnknownTaskError, get_task

RESET_MODES = ("pick_place", "teleport")


class ResetErrorCode(enum.IntEnum):
    """Mirrors the constants of ``enpire_msgs/action/Reset`` (checked by a test)."""

    NONE = 0
    UNKNOWN = 100
    UNKNOWN_ROBOT = 101
    UNKNOWN_TASK = 102
    ROBOT_BUSY = 103
    INVALID_GOAL = 104
    CELL_UNAVAILABLE = 105
    GRASP_FAILED = 106
    VERIFICATION_FAILED = 107
    TIMEOUT = 108
    CANCELED = 109
    PLANNING_FAILED = 110


class ResetError(Exception):
    def __init__(self, code: ResetErrorCode, msg: str):
        super().__init__(msg)
        self.code = code
        self.msg = msg


MAX_ATTEMPTS = 10  # enpire_msgs/action/Reset Goal.MAX_ATTEMPTS


@dataclass
class ResetRequest:
    robot_id: str
    task: str
    seed: int = -1
    mode: str = ""
    start_state: list[float] = field(default_factory=list)
    max_attempts: int = 0


@dataclass
class ResetPlan:
    """A validated request with every default filled in."""

    robot_id: str
    task: str
    seed: int
    mode: str
    start_state: np.ndarray
    max_attempts: int


@dataclass
class ResetOutcome:
    success: bool
    error_code: ResetErrorCode = ResetErrorCode.NONE
    error_msg: str = ""
    verified_state: list[float] = field(default_factory=list)
    attempts: int = 0
    robot_seconds: float = 0.0


def validate(
    req: ResetRequest,
    robots: Iterable[str],
    default_mode: str,
    default_max_attempts: int,
    rng: np.random.Generator | None = None,
) -> ResetPlan:
    """Check a goal and fill in defaults; raise ResetError with a code and message."""
    robots = list(robots)
    if req.robot_id not in robots:
        raise ResetError(
            ResetErrorCode.UNKNOWN_ROBOT,
            f"unknown robot '{req.robot_id}'; this server resets: {', '.join(robots) or 'none'}",
        )
    try:
        task = get_task(req.task)
    except UnknownTaskError as e:
        raise ResetError(ResetErrorCode.UNKNOWN_TASK, str(e.args[0])) from None
    mode = req.mode or default_mode
    if mode not in RESET_MODES:
        raise ResetError(
            ResetErrorCode.INVALID_GOAL,
            f"unknown reset mode '{mode}'; use one of: {', '.join(RESET_MODES)}",
        )
    if not 0 <= req.max_attempts <= MAX_ATTEMPTS:
        raise ResetError(
            ResetErrorCode.INVALID_GOAL,
            f"max_attempts must be 0 (node default) .. {MAX_ATTEMPTS}, got {req.max_attempts}",
        )
    seed = int(req.seed)
    if seed < 0:
        seed = int((rng or np.random.default_rng()).integers(0, 2**31 - 1))
    if len(req.start_state) > 0:
        try:
            state = task.validate_start_state(req.start_state)
        except ValueError as e:
            raise ResetError(ResetErrorCode.INVALID_GOAL, str(e)) from None
    else:
        state = task.sample_start_state(seed)
    return ResetPlan(
        robot_id=req.robot_id,
        task=task.name,
        seed=seed,
        mode=mode,
        start_state=state,
        max_attempts=req.max_attempts or default_max_attempts,
    )


class ResetRun:
    """One reset in progress on a robot: the request it serves and, once :meth:`finish` is
    called, its outcome (whatever the owner stores there)."""

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.outcome = None
        self._done = threading.Event()

    def finish(self, outcome) -> None:
        self.outcome = outcome
        self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


class RobotLocks:
    """At most one reset per robot at a time. A request identical to the one a robot is
    running — the same goal sent again by a client that never got its first copy's answer (a
    lost or slow service response) — joins that run instead of being refused as busy."""

    def __init__(self) -> None:
        self._runs: dict[str, ResetRun] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(req: ResetRequest) -> tuple:
        return (
            req.robot_id,
            req.task,
            req.seed,
            req.mode,
            tuple(req.start_state),
            req.max_attempts,
        )

    def claim(self, req: ResetRequest) -> tuple[ResetRun | None, bool]:
        """``(run, True)``: the caller owns a new run and must :meth:`release` it;
        ``(run, False)``: the same request is running, wait for ``run``; ``(None, False)``:
        the robot is busy with another request."""
        key = self.key(req)
        with self._lock:
            running = self._runs.get(req.robot_id)
            if running is None:
                run = self._runs[req.robot_id] = ResetRun(key)
                return run, True
            return (running, False) if running.key == key else (None, False)

    def release(self, robot_id: str, outcome=None) -> None:
        with self._lock:
            run = self._runs.pop(robot_id, None)
        if run is not None:
            run.finish(outcome)

    def busy(self) -> set[str]:
        with self._lock:
            return set(self._runs)
