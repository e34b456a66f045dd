"""The EN node over a real ROS graph: sim cell and EN node processes, a client in the test."""

import math
import time

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from std_msgs.msg import Bool

from enpire_env.testing import NodeProcess, TopicProbe, call_action
from enpire_msgs.action import Reset
from enpire_msgs.msg import SimGroundTruth

TIME_SCALE = "20.0"


def _cell(robot):
    return NodeProcess(
        "enpire_env.sim_cell_node",
        [
            "-r",
            f"__ns:=/{robot}",
            "-p",
            f"time_scale:={TIME_SCALE}",
            "-p",
            "seed:=1",
            "-p",
            "camera_hz:=2.0",
        ],  # fmt: skip
    )


# one worker runs the whole module, in order, on one shared graph
pytestmark = pytest.mark.xdist_group("env_node_graph")


@pytest.fixture(scope="module")
def graph(ros_domain_module, ros_context_module):
    cells = [_cell("robot_0"), _cell("robot_1")]
    env = NodeProcess(
        "enpire_env.env_node",
        ["-p", "robots:=[robot_0, robot_1, robot_9]", "-p", "cell_timeout:=2.0"],
    )
    probe = TopicProbe(ros_context_module)
    try:
        for p in [*cells, env]:
            assert p.wait_for_output("ready"), p.output
        for r in ("robot_0", "robot_1"):
            probe.watch(f"/{r}/sim/ground_truth", SimGroundTruth, qos=1)  # no backlog
        yield env, probe
    finally:
        probe.close()
        for p in [env, *cells]:
            p.stop()
        print("\n".join(f"--- {p.module}\n{p.output[-3000:]}" for p in [env, *cells]))


@pytest.fixture
def ctx(ros_context_module):
    return ros_context_module


def _goal(robot="robot_0", task="pusht", **kw):
    g = Reset.Goal(robot_id=robot, task=task, seed=kw.pop("seed", 3))
    for k, v in kw.items():
        setattr(g, k, v)
    return g


def _truth_after(probe, robot):
    t = probe.wait_for(f"/{robot}/sim/ground_truth").cell_time
    return probe.wait_for(f"/{robot}/sim/ground_truth", lambda m: m.cell_time > t)


def test_pick_and_place_reset_verified_against_ground_truth(graph, ctx):
    _env, probe = graph
    (call,) = call_action(ctx, Reset, "/reset", [_goal(seed=7)], timeout=60)
    assert call.status == GoalStatus.STATUS_SUCCEEDED, call.result.error_msg
    r = call.result
    assert r.success and r.error_code == Reset.Result.NONE and r.mode == "pick_place"
    assert 1.0 < r.robot_seconds < 90.0 and r.attempts >= 1
    phases = [f.phase for f in call.feedback]
    for phase in ("locate", "approach", "grasp", "lift", "place", "release", "verify"):
        assert phase in phases
    truth = _truth_after(probe, "robot_0")
    assert not truth.attached
    assert np.hypot(*(np.array(r.verified_state[:2]) - truth.block_pose[:2])) < 4.0
    assert np.hypot(*(np.array(r.requested_state[:2]) - truth.block_pose[:2])) < 8.0


def test_bad_goals_get_error_codes_and_node_survives(graph, ctx):
    env, _ = graph
    calls = call_action(
        ctx,
        Reset,
        "/reset",
        [
            _goal(robot="robot_7"),
            _goal(task="stack_cups"),
            _goal(start_state=[float("nan")] * 3),
            _goal(mode="levitate"),
        ],
    )
    codes = [c.result.error_code for c in calls]
    assert (
        codes
        == [Reset.Result.UNKNOWN_ROBOT, Reset.Result.UNKNOWN_TASK]
        + [Reset.Result.INVALID_GOAL] * 2
    )
    assert all(c.status == GoalStatus.STATUS_ABORTED and c.result.error_msg for c in calls)
    assert "robot_7" in calls[0].result.error_msg
    (ok,) = call_action(ctx, Reset, "/reset", [_goal(mode="teleport")])
    assert ok.result.success
    assert env.proc.poll() is None


def test_second_goal_on_a_busy_robot_is_refused(graph, ctx):
    calls = call_action(
        ctx,
        Reset,
        "/reset",
        [_goal("robot_0", seed=4), _goal("robot_0"), _goal("robot_1", seed=5)],
        timeout=60,
    )
    codes = sorted(c.result.error_code for c in calls)
    assert codes == [Reset.Result.NONE, Reset.Result.NONE, Reset.Result.ROBOT_BUSY]


def test_the_same_goal_sent_again_joins_the_running_reset(graph, ctx):
    # a client whose first copy's answer was lost sends the goal again: the copy waits for the
    # running reset and gets its result, instead of "already resetting"
    calls = call_action(
        ctx, Reset, "/reset", [_goal("robot_0", seed=6), _goal("robot_0", seed=6)], timeout=60
    )
    assert [c.status for c in calls] == [GoalStatus.STATUS_SUCCEEDED] * 2, [
        c.result.error_msg for c in calls
    ]
    a, b = (c.result for c in calls)
    assert a.seed == b.seed == 6
    assert list(a.verified_state) == list(b.verified_state)
    assert a.attempts == b.attempts >= 1


def test_cancel_stops_the_arm(graph, ctx):
    _, probe = graph
    (call,) = call_action(ctx, Reset, "/reset", [_goal(seed=8)], cancel_after_feedback=2)
    assert call.status == GoalStatus.STATUS_CANCELED, call.result.error_msg
    assert call.result.error_code == Reset.Result.CANCELED
    # the result can reach us before the cell has applied the hold that follows the last
    # command: let the messages land (0.3 s = 6 cell seconds), then the arm must stand still
    time.sleep(0.3)
    a = _truth_after(probe, "robot_0")
    time.sleep(0.3)
    b = _truth_after(probe, "robot_0")
    assert a.tip_px == pytest.approx(b.tip_px, abs=1e-6)


def test_teleport_reset(graph, ctx):
    _, probe = graph
    state = [200.0, 300.0, 0.5]
    (call,) = call_action(
        ctx, Reset, "/reset", [_goal("robot_1", mode="teleport", start_state=state)]
    )
    assert call.result.success and call.result.mode == "teleport"
    truth = _truth_after(probe, "robot_1")
    assert truth.block_pose[:2] == pytest.approx(state[:2], abs=1e-6)
    assert math.remainder(truth.block_pose[2] - 0.5, 2 * math.pi) == pytest.approx(0, abs=1e-6)


def test_robot_without_a_cell_is_reported_unavailable(graph, ctx):
    (call,) = call_action(ctx, Reset, "/reset", [_goal("robot_9")], timeout=30)
    assert call.result.error_code == Reset.Result.CELL_UNAVAILABLE
    assert "robot_9" in call.result.error_msg


def test_emergency_stop_aborts_a_reset(graph, ctx):
    _, probe = graph
    probe.publish("/robot_1/emergency_stop", Bool(data=True))
    (call,) = call_action(ctx, Reset, "/reset", [_goal("robot_1", seed=9)], timeout=30)
    assert call.status == GoalStatus.STATUS_ABORTED
    assert "emergency stop" in call.result.error_msg
    probe.publish("/robot_1/emergency_stop", Bool(data=False))
    time.sleep(0.3)
    (call,) = call_action(ctx, Reset, "/reset", [_goal("robot_1", seed=9)], timeout=60)
    assert call.result.success, call.result.error_msg


def test_twenty_pick_and_place_resets_match_ground_truth(graph, ctx):
    """The EN issue's acceptance test: 20 real (non-teleport) resets, every verified start
    state within tolerance of the simulator's ground truth."""
    _, probe = graph
    verified, failures = 0, []
    for seed in range(100, 120):
        (call,) = call_action(
            ctx, Reset, "/reset", [_goal("robot_0", seed=seed, mode="pick_place")], timeout=60
        )
        r = call.result
        assert r.mode == "pick_place"
        if not r.success:  # a reset may fail honestly; it must not claim success
            assert r.error_code != Reset.Result.NONE and r.error_msg
            failures.append((seed, r.error_code, r.error_msg))
            continue
        verified += 1
        truth = _truth_after(probe, "robot_0")
        err = np.hypot(*(np.array(r.verified_state[:2]) - truth.block_pose[:2]))
        dth = math.remainder(r.verified_state[2] - truth.block_pose[2], 2 * math.pi)
        assert err < 4.0 and abs(dth) < 0.05, (seed, err, dth)
        # and the verified pose is the requested one, within the verifier's tolerance + error
        assert np.hypot(*(np.array(r.requested_state[:2]) - truth.block_pose[:2])) < 10.0
    assert verified >= 19, failures
