"""The control step's messages in CDR, without building rclpy message objects.

Every control step a cell sends its state (enpire_msgs/CellState) and receives the policy's
command (trajectory_msgs/JointTrajectory). rclpy turns each into a tree of Python message
objects (header, stamp, block pose, image, trajectory points), a large part of what a message
costs a Python node: a CellState taken as a message ~0.19 ms of CPU on a 2-core VM, taken
serialized and read here ~0.10 ms. The nodes on the step's hot path therefore publish
serialized bytes and subscribe with ``raw=True``, and read and write the fields with
mcap-ros2-support's CDR reader and writer (its ``_cdr`` module, which its ROS 2 decoder uses;
requirements.lock pins the version). The bytes are what rclpy itself sends (plain CDR, XCDR1:
enpire_env/test/test_cdr.py compares both ways with ``rclpy.serialization``), so any ROS node
reads them as usual messages.

The decoded values are small dataclasses with the messages' field names (``msg.header.stamp``,
``msg.points[0].positions``...), so code that reads a message reads them alike. Nothing ROS is
imported here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from mcap_ros2._cdr import CdrReader, CdrWriter

from enpire_env.ros_conversions import seconds_parts

__all__ = [
    "BlockPoseView",
    "CellStateView",
    "Header",
    "ImageView",
    "JointStateView",
    "JointTrajectoryView",
    "Stamp",
    "TrajectoryPointView",
    "decode_cell_state",
    "decode_joint_state",
    "decode_joint_trajectory",
    "encode_block_pose",
    "encode_cell_state",
    "encode_image",
    "encode_joint_state",
    "encode_joint_trajectory",
]


@dataclass(frozen=True)
class Stamp:
    """builtin_interfaces/Time (and Duration: the same two fields)."""

    sec: int = 0
    nanosec: int = 0


@dataclass(frozen=True)
class Header:
    stamp: Stamp = Stamp()
    frame_id: str = ""


@dataclass(frozen=True)
class BlockPoseView:
    TYPE = "enpire_msgs/msg/BlockPose"
    header: Header = Header()
    visible: bool = False
    x: float = 0.0
    y: float = 0.0
    theta: float = 0.0
    mismatch: float = 0.0
    source: str = ""

    def cdr(self) -> bytes:
        return encode_block_pose(self)


@dataclass(frozen=True)
class ImageView:
    """sensor_msgs/Image; ``data``: bytes or a read-only view of them (a decoded message's)."""

    TYPE = "sensor_msgs/msg/Image"
    header: Header = Header()
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    data: bytes = b""

    def cdr(self) -> bytes:
        return encode_image(self)


@dataclass(frozen=True)
class JointStateView:
    TYPE = "sensor_msgs/msg/JointState"
    header: Header = Header()
    name: list = field(default_factory=list)
    position: list = field(default_factory=list)
    velocity: list = field(default_factory=list)
    effort: list = field(default_factory=list)

    def cdr(self) -> bytes:
        return encode_joint_state(self)


@dataclass(frozen=True)
class CellStateView:
    TYPE = "enpire_msgs/msg/CellState"
    header: Header = Header()
    name: list = field(default_factory=list)
    position: list = field(default_factory=list)
    velocity: list = field(default_factory=list)
    block_pose: BlockPoseView = BlockPoseView()
    image: ImageView = ImageView()


@dataclass(frozen=True)
class TrajectoryPointView:
    positions: list = field(default_factory=list)
    velocities: list = field(default_factory=list)
    accelerations: list = field(default_factory=list)
    effort: list = field(default_factory=list)
    time_from_start: Stamp = Stamp()


@dataclass(frozen=True)
class JointTrajectoryView:
    TYPE = "trajectory_msgs/msg/JointTrajectory"
    header: Header = Header()
    joint_names: list = field(default_factory=list)
    points: list = field(default_factory=list)  # of TrajectoryPointView

    def cdr(self) -> bytes:
        w, out = _writer()
        _w_header(w, self.header)
        _w_strings(w, self.joint_names)
        w.write_uint32(len(self.points))
        for p in self.points:
            for values in (p.positions, p.velocities, p.accelerations, p.effort):
                _w_floats(w, values)
            w.write_int32(p.time_from_start.sec)
            w.write_uint32(p.time_from_start.nanosec)
        return out.getvalue()


# --- reading -----------------------------------------------------------------------------
def _reader(data: bytes, what: str) -> CdrReader:
    """A reader of plain CDR (XCDR1), as ROS 2's RMWs send these types; anything else (XCDR2,
    a parameter list) is refused rather than misread."""
    if len(data) < 4 or data[0] != 0 or data[1] not in (0, 1):
        raise ValueError(f"{what}: not plain CDR (encapsulation {bytes(data[:2]).hex()})")
    return CdrReader(data)


def _r_header(r: CdrReader) -> Header:
    sec, nanosec = r.int32(), r.uint32()
    return Header(Stamp(sec, nanosec), r.string())


def _r_floats(r: CdrReader) -> list:
    return r.float64_array(r.sequence_length())


def decode_cell_state(data: bytes) -> CellStateView:
    """enpire_msgs/CellState from its CDR bytes (as taken with ``raw=True``)."""
    r = _reader(data, "CellState")
    header = _r_header(r)
    name = r.string_array(r.sequence_length())
    position, velocity = _r_floats(r), _r_floats(r)
    pose = BlockPoseView(
        _r_header(r), r.boolean(), r.float64(), r.float64(), r.float64(), r.float32(), r.string()
    )
    ih = _r_header(r)
    height, width, encoding = r.uint32(), r.uint32(), r.string()
    is_bigendian, step = r.uint8(), r.uint32()
    size = r.sequence_length()  # the frame's bytes as a view of the message's: no copy
    data = memoryview(r.data)[r.offset : r.offset + size]
    r.offset += size
    image = ImageView(ih, height, width, encoding, is_bigendian, step, data)
    return CellStateView(header, name, position, velocity, pose, image)


def decode_joint_state(data: bytes) -> JointStateView:
    """sensor_msgs/JointState from its CDR bytes."""
    r = _reader(data, "JointState")
    header = _r_header(r)
    name = r.string_array(r.sequence_length())
    return JointStateView(header, name, _r_floats(r), _r_floats(r), _r_floats(r))


def decode_joint_trajectory(data: bytes) -> JointTrajectoryView:
    """trajectory_msgs/JointTrajectory from its CDR bytes."""
    r = _reader(data, "JointTrajectory")
    header = _r_header(r)
    names = r.string_array(r.sequence_length())
    points = []
    for _ in range(r.sequence_length()):
        values = [_r_floats(r) for _ in range(4)]
        points.append(TrajectoryPointView(*values, Stamp(r.int32(), r.uint32())))
    return JointTrajectoryView(header, names, points)


# --- writing -----------------------------------------------------------------------------
def _writer() -> tuple[CdrWriter, io.BytesIO]:
    out = io.BytesIO()
    return CdrWriter(out), out


def _w_header(w: CdrWriter, h) -> None:
    w.write_int32(h.stamp.sec)
    w.write_uint32(h.stamp.nanosec)
    w.write_string(h.frame_id)


def _w_strings(w: CdrWriter, values) -> None:
    w.write_uint32(len(values))
    w.write_string_array(values)


def _w_floats(w: CdrWriter, values) -> None:
    w.write_uint32(len(values))
    w.write_float64_array(values)


def _w_block_pose(w: CdrWriter, p) -> None:
    _w_header(w, p.header)
    w.write_boolean(p.visible)
    w.write_float64(p.x)
    w.write_float64(p.y)
    w.write_float64(p.theta)
    w.write_float32(p.mismatch)
    w.write_string(p.source)


def _w_image(w: CdrWriter, img) -> None:
    _w_header(w, img.header)
    w.write_uint32(img.height)
    w.write_uint32(img.width)
    w.write_string(img.encoding)
    w.write_uint8(img.is_bigendian)
    w.write_uint32(img.step)
    data = memoryview(img.data).cast("B")  # bytes, array.array or a view of a C-ordered array
    w.write_uint32(len(data))
    w.write_bytes(data)


def encode_block_pose(pose) -> bytes:
    """enpire_msgs/BlockPose (a message or a BlockPoseView) as CDR."""
    w, out = _writer()
    _w_block_pose(w, pose)
    return out.getvalue()


def encode_image(img) -> bytes:
    """sensor_msgs/Image (a message or an ImageView) as CDR."""
    w, out = _writer()
    _w_image(w, img)
    return out.getvalue()


def encode_joint_state(js) -> bytes:
    """sensor_msgs/JointState (a message or a JointStateView) as CDR."""
    w, out = _writer()
    _w_header(w, js.header)
    _w_strings(w, js.name)
    for values in (js.position, js.velocity, js.effort):
        _w_floats(w, values)
    return out.getvalue()


def encode_cell_state(header: Header, name, position, velocity, pose, image=None) -> bytes:
    """enpire_msgs/CellState as CDR: ``pose`` a BlockPose (message or view), ``image`` an
    ImageView or None (no frame: an empty image)."""
    w, out = _writer()
    _w_header(w, header)
    _w_strings(w, name)
    _w_floats(w, position)
    _w_floats(w, velocity)
    _w_block_pose(w, pose)
    _w_image(w, image or ImageView())
    return out.getvalue()


def encode_joint_trajectory(joint_names, points) -> bytes:
    """trajectory_msgs/JointTrajectory from (time_from_start [s], positions) pairs, as
    :func:`enpire_env.ros_conversions.make_trajectory` builds it."""
    return trajectory_view(joint_names, points).cdr()


def trajectory_view(joint_names, points) -> JointTrajectoryView:
    out = []
    for t, q in points:
        span = Stamp(*seconds_parts(t))
        out.append(TrajectoryPointView([float(v) for v in q], time_from_start=span))
    return JointTrajectoryView(joint_names=list(joint_names), points=out)
