"""Every count and duration in a goal has a documented maximum: the constants in the action
definitions, mirrored by the ROS-free cores, which reject values beyond them with the
interface's error codes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from enpire_env.reset_core import MAX_ATTEMPTS, ResetError, ResetErrorCode, ResetRequest
from enpire_env.reset_core import validate as validate_reset
from enpire_msgs.action import Reset, Rollout, Train
from enpire_policy import train_core
from enpire_policy.policy_ref import PolicyRef
from enpire_policy.recipes.base import TrainError, TrainErrorCode, TrainRequest
from enpire_rollout import rollout_core
from enpire_rollout.rollout_core import RolloutError, RolloutErrorCode, RolloutRequest


def _result_constants(action: str) -> dict[str, int]:
    """The integer constants of an action's result section, read from the .action file."""
    from ament_index_python.packages import get_package_share_directory

    text = Path(get_package_share_directory("enpire_msgs")) / "action" / f"{action}.action"
    result = text.read_text().split("\n---\n")[1]
    found = re.findall(r"^uint\d+\s+([A-Z_]+)=(\d+)", result, re.MULTILINE)
    return {name: int(value) for name, value in found}


@pytest.mark.parametrize(
    ("action", "codes"),
    [("Reset", ResetErrorCode), ("Rollout", RolloutErrorCode), ("Train", TrainErrorCode)],
)
def test_error_codes_are_the_interfaces(action, codes):
    """One mirror test for the three actions: the cores' codes are the interfaces' constants,
    every one of them, and the generated classes agree."""
    assert {c.name: c.value for c in codes} == _result_constants(action)
    generated = {"Reset": Reset, "Rollout": Rollout, "Train": Train}[action].Result
    for c in codes:
        assert getattr(generated, c.name) == c.value


def test_episode_outcomes_are_the_interfaces():
    from enpire_msgs.msg import EpisodeResult
    from enpire_rollout.messages import OUTCOMES

    for name, value in OUTCOMES.items():
        assert getattr(EpisodeResult, f"OUTCOME_{name.upper()}") == value


def test_cores_mirror_the_interface_constants():
    assert Reset.Goal.MAX_ATTEMPTS == MAX_ATTEMPTS
    assert Rollout.Goal.MAX_EPISODES == rollout_core.MAX_EPISODES
    assert Rollout.Goal.MAX_TIME_BUDGET == rollout_core.MAX_TIME_BUDGET
    assert Train.Goal.MAX_TIME_BUDGET == train_core.MAX_TIME_BUDGET
    assert Train.Goal.MAX_EPISODE_IDS == train_core.MAX_EPISODE_IDS
    assert Train.Goal.MAX_HYPERPARAMETERS_BYTES == train_core.MAX_HYPERPARAMETERS_BYTES


@pytest.mark.parametrize("attempts", [MAX_ATTEMPTS + 1, 4294967295, -1])
def test_reset_attempts_beyond_the_maximum_are_invalid(attempts):
    with pytest.raises(ResetError) as e:
        validate_reset(
            ResetRequest("robot_0", "pusht", 1, "", [], attempts), ["robot_0"], "teleport", 3
        )
    assert e.value.code == ResetErrorCode.INVALID_GOAL and str(MAX_ATTEMPTS) in e.value.msg
    plan = validate_reset(
        ResetRequest("robot_0", "pusht", 1, "", [], MAX_ATTEMPTS), ["robot_0"], "teleport", 3
    )
    assert plan.max_attempts == MAX_ATTEMPTS


def _rollout(**kw) -> RolloutRequest:
    args = dict(
        policy=PolicyRef(name="naive"),
        task="pusht",
        num_episodes=1,
        robot_ids=[],
        num_robots=0,
        time_budget=0.0,
        seed=0,
        agent_id="a",
    )
    args.update(kw)
    return RolloutRequest(**args)


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"num_episodes": 0}, RolloutErrorCode.INVALID_EPISODE_COUNT),
        ({"num_episodes": 4294967295}, RolloutErrorCode.INVALID_EPISODE_COUNT),
        ({"time_budget": -1.0}, RolloutErrorCode.BUDGET_INFEASIBLE),
        ({"time_budget": math.inf}, RolloutErrorCode.BUDGET_INFEASIBLE),
        ({"time_budget": math.nan}, RolloutErrorCode.BUDGET_INFEASIBLE),
        ({"time_budget": 1e12}, RolloutErrorCode.BUDGET_INFEASIBLE),
    ],
)
def test_rollout_bounds(kw, code):
    with pytest.raises(RolloutError) as e:
        rollout_core.validate(_rollout(**kw), ["robot_0"], 1.0)
    assert e.value.code == code, e.value.msg
    assert rollout_core.validate(
        _rollout(num_episodes=rollout_core.MAX_EPISODES), ["robot_0"], 1.0
    ) == ["robot_0"]


@pytest.mark.parametrize(
    "kw",
    [
        {"time_budget": 1e9},
        {"time_budget": math.nan},
        {"episode_ids": ["e"] * (train_core.MAX_EPISODE_IDS + 1)},
        {"hyperparameters": '{"x": "' + "a" * train_core.MAX_HYPERPARAMETERS_BYTES + '"}'},
    ],
)
def test_train_bounds(kw):
    with pytest.raises(TrainError) as e:
        train_core.validate(TrainRequest("heuristic_search", **kw))
    assert e.value.code == TrainErrorCode.INVALID_HYPERPARAMETERS
