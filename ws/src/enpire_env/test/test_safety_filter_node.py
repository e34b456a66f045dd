"""The safety filter node between a publisher and a simulated cell, over ROS."""

import math
import time

import pytest
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from enpire_env.kinematics import JOINT_NAMES, So101Kinematics
from enpire_env.ros_conversions import make_trajectory
from enpire_env.testing import NodeProcess, TopicProbe
from enpire_msgs.msg import SafetyStatus, SimGroundTruth


@pytest.fixture(scope="module")
def rig(ros_domain_module, ros_context_module):
    cell = NodeProcess(
        "enpire_env.sim_cell_node",
        ["-r", "__ns:=/robot_0", "-p", "time_scale:=5.0", "-p", "camera_hz:=1.0"],
    )
    filt = NodeProcess("enpire_env.safety_filter_node", ["-r", "__ns:=/robot_0"])
    probe = TopicProbe(ros_context_module)
    try:
        assert cell.wait_for_output("ready"), cell.output
        assert filt.wait_for_output("ready"), filt.output
        probe.watch("/robot_0/sim/ground_truth", SimGroundTruth, qos=1)
        probe.watch("/robot_0/safety/status", SafetyStatus, qos=1)
        probe.wait_for("/robot_0/sim/ground_truth")
        yield probe, So101Kinematics()
    finally:
        probe.close()
        filt.stop()
        cell.stop()


def _send(probe, kin, xyz, t=0.5, q=None):
    if q is None:
        q = kin.ik(xyz, max_tilt=0.7)
        q[5] = 1.0
    probe.publish("/robot_0/policy/joint_trajectory", make_trajectory(JOINT_NAMES, [(t, q)]))
    return q


def _settled(probe):
    time.sleep(0.5)
    return probe.wait_for("/robot_0/sim/ground_truth")


def _status(probe, pred):
    return probe.wait_for("/robot_0/safety/status", pred, timeout=10)


def test_safe_command_reaches_the_arm(rig):
    probe, kin = rig
    _send(probe, kin, (0.2, 0.03, 0.05))
    gt = _settled(probe)
    assert gt.tip_height == pytest.approx(0.05, abs=1e-3)
    assert _status(probe, lambda s: s.forwarded >= 1).refused == 0


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


def test_emergency_stop_holds_the_arm(rig):
    probe, kin = rig
    _send(probe, kin, (0.15, -0.05, 0.05))
    _settled(probe)
    _send(probe, kin, (0.3, 0.05, 0.05), t=4.0)  # a slow move ...
    time.sleep(0.15)
    probe.publish("/robot_0/emergency_stop", Bool(data=True))  # ... stopped half way
    assert _status(probe, lambda s: s.estop).estop
    a = _settled(probe)
    _send(probe, kin, (0.25, 0.0, 0.05))  # refused while stopped
    b = _settled(probe)
    assert a.tip_px == pytest.approx(b.tip_px, abs=1e-6)
    probe.publish("/robot_0/emergency_stop", Bool(data=False))
    _status(probe, lambda s: not s.estop)
    _send(probe, kin, (0.25, 0.0, 0.05))
    c = _settled(probe)
    assert c.tip_px != pytest.approx(b.tip_px, abs=1.0), probe.latest("/robot_0/safety/status")
