"""The EN node over a real ROS graph: a node process and a client in the test process."""

import pytest
from action_msgs.msg import GoalStatus

from enpire_env.testing import NodeProcess, call_action
from enpire_msgs.action import Reset


@pytest.fixture
def env_node(ros_domain):
    with NodeProcess(
        "enpire_env.env_node",
        ["-p", "robots:=[robot_0, robot_1]", "-p", "placeholder_phase_seconds:=0.1"],
    ) as proc:
        assert proc.wait_for_output("reset server ready"), proc.output
        yield proc


def _goal(robot="robot_0", task="pusht", **kw):
    g = Reset.Goal(robot_id=robot, task=task, seed=kw.pop("seed", 3))
    for k, v in kw.items():
        setattr(g, k, v)
    return g


def test_reset_goal_gives_feedback_and_result(env_node, ros_context):
    (call,) = call_action(ros_context, Reset, "/reset", [_goal()])
    assert call.accepted and call.status == GoalStatus.STATUS_SUCCEEDED
    assert call.result.success and call.result.error_code == Reset.Result.NONE
    assert call.result.seed == 3 and len(call.result.requested_state) == 3
    phases = [f.phase for f in call.feedback]
    assert phases[0] == "approach" and "verify" in phases
    progress = [f.progress for f in call.feedback]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)


def test_bad_goals_get_error_codes_and_node_survives(env_node, ros_context):
    calls = call_action(
        ros_context,
        Reset,
        "/reset",
        [_goal(robot="robot_9"), _goal(task="stack_cups"), _goal(start_state=[float("nan")] * 3)],
    )
    codes = [c.result.error_code for c in calls]
    assert codes == [
        Reset.Result.UNKNOWN_ROBOT,
        Reset.Result.UNKNOWN_TASK,
        Reset.Result.INVALID_GOAL,
    ]
    assert all(c.status == GoalStatus.STATUS_ABORTED and c.result.error_msg for c in calls)
    assert "robot_9" in calls[0].result.error_msg
    (ok,) = call_action(ros_context, Reset, "/reset", [_goal()])
    assert ok.result.success
    assert env_node.proc.poll() is None


def test_second_goal_on_a_busy_robot_is_refused(env_node, ros_context):
    calls = call_action(
        ros_context, Reset, "/reset", [_goal("robot_0"), _goal("robot_0"), _goal("robot_1")]
    )
    codes = sorted(c.result.error_code for c in calls)
    assert codes == [Reset.Result.NONE, Reset.Result.NONE, Reset.Result.ROBOT_BUSY]
    busy = [c for c in calls if c.result.error_code == Reset.Result.ROBOT_BUSY]
    assert "robot_0" in busy[0].result.error_msg


def test_cancel_stops_the_reset(env_node, ros_context):
    (call,) = call_action(ros_context, Reset, "/reset", [_goal()], cancel_after_feedback=2)
    assert call.status == GoalStatus.STATUS_CANCELED
    assert call.result.error_code == Reset.Result.CANCELED
    assert len(call.feedback) < 6
