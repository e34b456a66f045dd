"""Under `enpire launch --robots 2`, SIGKILL each node while it works: a dead sim cell or
env_node is restarted and the goal still finishes its count; a dead rollout or train node is
restarted, the waiting client fails with a clear message within 10 s, nothing finished is lost
and no goal is left running."""

from __future__ import annotations

import pytest
from action_msgs.msg import GoalStatus

from enpire_bringup.drill import (
    Fleet,
    drill_rollout_node,
    drill_rollout_work,
    drill_train_node,
    format_rows,
)

pytestmark = pytest.mark.xdist_group("fault_drill")


@pytest.fixture(scope="module")
def fleet(ros_domain_module, ros_context_module, tmp_path_factory):
    with Fleet(tmp_path_factory.mktemp("drill"), robots=2, time_scale=8.0) as f:
        yield f


def test_a_killed_sim_cell_is_restarted_and_the_goal_finishes(fleet, ros_context_module):
    row = drill_rollout_work(fleet, ros_context_module, "/robot_1/sim_cell")
    assert row.outcome == f"status {GoalStatus.STATUS_SUCCEEDED}: 4 episodes", format_rows([row])
    assert row.episodes_lost == 0
    assert "restarting in 1 s" in fleet.output()
    assert row.recovery_s is not None and row.recovery_s < 30
    assert f"robot_1 after restart: status {GoalStatus.STATUS_SUCCEEDED}, 1 episode(s)" in (
        row.notes
    ), format_rows([row])


def test_a_killed_env_node_is_restarted_and_the_goal_finishes(fleet, ros_context_module):
    row = drill_rollout_work(fleet, ros_context_module, "/env_node", seed=200)
    assert row.outcome == f"status {GoalStatus.STATUS_SUCCEEDED}: 4 episodes", format_rows([row])
    assert row.episodes_lost == 0


def test_a_killed_rollout_node_fails_its_client_fast_and_loses_nothing(fleet, ros_context_module):
    row = drill_rollout_node(fleet, ros_context_module)
    assert row.outcome == "client failed: server gone", format_rows([row])
    assert row.client_noticed_s is not None and row.client_noticed_s <= 10.5, format_rows([row])
    assert row.episodes_lost == 0
    assert "0 goal(s) left running" in row.notes
    assert f"next goal: status {GoalStatus.STATUS_SUCCEEDED}, 1 episode(s)" in row.notes


def test_a_killed_train_node_fails_its_client_fast(fleet, ros_context_module):
    row = drill_train_node(fleet, ros_context_module)
    assert row.outcome == "client failed: server gone", format_rows([row])
    assert row.client_noticed_s is not None and row.client_noticed_s <= 10.5, format_rows([row])
    assert row.notes[-1].startswith("next goal: error_code 0"), format_rows([row])
