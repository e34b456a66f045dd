"""The safety filter node between a publisher and a simulated cell, over ROS."""

import math
import time

import pytest
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from enpire_env.kinematics import JOINT_NAMES, So101Kinematics
from enpire_env.ros_conversions import make_trajectory
from enpire_env.sim_cell import CellConfig, park_pose
from enpire_env.testing import NodeProcess, TopicProbe
from enpire_msgs.msg import SafetyStatus, SimGroundTruth

# one worker runs the whole module, in order, on one shared graph
pytestmark = pytest.mark.xdist_group("safety_filter_node")


@pytest.fixture(scope="module", params=["separate_node", "inside_the_cell"])
def rig(request, ros_domain_module, ros_context_module):
    """The same safety checks, run by a safety_filter node in front of a cell (as for hardware)
    and inside a simulated cell (its ``safety_filter`` parameter, as in a simulated fleet)."""
    separate = request.param == "separate_node"
    cell = NodeProcess(
        "enpire_env.sim_cell_node",
        ["-r", "__ns:=/robot_0", "-p", "time_scale:=5.0", "-p", "camera_hz:=1.0",
         "-p", f"safety_filter:={str(not separate).lower()}"],
    )  # fmt: skip
    filt = (
        NodeProcess("enpire_env.safety_filter_node", ["-r", "__ns:=/robot_0"])
        if separate
        else None
    )
    probe = TopicProbe(ros_context_module)
    try:
        assert cell.wait_for_output("ready"), cell.output
        assert filt is None or filt.wait_for_output("ready"), filt.output
        probe.watch("/robot_0/sim/ground_truth", SimGroundTruth, qos=1)
        probe.watch("/robot_0/safety/status", SafetyStatus, qos=1)
        probe.wait_for("/robot_0/sim/ground_truth")
        _wired(probe, separate)
        yield probe, So101Kinematics()
    finally:
        probe.close()
        if filt is not None:
            filt.stop()
        cell.stop()


def _wired(probe, separate: bool, timeout=30.0):
    """Wait until commands can reach the arm: the filter has the arm's joint states (it
    forwards a command to the arm's present pose) and, when it is a node of its own, filter and
    cell see each other (both processes start together; on a loaded machine discovery takes
    seconds, and a command the filter forwards before the cell's subscription is matched is
    lost)."""
    deadline = time.monotonic() + timeout
    node, arm = probe.node, "/robot_0/arm_controller/joint_trajectory"
    while separate and not (node.count_publishers(arm) and node.count_subscribers(arm)):
        assert time.monotonic() < deadline, "the filter's output never met the cell"
        time.sleep(0.1)
    while time.monotonic() < deadline:
        st = probe.latest("/robot_0/safety/status")
        if st is not None and st.forwarded >= 1:
            break
        _send(probe, None, None, q=park_pose(So101Kinematics(), CellConfig()))
        time.sleep(0.5)
    else:
        raise AssertionError(f"no command forwarded: {probe.latest('/robot_0/safety/status')}")
    time.sleep(1.0)  # the filter's writer matches the cell's reader about when the graph shows it


def _send(probe, kin, xyz, t=0.5, q=None):
    if q is None:
        q = kin.ik(xyz, max_tilt=0.7)
        q[5] = 1.0
    probe.publish("/robot_0/policy/joint_trajectory", make_trajectory(JOINT_NAMES, [(t, q)]))
    return q


def _settled(probe, cell_seconds=2.0):
    """A ground-truth sample taken at least cell_seconds after now (not a queued old one)."""
    topic = "/robot_0/sim/ground_truth"
    t = probe.wait_for(topic).cell_time
    t_now = probe.wait_for(topic, lambda m: m.cell_time > t).cell_time
    return probe.wait_for(topic, lambda m: m.cell_time >= t_now + cell_seconds)


def _status(probe, pred):
    return probe.wait_for("/robot_0/safety/status", pred, timeout=10)


def test_safe_command_reaches_the_arm(rig):
    probe, kin = rig
    refused0 = _status(probe, lambda s: True).refused
    _send(probe, kin, (0.2, 0.03, 0.05))
    gt = _settled(probe)
    assert gt.tip_height == pytest.approx(0.05, abs=1e-3)
    assert _status(probe, lambda s: s.forwarded >= 2).refused == refused0


def test_unsafe_commands_are_refused_and_counted(rig):
    probe, kin = rig
    _send(probe, kin, (0.2, 0.0, 0.05))
    before = _settled(probe)
    refused0 = _status(probe, lambda s: True).refused
    q = kin.ik((0.2, 0.0, 0.05), max_tilt=0.7)
    q[1] += 0.6  # into the table
    _send(probe, kin, None, q=q)
    nan = [math.nan] * 6
    _send(probe, kin, None, q=nan)
    bad_names = JointTrajectory(joint_names=["elbow", "knee"])
    probe.publish("/robot_0/policy/joint_trajectory", bad_names)
    st = _status(probe, lambda s: s.refused >= refused0 + 3)
    assert st.last_violation
    after = _settled(probe)
    assert after.tip_px == pytest.approx(before.tip_px, abs=1e-6)  # nothing moved


def test_emergency_stop_refuses_commands_until_released(rig):
    probe, kin = rig
    _send(probe, kin, (0.15, -0.05, 0.05))
    _settled(probe)
    probe.publish("/robot_0/emergency_stop", Bool(data=True))
    st = _status(probe, lambda s: s.estop)
    _send(probe, kin, (0.25, 0.0, 0.05))  # refused while stopped
    _status(probe, lambda s: s.refused > st.refused)
    a = _settled(probe)
    b = _settled(probe)
    assert a.tip_px == pytest.approx(b.tip_px, abs=1e-6)  # the arm holds
    probe.publish("/robot_0/emergency_stop", Bool(data=False))
    _status(probe, lambda s: not s.estop)
    _send(probe, kin, (0.25, 0.0, 0.05))
    c = _settled(probe)
    assert c.tip_px != pytest.approx(b.tip_px, abs=1.0), probe.latest("/robot_0/safety/status")


def test_a_robot_release_does_not_lift_the_fleet_stop(rig):
    import time

    probe, kin = rig
    probe.publish("/emergency_stop", Bool(data=True))
    _status(probe, lambda s: s.estop)
    probe.publish("/robot_0/emergency_stop", Bool(data=False))
    time.sleep(1.2)  # the release is taken; the gate publishes its status every 0.5 s
    st = _status(probe, lambda s: True)
    assert st.estop, "a robot's release lifted the fleet's stop"
    probe.publish("/emergency_stop", Bool(data=False))
    _status(probe, lambda s: not s.estop)


def test_cell_refuses_malformed_trajectories_and_keeps_running(rig):
    probe, kin = rig
    t0 = probe.wait_for("/robot_0/sim/ground_truth")
    bad = [
        make_trajectory(["knee"], [(0.5, [0.1])]),  # unknown joint
        make_trajectory(["shoulder_pan"], [(0.5, [0.1, 0.2])]),  # wrong point size
        make_trajectory(["shoulder_pan"], [(0.5, [math.nan])]),  # NaN
        make_trajectory(JOINT_NAMES, [(0.5, [0.0] * 6), (0.2, [0.0] * 6)]),  # time backwards
    ]
    for msg in bad:
        probe.publish("/robot_0/arm_controller/joint_trajectory", msg)
    gt = probe.wait_for(
        "/robot_0/sim/ground_truth",
        lambda m: m.rejected_commands >= t0.rejected_commands + len(bad),
    )
    later = probe.wait_for("/robot_0/sim/ground_truth", lambda m: m.cell_time > gt.cell_time)
    assert later.cell_time > gt.cell_time  # still running


def test_emergency_stop_halts_a_motion_under_way(rig):
    probe, kin = rig
    probe.publish("/robot_0/emergency_stop", Bool(data=False))
    _status(probe, lambda s: not s.estop)
    _send(probe, kin, (0.15, -0.05, 0.05))
    start = _settled(probe)
    _send(probe, kin, (0.3, 0.05, 0.05), t=4.0)  # a slow move ...
    probe.wait_for("/robot_0/sim/ground_truth", lambda m: m.cell_time > start.cell_time + 0.5)
    probe.publish("/robot_0/emergency_stop", Bool(data=True))  # ... stopped on the way
    _status(probe, lambda s: s.estop)
    a = _settled(probe)
    b = _settled(probe)
    assert a.tip_px == pytest.approx(b.tip_px, abs=1e-6)
    end_u, end_v = 256 - 0.05 / (0.18 / 512), 256 - 0.10 / (0.18 / 512)
    assert abs(a.tip_px[0] - end_u) + abs(a.tip_px[1] - end_v) > 10  # short of the target
    probe.publish("/robot_0/emergency_stop", Bool(data=False))
    _status(probe, lambda s: not s.estop)
