"""Take calibration frames from a cell's camera: a V4L2 device (or its index, or a video file)
through OpenCV, or a ROS image topic (``ros:/robot_0/camera/image_raw``) through rclpy.

    for i, frame in enumerate(capture(source, count=12, interval=2.0)):
        save(frame)            # move the board between shots

``interval`` 0 waits for Enter before each shot (``enpire calibrate capture`` prompts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np


class CaptureError(RuntimeError):
    """The camera gave no frame (says which and why)."""


def capture(
    source: str, count: int, interval: float = 0.0, wait: Callable[[int], None] | None = None,
    timeout: float = 10.0,
) -> Iterator[np.ndarray]:  # fmt: skip
    """``count`` RGB frames from ``source``, one per ``interval`` seconds (0: ``wait(i)`` is
    called before frame i, e.g. a prompt)."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    grab = _ros_grabber(source[4:], timeout) if source.startswith("ros:") else _cv_grabber(
        source, timeout)  # fmt: skip
    try:
        for i in range(count):
            if interval > 0:
                if i:
                    time.sleep(interval)
            elif wait is not None:
                wait(i)
            yield grab()
    finally:
        grab.close()


class _Grabber:
    def __init__(self, fn, close):
        self._fn, self.close = fn, close

    def __call__(self) -> np.ndarray:
        return self._fn()


def _cv_grabber(source: str, timeout: float) -> _Grabber:
    import cv2

    cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not cap.isOpened():
        raise CaptureError(f"cannot open camera {source}")

    def grab() -> np.ndarray:
        # the newest frame, not one queued in the driver's buffer since the last shot
        for _ in range(2 if not Path(source).is_file() else 0):
            cap.grab()
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            ok, img = cap.read()
            if ok:
                return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            if Path(source).is_file():
                break
        raise CaptureError(f"no frame from {source}")

    return _Grabber(grab, cap.release)


def _ros_grabber(topic: str, timeout: float) -> _Grabber:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from enpire_env.node_utils import CAMERA_QOS
    from enpire_env.ros_conversions import msg_to_image

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("enpire_calibrate_capture", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    cv = threading.Condition()
    latest: list = [None, 0]

    def on_image(msg) -> None:
        with cv:
            latest[0], latest[1] = msg, latest[1] + 1
            cv.notify_all()

    node.create_subscription(Image, topic, on_image, CAMERA_QOS)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()

    def grab() -> np.ndarray:
        with cv:
            seen = latest[1]
            if not cv.wait_for(lambda: latest[1] > seen, timeout):
                raise CaptureError(f"no image on {topic} within {timeout:g} s: is the camera "
                                   "node running, and ROS_DOMAIN_ID the fleet's?")  # fmt: skip
            return msg_to_image(latest[0])

    def close() -> None:
        stop.set()
        thread.join(2.0)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)

    return _Grabber(grab, close)
