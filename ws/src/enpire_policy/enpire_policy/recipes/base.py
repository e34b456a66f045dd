"""What every recipe shares: the request, error codes, progress/cancel hooks, validated
hyper-parameters and the evaluation of a policy in the simulated cell."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path


class TrainErrorCode(IntEnum):  # mirrors enpire_msgs/action/Train result constants
    NONE = 0
    UNKNOWN = 300
    UNKNOWN_RECIPE = 301
    EMPTY_DATA = 302
    INVALID_HYPERPARAMETERS = 303
    POLICY_LOAD_FAILED = 304
    POLICY_ERROR = 305
    BUDGET_EXHAUSTED = 306
    TRAINING_FAILED = 307
    CANCELED = 308


class TrainError(Exception):
    def __init__(self, code: TrainErrorCode, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


class CanceledError(Exception):
    pass


@dataclass
class TrainRequest:
    recipe: str
    policy: dict = field(default_factory=dict)  # PolicyRef fields
    task: str = "pusht"
    episode_ids: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    hyperparameters: dict = field(default_factory=dict)
    time_budget: float = 0.0
    device: str = ""


@dataclass
class TrainContext:
    artifact_dir: Path
    progress: Callable[..., None] = lambda **kw: None  # stage, progress, iteration, total, ...
    canceled: Callable[[], bool] = lambda: False
    deadline: float = math.inf  # time.monotonic() value

    def check(self) -> None:
        import time

        if self.canceled():
            raise CanceledError()
        if time.monotonic() > self.deadline:
            raise TrainError(TrainErrorCode.BUDGET_EXHAUSTED, "the compute budget ran out")


def parse_hyperparameters(cls, raw) -> object:
    """Build the recipe's hyper-parameter dataclass from a dict or JSON text, rejecting unknown
    names, wrong types and invalid values with INVALID_HYPERPARAMETERS."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as e:
            raise TrainError(TrainErrorCode.INVALID_HYPERPARAMETERS, f"not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise TrainError(TrainErrorCode.INVALID_HYPERPARAMETERS, "must be a JSON object")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise TrainError(
            TrainErrorCode.INVALID_HYPERPARAMETERS,
            f"unknown hyper-parameters {unknown}; known: {sorted(names)}",
        )
    try:
        return cls(**raw)
    except (TypeError, ValueError) as e:
        raise TrainError(TrainErrorCode.INVALID_HYPERPARAMETERS, str(e)) from None


def check_fields(obj, positive=(), non_negative=(), unit=()) -> None:
    """Validate numeric fields of a hyper-parameter dataclass (raises ValueError)."""
    for name in (*positive, *non_negative, *unit):
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    for name in positive:
        if getattr(obj, name) <= 0:
            raise ValueError(f"{name} must be > 0, got {getattr(obj, name)}")
    for name in non_negative:
        if getattr(obj, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(obj, name)}")
    for name in unit:
        if not 0 <= getattr(obj, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(obj, name)}")


def module_name(ref: dict) -> str:
    """A PolicyRef's module ("policy/pusht.py" or "policy.pusht") as a dotted name."""
    m = ref.get("module") or "policy"
    if m.endswith(".py"):
        m = m[:-3]
    return m.replace("/", ".").strip(".")


BUILTIN_POLICIES = ("heuristic", "naive")


def build_policy(ref: dict, kwargs: dict | None = None, cache_dir: str | None = None):
    """The policy a PolicyRef names: a built-in (in-process) or agent code (sandboxed)."""
    from enpire_policy.sandbox import PolicyError, PolicySource, SandboxedPolicy

    kwargs = kwargs or {}
    if not ref.get("repo_path"):
        name = ref.get("name") or "heuristic"
        if name == "heuristic":
            from enpire_policy.heuristic import HeuristicPushT

            return HeuristicPushT(kwargs.get("params"))
        if name == "naive":
            from enpire_policy.naive import NaivePolicy

            return NaivePolicy()
        raise TrainError(
            TrainErrorCode.POLICY_LOAD_FAILED,
            f"unknown built-in policy '{name}' (known: {', '.join(BUILTIN_POLICIES)}); "
            "agent code needs policy.repo_path",
        )
    try:
        src = PolicySource(ref["repo_path"], module_name(ref), ref.get("commit") or None,
                           kwargs=kwargs)  # fmt: skip
        return SandboxedPolicy(src, cache_dir=cache_dir).start()
    except PolicyError as e:
        raise TrainError(TrainErrorCode.POLICY_LOAD_FAILED, str(e)) from None


def evaluate(policy, seeds, max_steps: int = 300, ctx: TrainContext | None = None) -> dict:
    """Success rate and mean steps of a policy over seeded episodes in the simulated cell;
    a policy that crashes, hangs or misbehaves fails with POLICY_ERROR."""
    from enpire_env.sim_cell import PushTCell
    from enpire_policy.episode import run_episode

    cell = PushTCell()
    ok, steps = 0, []
    for s in seeds:
        if ctx is not None:
            ctx.check()
        r = run_episode(policy, int(s), cell, max_steps=max_steps)
        if r.error:
            raise TrainError(TrainErrorCode.POLICY_ERROR, f"episode seed {s}: {r.error}")
        ok += r.success
        steps.append(r.steps)
    n = max(len(seeds), 1)
    return {"success_rate": ok / n, "episodes": len(seeds), "mean_steps": sum(steps) / n}
