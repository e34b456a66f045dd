"""so101.urdf.xacro through the xacro package: joints, limits and the ros2_control block, and
the controllers file that goes with it."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xacro
import yaml

from enpire_env.kinematics import JOINT_NAMES, So101Kinematics

PKG = Path(__file__).resolve().parents[1]
XACRO = PKG / "urdf" / "so101.urdf.xacro"
# SO-101 joint ranges [rad] (LeRobot's calibrated ranges for the STS3215 servos)
RANGES = {
    "shoulder_pan": (-1.920, 1.920), "shoulder_lift": (-1.745, 1.745),
    "elbow_flex": (-1.690, 1.690), "wrist_flex": (-1.658, 1.658),
    "wrist_roll": (-2.744, 2.841), "gripper": (-0.175, 1.745),
}  # fmt: skip


def _urdf(**args) -> ET.Element:
    doc = xacro.process_file(str(XACRO), mappings={k: str(v) for k, v in args.items()})
    return ET.fromstring(doc.toxml())


def test_joints_and_limits():
    robot = _urdf()
    joints = {j.get("name"): j for j in robot.findall("joint")}
    revolute = [n for n, j in joints.items() if j.get("type") == "revolute"]
    assert revolute == list(JOINT_NAMES)
    for name, (lo, hi) in RANGES.items():
        limit = joints[name].find("limit")
        assert float(limit.get("lower")) == pytest.approx(lo)
        assert float(limit.get("upper")) == pytest.approx(hi)
        assert float(limit.get("velocity")) > 0 and float(limit.get("effort")) > 0
    # every joint connects links that exist, and the tool frame hangs off the gripper
    links = {lk.get("name") for lk in robot.findall("link")}
    for j in joints.values():
        assert j.find("parent").get("link") in links and j.find("child").get("link") in links
    assert joints["tool_tip_joint"].find("parent").get("link") == "gripper_link"


def test_ros2_control_block_with_mock_hardware_by_default():
    (r2c,) = _urdf().findall("ros2_control")
    assert r2c.get("type") == "system"
    assert r2c.find("hardware/plugin").text == "mock_components/GenericSystem"
    joints = r2c.findall("joint")
    assert [j.get("name") for j in joints] == list(JOINT_NAMES)
    for j in joints:
        (cmd,) = j.findall("command_interface")
        assert cmd.get("name") == "position"
        bounds = {p.get("name"): float(p.text) for p in cmd.findall("param")}
        assert (bounds["min"], bounds["max"]) == pytest.approx(RANGES[j.get("name")])
        assert [s.get("name") for s in j.findall("state_interface")] == ["position", "velocity"]


def test_hardware_plugin_port_and_prefix_are_arguments():
    robot = _urdf(hardware_plugin="feetech_ros2_driver/FeetechHardwareInterface",
                  serial_port="/dev/ttyUSB3", prefix="left_")  # fmt: skip
    r2c = robot.find("ros2_control")
    assert r2c.find("hardware/plugin").text == "feetech_ros2_driver/FeetechHardwareInterface"
    params = {p.get("name"): p.text for p in r2c.findall("hardware/param")}
    assert params["port"] == "/dev/ttyUSB3"
    assert r2c.find("joint").get("name") == "left_shoulder_pan"
    assert robot.find("joint").get("name") == "left_shoulder_pan"
    assert _urdf(use_ros2_control="false").find("ros2_control") is None


def test_the_kinematics_read_the_same_file():
    kin = So101Kinematics()  # ikpy on the processed xacro, ros2_control block included
    q = [0.1, -0.3, 0.4, 0.2, 0.0, 0.5]
    tip = kin.tip_position(q)
    # the IK of the same file finds joints that put the tip back there
    q2 = kin.ik(tuple(tip), seed=[0.0] * 6, max_tilt=1.5)
    assert kin.tip_position(q2) == pytest.approx(tip, abs=2e-3)


def test_controllers_file_matches_the_urdf():
    cfg = yaml.safe_load((PKG / "config" / "so101_controllers.yaml").read_text())
    cm = cfg["controller_manager"]["ros__parameters"]
    assert cm["arm_controller"]["type"] == "joint_trajectory_controller/JointTrajectoryController"
    assert cm["joint_state_broadcaster"]["type"].startswith("joint_state_broadcaster/")
    arm = cfg["arm_controller"]["ros__parameters"]
    assert arm["joints"] == list(JOINT_NAMES)
    assert arm["command_interfaces"] == ["position"]
    for name in JOINT_NAMES:
        assert name in arm["constraints"]
