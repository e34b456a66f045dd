"""enpire_env.cdr writes and reads the bytes rclpy itself sends: every field, both ways, against
rclpy.serialization; and a sim cell's cell_state bytes reach an ordinary ROS subscriber as a
usual message."""

from __future__ import annotations

import io

import numpy as np
import pytest
from mcap_ros2._cdr import CdrWriter, EncapsulationKind
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from enpire_env import cdr
from enpire_env.kinematics import JOINT_NAMES
from enpire_env.ros_conversions import image_to_msg, make_trajectory
from enpire_msgs.msg import BlockPose, CellState

RNG = np.random.default_rng(7)


def _stamp(msg_stamp, sec, nanosec):
    msg_stamp.sec, msg_stamp.nanosec = sec, nanosec


def _cell_state(n_joints: int, image_hw, visible: bool, frame_id: str) -> CellState:
    m = CellState(
        name=[f"j{i}_{'x' * i}" for i in range(n_joints)],
        position=RNG.normal(size=n_joints).tolist(),
        velocity=RNG.normal(size=n_joints).tolist(),
    )
    _stamp(m.header.stamp, int(RNG.integers(-5, 1 << 30)), int(RNG.integers(0, 10**9)))
    m.header.frame_id = frame_id
    x, y, theta = RNG.uniform(0, 512), RNG.uniform(0, 512), RNG.uniform(-3, 3)
    mismatch, source = float(np.float32(RNG.uniform())), "camera" if visible else ""
    m.block_pose = BlockPose(visible=visible, x=x, y=y, theta=theta, mismatch=mismatch)
    m.block_pose.source = source
    _stamp(m.block_pose.header.stamp, 3, 999_999_999)
    if image_hw:
        img = RNG.integers(0, 256, (*image_hw, 3), dtype=np.uint8)
        m.image = image_to_msg(img)
        m.image.header.frame_id = "camera"
        _stamp(m.image.header.stamp, 4, 5)
    return m


CASES = [
    (6, None, True, ""),
    (6, (5, 7), False, "base"),
    (1, (1, 1), True, "ü"),  # odd lengths everywhere: the padding before each aligned field
    (0, (3, 2), True, "abc"),
    (7, (96, 96), True, "frame_id_of_eleven"[:11]),
]


@pytest.mark.parametrize("case", CASES)
def test_cell_state_both_ways(case):
    m = _cell_state(*case)
    data = serialize_message(m)
    v = cdr.decode_cell_state(data)
    assert v.header.stamp == cdr.Stamp(m.header.stamp.sec, m.header.stamp.nanosec)
    assert v.header.frame_id == m.header.frame_id
    assert v.name == list(m.name)
    assert v.position == list(m.position) and v.velocity == list(m.velocity)
    p, want = v.block_pose, m.block_pose
    assert (p.visible, p.x, p.y, p.theta) == (want.visible, want.x, want.y, want.theta)
    assert (p.mismatch, p.source) == (want.mismatch, want.source)
    assert p.header.stamp == cdr.Stamp(3, 999_999_999)
    img, want = v.image, m.image
    assert (img.height, img.width, img.encoding, img.step) == (
        want.height,
        want.width,
        want.encoding,
        want.step,
    )
    assert img.data == bytes(m.image.data) and img.header.frame_id == m.image.header.frame_id
    # and back: what rclpy reads from the bytes written here is the message itself
    out = cdr.encode_cell_state(v.header, v.name, v.position, v.velocity, v.block_pose, v.image)
    assert deserialize_message(out, CellState) == m
    assert len(out) == len(data)
    # the parts the rollout node records on their own topics
    js = cdr.JointStateView(v.header, v.name, v.position, v.velocity)
    want = JointState(header=m.header, name=m.name, position=m.position, velocity=m.velocity)
    assert deserialize_message(js.cdr(), JointState) == want
    assert deserialize_message(v.block_pose.cdr(), BlockPose) == m.block_pose
    assert deserialize_message(v.image.cdr(), Image) == m.image
    # a message (not a view) writes as well
    assert deserialize_message(cdr.encode_block_pose(m.block_pose), BlockPose) == m.block_pose


def test_an_empty_image_is_no_frame():
    m = _cell_state(6, None, True, "")
    header = cdr.Header(cdr.Stamp(1, 2))
    out = cdr.encode_cell_state(header, m.name, m.position, m.velocity, m.block_pose)
    back = deserialize_message(out, CellState)
    assert back.image == Image() and back.block_pose == m.block_pose
    assert cdr.decode_cell_state(out).image.width == 0


def test_a_joint_state_from_its_bytes_and_big_endian_too():
    m = JointState(name=["a", "bb"], position=[1.0, 2.0], velocity=[], effort=[0.5])
    _stamp(m.header.stamp, 9, 8)
    v = cdr.decode_joint_state(serialize_message(m))
    assert (v.name, v.position, v.velocity, v.effort) == (["a", "bb"], [1.0, 2.0], [], [0.5])
    assert v.header.stamp == cdr.Stamp(9, 8)
    out = io.BytesIO()  # the same message as a big-endian machine sends it
    w = CdrWriter(out, EncapsulationKind.CDR_BE)
    w.write_int32(9)
    w.write_uint32(8)
    w.write_string("")
    w.write_uint32(2)
    w.write_string_array(["a", "bb"])
    for values in ([1.0, 2.0], [], [0.5]):
        w.write_uint32(len(values))
        w.write_float64_array(values)
    assert cdr.decode_joint_state(out.getvalue()) == v


@pytest.mark.parametrize("head", [b"\x00\x07\x00\x00", b"\x00\x03\x00\x00", b"\x01\x01\x00\x00"])
def test_other_encodings_are_refused_not_misread(head):
    data = head + serialize_message(JointState(name=["a"], position=[1.0]))[4:]
    for decode in (cdr.decode_joint_state, cdr.decode_cell_state, cdr.decode_joint_trajectory):
        with pytest.raises(ValueError, match="not plain CDR"):
            decode(data)
        with pytest.raises(ValueError, match="not plain CDR"):
            decode(b"\x00")


def test_trajectory_both_ways():
    m = JointTrajectory(joint_names=["a", "bb", "ccc"])
    m.header.frame_id = "f"
    for i in range(3):
        pt = JointTrajectoryPoint(
            positions=RNG.normal(size=3).tolist(),
            velocities=RNG.normal(size=3 if i else 0).tolist(),
            accelerations=RNG.normal(size=i).tolist(),
            effort=[1.5] * (2 - i),
        )
        _stamp(pt.time_from_start, i, 250_000_000 * i)
        m.points.append(pt)
    v = cdr.decode_joint_trajectory(serialize_message(m))
    assert v.joint_names == ["a", "bb", "ccc"] and v.header.frame_id == "f"
    for got, want in zip(v.points, m.points, strict=True):
        assert got.positions == list(want.positions)
        assert got.velocities == list(want.velocities)
        assert got.accelerations == list(want.accelerations) and got.effort == list(want.effort)
        span = want.time_from_start
        assert got.time_from_start == cdr.Stamp(span.sec, span.nanosec)
    assert deserialize_message(v.cdr(), JointTrajectory) == m


@pytest.mark.parametrize("dt", [0.1, 0.05, 1.0, 1.9999999999, 2.5e-10, 0.0])
def test_the_commands_bytes_are_make_trajectorys(dt):
    q = RNG.normal(size=6)
    data = cdr.encode_joint_trajectory(JOINT_NAMES, [(dt, q)])
    assert deserialize_message(data, JointTrajectory) == make_trajectory(JOINT_NAMES, [(dt, q)])
    span = cdr.decode_joint_trajectory(data).points[0].time_from_start
    assert span.sec + span.nanosec * 1e-9 == pytest.approx(dt, abs=1e-9)  # 1.9999999999: 2 s


def test_a_sim_cells_bytes_are_usual_messages_to_ros(ros_domain, ros_context):
    """cell_state and cell_state/video go out as bytes; a plain rclpy subscriber (any ROS node,
    ros2 topic echo) gets them as CellState messages, the frame as the camera's."""
    from enpire_env.testing import TopicProbe, running, sim_cell

    with running({"cell": sim_cell(4.0, "robot_0", "camera_hz:=10.0")}):
        probe = TopicProbe(ros_context)
        try:
            probe.watch("/robot_0/cell_state", CellState, qos=1)
            probe.watch("/robot_0/cell_state/video", CellState, qos=1)
            probe.watch("/robot_0/camera/image_raw", Image, qos=1)
            state = probe.wait_for("/robot_0/cell_state", lambda m: m.header.stamp.sec >= 1)
            assert list(state.name) == list(JOINT_NAMES) and len(state.position) == 6
            assert state.block_pose.visible and state.block_pose.source == "sim_model"
            assert state.image.width == 0  # frames only on cell_state/video
            frame = probe.wait_for("/robot_0/cell_state/video", lambda m: m.image.width > 0)
            img = frame.image
            assert (img.height, img.width, img.encoding) == (64, 64, "rgb8")
            assert frame.image.header.frame_id == "camera" and len(frame.image.data) == 64 * 64 * 3
            assert frame.image.header.stamp == frame.header.stamp
            cam = probe.wait_for("/robot_0/camera/image_raw")
            assert (cam.height, cam.width, cam.step) == (64, 64, 64 * 3)
        finally:
            probe.close()
