"""A CellPort over ROS topics: how the EN node drives one robot, simulated or real."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from functools import partial

import numpy as np
from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from enpire_env.cdr import JointStateView, decode_joint_state
from enpire_env.kinematics import GRIPPER_INDEX, JOINT_NAMES
from enpire_env.node_utils import CAMERA_QOS, STREAM_QOS, StreamNode, joint_positions
from enpire_env.reset_routine import CellPort
from enpire_env.ros_conversions import make_trajectory, msg_to_image, seconds_from_stamp
from enpire_msgs.srv import TeleportBlock

# Wall seconds the first message after subscribing may take: endpoint discovery (fast on an
# idle host, seconds on a loaded one). Later gaps longer than cell_timeout mean a dead cell.
DISCOVERY_TIMEOUT = 10.0


class CellUnavailableError(RuntimeError):
    """The cell stopped publishing joint states (dead, disconnected or paused)."""


class RosCellPort(CellPort):
    def __init__(
        self,
        node: Node,
        robot_id: str,
        group: CallbackGroup,
        streams: StreamNode,
        goal_tolerance: float = 0.02,
        cell_timeout: float = 5.0,
        perception=None,
    ):
        self.node = node
        if perception is not None:
            self.perception = perception
        self.streams = streams  # the node's: where joint states and camera arrive
        self.robot_id = robot_id
        self.group = group
        self.goal_tolerance = goal_tolerance
        self.cell_timeout = cell_timeout
        self._cv = threading.Condition()
        self._q: np.ndarray | None = None
        self._t = -1.0
        self._wall = 0.0
        self._estops: dict[str, bool] = {}  # per topic: the robot's stop, the fleet's
        self._image: Image | None = None
        ns = self._ns = f"/{robot_id}"
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._traj_pub = node.create_publisher(
            JointTrajectory, f"{ns}/arm_controller/joint_trajectory", reliable
        )
        for topic in (f"{ns}/emergency_stop", "/emergency_stop"):
            cb = partial(self._on_estop, topic)
            node.create_subscription(Bool, topic, cb, 10, callback_group=group)
        self._teleport = node.create_client(
            TeleportBlock, f"{ns}/sim/teleport", callback_group=group
        )

    # --- streams, subscribed only while a reset needs them --------------------------------
    @contextmanager
    def streaming(self):
        """Joint states flow in (and are paid for) only inside this block: an idle fleet's EN
        node receives nothing. Camera frames are subscribed to per ``camera_image`` call."""
        with self._cv:
            self._q, self._t = None, -1.0
        sub = self.streams.subscribe(
            JointState, f"{self._ns}/joint_states", self._on_raw_joints, STREAM_QOS, raw=True
        )
        try:
            yield self
        finally:
            self.streams.unsubscribe(sub)

    # --- inputs -------------------------------------------------------------------------
    def _on_raw_joints(self, data: bytes) -> None:
        self._on_joints(decode_joint_state(data))  # enpire_env.cdr: every step of a reset

    def _on_joints(self, msg: JointState | JointStateView) -> None:
        q = joint_positions(msg)
        if q is None:
            return
        with self._cv:
            self._q, self._t, self._wall = (
                q,
                seconds_from_stamp(msg.header.stamp),
                time.monotonic(),
            )
            self._cv.notify_all()

    def _on_estop(self, topic: str, msg: Bool) -> None:
        self._estops[topic] = bool(msg.data)
        if msg.data:
            self.node.get_logger().warning(f"{self.robot_id}: emergency stop engaged ({topic})")

    @property
    def estop(self) -> bool:
        """Engaged while the robot's or the fleet's stop is: releasing one lifts not the other."""
        return any(self._estops.values())

    def _wait(self, predicate, timeout_cell: float) -> bool:
        """Wait until predicate() holds, up to timeout_cell seconds of cell time."""
        with self._cv:
            if self._q is None and not self._cv.wait_for(
                lambda: self._q is not None, max(self.cell_timeout, DISCOVERY_TIMEOUT)
            ):
                raise CellUnavailableError(f"no joint_states from {self.robot_id}")
            t_end = self._t + timeout_cell
            while not predicate():
                if self._t >= t_end:
                    return False
                if not self._cv.wait(self.cell_timeout) and (
                    time.monotonic() - self._wall > self.cell_timeout
                ):
                    raise CellUnavailableError(
                        f"{self.robot_id} sent no joint_states for {self.cell_timeout:g} s"
                    )
            return True

    # --- CellPort -----------------------------------------------------------------------
    def joint_positions(self) -> np.ndarray:
        self._wait(lambda: True, 0.0)
        with self._cv:
            return self._q.copy()

    def cell_time(self) -> float:
        self._wait(lambda: True, 0.0)
        return self._t

    def follow(self, points, timeout: float, canceled) -> bool:
        t0 = self.cell_time()
        self._traj_pub.publish(make_trajectory(JOINT_NAMES, points))
        target, t_done = np.asarray(points[-1][1]), t0 + points[-1][0]

        def reached() -> bool:
            err = np.abs(self._q - target)[:GRIPPER_INDEX]  # the gripper may rest on the block
            return canceled() or (self._t >= t_done and bool(np.all(err <= self.goal_tolerance)))

        return self._wait(reached, timeout)

    def _on_image(self, msg: Image) -> None:
        with self._cv:
            self._image = msg
            self._cv.notify_all()

    def camera_image(self) -> np.ndarray:
        """The first frame taken at or after the current cell time. The camera is subscribed
        to for this frame only, so a simulated cell renders nothing nobody looks at."""
        t_req = self.cell_time()
        with self._cv:
            self._image = None
        sub = self.streams.subscribe(
            Image, f"{self._ns}/camera/image_raw", self._on_image, CAMERA_QOS
        )
        # the first message after subscribing waits for endpoint discovery too
        deadline = time.monotonic() + max(self.cell_timeout, DISCOVERY_TIMEOUT)
        try:
            with self._cv:
                while self._image is None or seconds_from_stamp(self._image.header.stamp) < t_req:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise CellUnavailableError(f"no camera image from {self.robot_id}")
                    self._cv.wait(left)
                msg = self._image
        finally:
            self.streams.unsubscribe(sub)
        return msg_to_image(msg)

    def stop(self) -> None:
        # an empty trajectory makes joint_trajectory_controller (and the sim cell) hold position
        self._traj_pub.publish(make_trajectory(JOINT_NAMES, []))

    def teleport(self, block_pose) -> None:
        if not self._teleport.wait_for_service(timeout_sec=self.cell_timeout):
            raise NotImplementedError(
                f"{self.robot_id} offers no sim/teleport service (teleport is simulator-only)"
            )
        done = threading.Event()
        fut = self._teleport.call_async(
            TeleportBlock.Request(block_pose=[float(v) for v in block_pose])
        )
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(self.cell_timeout) or fut.result() is None:
            raise CellUnavailableError(f"{self.robot_id}: teleport did not answer")
        if not fut.result().success:
            raise ValueError(fut.result().message)
        # wait for a joint state taken after the teleport
        t = self.cell_time()
        self._wait(lambda: self._t > t, 1.0)
