"""Small converters between ROS messages and numpy (cv_bridge is not on every machine), and
the one resize of recorded video. Nothing ROS is imported at module level: the in-process
robot (enpire_policy.episode) uses it too."""

from __future__ import annotations

import numpy as np


def image_to_msg(img: np.ndarray, msg=None):
    """An RGB uint8 (H, W, 3) array as sensor_msgs/Image (encoding rgb8)."""
    from sensor_msgs.msg import Image

    msg = msg or Image()
    h, w = img.shape[:2]
    msg.height, msg.width = h, w
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = w * 3
    msg.data = np.ascontiguousarray(img, dtype=np.uint8).tobytes()
    return msg


def msg_to_image(msg, copy: bool = True) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8; a message or an enpire_env.cdr.ImageView) as an RGB
    uint8 (H, W, 3) array; ``copy=False``: a read-only view of the message's data where it is
    rgb8 (for a reader that only reads it, such as a resize)."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"unsupported image encoding '{msg.encoding}' (need rgb8 or bgr8)")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    img = buf.reshape(msg.height, msg.step)[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    if msg.encoding == "bgr8":
        return img[:, :, ::-1].copy()
    return img.copy() if copy else img


def video_frame(img: np.ndarray, size: int) -> np.ndarray:
    """A camera frame at a recorded video's side: cv2's INTER_AREA (area averaging), the one
    resize of recorded video, wherever it runs (the rollout node for a ROS cell's camera
    frames, an in-process robot for its rendered ones). Unchanged at that size or with size
    0."""
    if not size or img.shape[:2] == (size, size):
        return img
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def seconds_parts(seconds: float) -> tuple[int, int]:
    """(sec, nanosec) of a time or duration in seconds, as builtin_interfaces stores it."""
    # round to nanoseconds first: 5.9999999999 s is 6 s, not 5 s + a nanosecond part that
    # rounds up to a whole second and wraps to 0 (a clock that jumps back a second)
    ns = int(round(seconds * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


def stamp_from_seconds(seconds: float):
    from builtin_interfaces.msg import Time

    sec, nanosec = seconds_parts(seconds)
    return Time(sec=sec, nanosec=nanosec)


def seconds_from_stamp(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def duration_seconds(d) -> float:
    return d.sec + d.nanosec * 1e-9


def trajectory_points(msg, joint_names, current) -> list[tuple[float, list[float]]]:
    """trajectory_msgs/JointTrajectory as (time_from_start, positions[len(joint_names)]).

    Joints the message does not name keep their ``current`` position. Raises ValueError for
    unknown joint names, repeated names or points whose positions do not match the names.
    """
    names = list(msg.joint_names)
    if not names:
        raise ValueError("trajectory names no joints")
    unknown = [n for n in names if n not in joint_names]
    if unknown:
        raise ValueError(f"unknown joint(s) {unknown}; this arm has {list(joint_names)}")
    if len(set(names)) != len(names):
        raise ValueError("trajectory names a joint twice")
    if not msg.points:
        raise ValueError("trajectory has no points")
    idx = [joint_names.index(n) for n in names]
    out = []
    for i, pt in enumerate(msg.points):
        if len(pt.positions) != len(names):
            raise ValueError(
                f"point {i} has {len(pt.positions)} positions for {len(names)} joints"
            )
        q = list(current)
        for j, v in zip(idx, pt.positions, strict=True):
            q[j] = float(v)
        out.append((duration_seconds(pt.time_from_start), q))
    return out


def make_trajectory(joint_names, points):
    """trajectory_msgs/JointTrajectory from (time_from_start, positions) pairs."""
    from builtin_interfaces.msg import Duration
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    msg = JointTrajectory()
    msg.joint_names = list(joint_names)
    for t, q in points:
        pt = JointTrajectoryPoint()
        pt.positions = [float(v) for v in q]
        sec, nanosec = seconds_parts(t)
        pt.time_from_start = Duration(sec=sec, nanosec=nanosec)
        msg.points.append(pt)
    return msg
