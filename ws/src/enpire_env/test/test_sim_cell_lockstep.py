"""Lock-step of the simulated cell over ROS: streamed policy commands hold the cell clock until
the next one arrives; a planned motion (a reset's trajectory, long or short) runs at
time_scale."""

import time

import pytest
from sensor_msgs.msg import JointState

from enpire_env.kinematics import JOINT_NAMES
from enpire_env.ros_conversions import make_trajectory
from enpire_env.testing import NodeProcess, TopicProbe
from enpire_msgs.msg import SimGroundTruth

pytestmark = pytest.mark.xdist_group("sim_cell_lockstep")
TOPIC = "/robot_0/sim/ground_truth"


@pytest.fixture()
def cell(ros_domain, ros_context):
    proc = NodeProcess("enpire_env.sim_cell_node", [
        "-r", "__ns:=/robot_0", "-p", "time_scale:=10.0", "-p", "camera_hz:=1.0",
        "-p", "lockstep_timeout:=2.0"])  # fmt: skip
    probe = TopicProbe(ros_context)
    try:
        assert proc.wait_for_output("ready"), proc.output
        probe.watch(TOPIC, SimGroundTruth, qos=1)
        probe.watch("/robot_0/joint_states", JointState, qos=1)
        probe.wait_for(TOPIC)
        yield probe
    finally:
        probe.close()
        proc.stop()


def _q(probe):
    return list(probe.wait_for("/robot_0/joint_states").position)


def test_a_planned_motion_runs_at_time_scale(cell):
    q = _q(cell)
    q[0] += 0.3
    t0 = cell.wait_for(TOPIC).cell_time
    w0 = time.monotonic()
    cell.publish("/robot_0/arm_controller/joint_trajectory",
                 make_trajectory(JOINT_NAMES, [(3.0, q)]))  # fmt: skip
    cell.wait_for(TOPIC, lambda m: m.cell_time >= t0 + 3.5, timeout=20)
    # 3.5 cell s at 10x is 0.35 wall s; waiting for a stream would cost 2 s per step
    assert time.monotonic() - w0 < 2.0


def test_a_streamed_command_holds_the_clock_for_the_next_one(cell):
    q = _q(cell)
    cell.publish("/robot_0/policy/joint_trajectory",
                 make_trajectory(JOINT_NAMES, [(0.1, q)]))  # fmt: skip
    t0 = cell.wait_for(TOPIC).cell_time
    time.sleep(1.5)
    # free-running, 1.5 wall s would be 15 cell s; held, a few steps of 0.1 s
    assert cell.wait_for(TOPIC).cell_time - t0 < 1.0


def test_a_short_planned_move_does_not_hold_the_clock(cell):
    """EN's gripper moves are single short points on arm_controller/joint_trajectory, as a
    policy's are on policy/joint_trajectory: the cell must not wait for a next one (each step
    would wait lockstep_timeout, 2 s here)."""
    q = _q(cell)
    cell.publish("/robot_0/arm_controller/joint_trajectory",
                 make_trajectory(JOINT_NAMES, [(0.1, q)]))  # fmt: skip
    t0 = cell.wait_for(TOPIC).cell_time
    w0 = time.monotonic()
    cell.wait_for(TOPIC, lambda m: m.cell_time >= t0 + 1.0, timeout=20)
    # 1 cell s at 10x is 0.1 wall s; held, at least 2 s per step
    assert time.monotonic() - w0 < 1.5


@pytest.fixture()
def bare_cell(ros_domain, ros_context):
    """A cell without its own safety filter (a safety_filter node relays a policy's commands
    on arm_controller/joint_trajectory), the test's probe standing in for the planner (EN)."""
    proc = NodeProcess("enpire_env.sim_cell_node", [
        "-r", "__ns:=/robot_0", "-p", "time_scale:=10.0", "-p", "camera_hz:=1.0",
        "-p", "lockstep_timeout:=2.0", "-p", "safety_filter:=false",
        "-p", "planner_node:=/test_probe"])  # fmt: skip
    probe = TopicProbe(ros_context)
    relay = TopicProbe(ros_context, name="safety_filter")
    try:
        assert proc.wait_for_output("ready"), proc.output
        probe.watch(TOPIC, SimGroundTruth, qos=1)
        probe.watch("/robot_0/joint_states", JointState, qos=1)
        probe.wait_for(TOPIC)
        yield probe, relay
    finally:
        relay.close()
        probe.close()
        proc.stop()


def test_without_the_cells_filter_the_planners_short_move_does_not_hold_the_clock(bare_cell):
    """Without the safety filter in the cell, the planner's (EN's) short moves and a policy's
    commands come on the same topic: the cell tells them apart by their publisher's node, so
    the planner's runs at time_scale and the relayed policy's holds the clock."""
    probe, relay = bare_cell
    q = _q(probe)
    topic = "/robot_0/arm_controller/joint_trajectory"
    probe.publish(topic, make_trajectory(JOINT_NAMES, [(0.1, q)]))
    t0 = probe.wait_for(TOPIC).cell_time
    w0 = time.monotonic()
    probe.wait_for(TOPIC, lambda m: m.cell_time >= t0 + 1.0, timeout=20)
    assert time.monotonic() - w0 < 1.5  # held, at least 2 s per step
    relay.publish(topic, make_trajectory(JOINT_NAMES, [(0.1, q)]))
    time.sleep(0.5)  # the command arrives and holds the next steps
    t1 = probe.wait_for(TOPIC).cell_time
    time.sleep(1.5)
    assert probe.wait_for(TOPIC).cell_time - t1 < 1.0  # free-running: 15 cell s
