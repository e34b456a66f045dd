"""A robot whose resets keep failing cools down out of the rotation instead of looping, and its
seeds run on the other robots (real ROS graph: EN serves robot_0 only, so every reset of
robot_1 fails at once, as a cell with a broken reset would)."""

from __future__ import annotations

import pytest
from action_msgs.msg import GoalStatus

from enpire_env.testing import NodeProcess, call_action, running
from enpire_msgs.action import Rollout
from enpire_msgs.msg import PolicyRef
from enpire_rollout.ledger import Ledger

pytestmark = pytest.mark.xdist_group("rollout_reset_failures_graph")
ROBOTS = ["robot_0", "robot_1"]
TIME_SCALE = 8.0


@pytest.fixture(scope="module")
def fleet(ros_domain_module, ros_context_module, tmp_path_factory):
    data = tmp_path_factory.mktemp("reset-failures")
    procs = {
        r: NodeProcess("enpire_env.sim_cell_node", [
            "-r", f"__ns:=/{r}", "-p", f"time_scale:={TIME_SCALE}", "-p", f"seed:={i}",
            "-p", "camera_hz:=2.0", "-p", "camera_size:=64",
        ]) for i, r in enumerate(ROBOTS)
    }  # fmt: skip
    env_args = ["-p", "robots:=[robot_0]", "-p", "default_mode:=teleport"]
    procs["env"] = NodeProcess("enpire_env.env_node", env_args)
    procs["rollout"] = NodeProcess("enpire_rollout.rollout_node", [
        "-p", "robots:=[robot_0, robot_1]", "-p", f"data_dir:={data}",
        "-p", f"time_scale:={TIME_SCALE}", "-p", "video_size:=0", "-p", "mcap_image_every:=0",
        "-p", "max_steps:=40", "-p", "max_reset_failures:=2", "-p", "reset_cooldown:=2.0",
        "-p", "max_reset_cooldown:=4.0", "-p", "max_seed_retries:=2",
    ])  # fmt: skip
    with running(procs):
        yield procs, data


def goal(n, seed, robots=()):
    return Rollout.Goal(policy=PolicyRef(name="heuristic"), task="pusht", num_episodes=n,
                        seed=seed, agent_id="a", robot_ids=list(robots))  # fmt: skip


def test_failing_robot_cools_down_and_the_goal_finishes_on_the_others(fleet, ros_context_module):
    procs, data = fleet
    (c,) = call_action(ros_context_module, Rollout, "/rollout", [goal(6, 500)], timeout=300)
    assert c.status == GoalStatus.STATUS_SUCCEEDED, c.result.error_msg
    assert c.result.num_episodes == 6 and c.result.error_msg == ""
    assert {e.robot_id for e in c.result.episodes} == {"robot_0"}
    assert sorted(e.seed for e in c.result.episodes) == list(range(500, 506))
    led = Ledger(data / "ledger.sqlite")
    failed = [r for r in led.episodes() if r["status"] == "reset_failed"]
    assert failed and {r["robot_id"] for r in failed} == {"robot_1"}
    # at most max_reset_failures per cool-down, not a flood
    assert len(failed) <= 2 * (1 + c.result.wall_seconds // 2.0)
    assert "out of the rotation" in procs["rollout"].output


def test_a_goal_only_a_failing_robot_may_run_ends_with_reset_failed(fleet, ros_context_module):
    (c,) = call_action(ros_context_module, Rollout, "/rollout", [goal(2, 900, ["robot_1"])],
                       timeout=120)  # fmt: skip
    assert c.status == GoalStatus.STATUS_ABORTED
    assert c.result.error_code == Rollout.Result.RESET_FAILED, c.result.error_msg
    assert "skipped" in c.result.error_msg and c.result.num_episodes == 0
