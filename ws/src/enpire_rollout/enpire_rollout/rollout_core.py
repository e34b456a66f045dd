"""Rollout goal checks and results, ROS-free."""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from enpire_policy.policy_ref import PolicyRef
from enpire_policy.recipes.base import BUILTIN_POLICIES, module_name
from enpire_policy.sandbox import PolicySource


class RolloutErrorCode(IntEnum):  # mirrors enpire_msgs/action/Rollout result constants
    NONE = 0
    UNKNOWN = 200
    UNKNOWN_POLICY = 201
    UNKNOWN_TASK = 202
    UNKNOWN_ROBOT = 203
    INVALID_EPISODE_COUNT = 204
    BUDGET_INFEASIBLE = 205
    BUDGET_EXHAUSTED = 206
    NO_ROBOTS = 207
    POLICY_ERROR = 208
    CANCELED = 209
    RESET_FAILED = 210


class RolloutError(Exception):
    def __init__(self, code: RolloutErrorCode, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


@dataclass
class RolloutRequest:
    policy: PolicyRef
    task: str
    num_episodes: int
    robot_ids: list[str]
    num_robots: int
    time_budget: float
    seed: int
    agent_id: str
    priority: int = 0  # the scheduler's: higher first


def policy_source(ref: PolicyRef | dict) -> PolicySource:
    """Where the worker imports the policy from, for a PolicyRef; raises RolloutError."""
    ref = PolicyRef.from_any(ref)
    if ref.artifact:
        path = Path(ref.artifact)
        if not (path / "manifest.json").is_file():
            raise RolloutError(RolloutErrorCode.UNKNOWN_POLICY, f"no artifact at {path}")
        manifest = json.loads((path / "manifest.json").read_text())
        load = manifest.get("load", {})
        if "factory_kwargs" in load:  # found parameters for the policy's own code
            src = policy_source(dict(manifest.get("policy") or {}, artifact=""))  # its code
            src.kwargs = dict(load["factory_kwargs"])
            return src
        return PolicySource(
            "", "enpire_policy.artifacts", None, "load_policy", {"path": str(path)}
        )
    if not ref.repo_path:
        name = ref.name
        if name not in BUILTIN_POLICIES:
            raise RolloutError(
                RolloutErrorCode.UNKNOWN_POLICY,
                f"unknown built-in policy '{name}' (known: {', '.join(BUILTIN_POLICIES)}); "
                "agent code needs repo_path",
            )
        return PolicySource("", f"enpire_policy.{name}")
    repo = Path(ref.repo_path)
    if not repo.is_dir():
        raise RolloutError(RolloutErrorCode.UNKNOWN_POLICY, f"repo_path {repo} does not exist")
    commit = ref.commit or None
    if commit:
        r = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise RolloutError(
                RolloutErrorCode.UNKNOWN_POLICY, f"commit '{commit}' not found in {repo}"
            )
        commit = r.stdout.strip()
    try:
        return PolicySource(str(repo), module_name(ref.to_dict()), commit)
    except Exception as e:  # PolicyError for a bad module name
        raise RolloutError(RolloutErrorCode.UNKNOWN_POLICY, str(e)) from None


# bounds of a goal: enpire_msgs/action/Rollout Goal.MAX_* (mirrored, checked by a test)
MAX_EPISODES = 10_000
MAX_TIME_BUDGET = 604_800.0


def validate(req: RolloutRequest, fleet: list[str], min_episode_wall: float) -> list[str]:
    """The robots the goal may use; raises RolloutError with a code and message."""
    if req.task != "pusht":
        raise RolloutError(RolloutErrorCode.UNKNOWN_TASK, f"unknown task '{req.task}'")
    if not 0 < req.num_episodes <= MAX_EPISODES:
        raise RolloutError(
            RolloutErrorCode.INVALID_EPISODE_COUNT,
            f"num_episodes must be 1 .. {MAX_EPISODES}, got {req.num_episodes}",
        )
    unknown = sorted(set(req.robot_ids) - set(fleet))
    if unknown:
        raise RolloutError(
            RolloutErrorCode.UNKNOWN_ROBOT, f"unknown robots {unknown} (fleet: {fleet})"
        )
    if not math.isfinite(req.time_budget) or not 0 <= req.time_budget <= MAX_TIME_BUDGET:
        raise RolloutError(
            RolloutErrorCode.BUDGET_INFEASIBLE,
            f"time_budget must be 0 (none) .. {MAX_TIME_BUDGET:g} s, got {req.time_budget}",
        )
    if 0 < req.time_budget < min_episode_wall:
        raise RolloutError(
            RolloutErrorCode.BUDGET_INFEASIBLE,
            f"a time budget of {req.time_budget:g} s cannot hold one episode "
            f"(reset + run take at least {min_episode_wall:g} s here)",
        )
    policy_source(req.policy)
    robots = list(req.robot_ids) or list(fleet)  # num_robots caps parallelism instead
    if not robots:
        raise RolloutError(RolloutErrorCode.NO_ROBOTS, "no robots in the fleet")
    return robots
