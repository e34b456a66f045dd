"""One robot of the fleet as the rollout node sees it: its topics, its liveness, and the
RobotPort the episode runner (:func:`enpire_policy.episode.run_on_port`) drives over ROS:
joint states and perception in, joint targets out through the safety filter, at the cell's
control rate on the cell's clock. The step's state and command are read and written as bytes
(:mod:`enpire_env.cdr`); the MCAP log records the parts of a state on their own topics."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from enpire_env import cdr
from enpire_env.goal_liveness import Liveness, ServerGoneError, send_goal, wait_result
from enpire_env.kinematics import JOINT_NAMES
from enpire_env.node_utils import CAMERA_QOS, STREAM_QOS, StreamNode, joint_positions
from enpire_env.pusht_geometry import GOAL_POSE, coverage
from enpire_env.ros_cell_port import DISCOVERY_TIMEOUT
from enpire_env.ros_conversions import (
    msg_to_image,
    seconds_from_stamp,
    video_frame,
)
from enpire_msgs.action import Reset
from enpire_msgs.msg import BlockPose, CellState
from enpire_policy.episode import CellLostError
from enpire_rollout.mcap_log import McapEpisodeLog
from enpire_rollout.rollout_service import Recorder, ResetReport

__all__ = ["CellLostError", "RobotLink"]


class RobotLink:
    def __init__(
        self,
        node: Node,
        robot_id: str,
        group,
        kin,
        cell_cfg,
        record_video: bool,
        streams: StreamNode,
        dt: float = 0.1,
        cell_timeout: float = 3.0,
        reset_mode: str = "",
        reset_timeout: float = 120.0,
        mcap_image_every: int = 5,
        reset_client: ActionClient | None = None,
    ):
        """``reset_client``: the node's one /reset action client, shared by its robots (made
        here when not given): every client of an action takes every feedback and status
        message of every goal, so a client per robot had each robot's reset wake all of them."""
        self.node, self.robot_id = node, robot_id
        self.reset_mode, self.reset_timeout = reset_mode, reset_timeout
        self.mcap_image_every = mcap_image_every
        self.kin, self.cell_cfg, self.dt, self.cell_timeout = kin, cell_cfg, dt, cell_timeout
        self._state: cdr.JointStateView | None = None  # the state the episode's step acts on
        self._state_tick = 0
        self.streams = streams  # the node's: where the robot's topics arrive
        self._cv = threading.Condition()
        self._js: cdr.JointStateView | None = None
        self._js_wall = 0.0
        self._tick = 0
        self._pose: BlockPose | None = None
        self._image: Image | None = None
        self.listeners: list = []  # callables(topic, msg) while an episode records MCAP
        self._group, self._record_video, self._subs = group, record_video, []
        self._ns = ns = f"/{robot_id}"
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.cmd_topic = f"{ns}/policy/joint_trajectory"
        self.pub = node.create_publisher(JointTrajectory, self.cmd_topic, reliable)
        self.reset_client = reset_client or ActionClient(
            node, Reset, "/reset", callback_group=group
        )

    # --- streams: subscribed only while they are used (an idle robot costs nothing) -------
    def open(self) -> None:
        """Subscribe to the robot's state (and camera, when recording video)."""
        if self._subs:
            return
        with self._cv:
            self._js, self._pose, self._image = None, None, None
        camera = self._record_video  # frames from camera/image_raw, unless cell_state/video
        # a cell_state is read from its bytes (enpire_env.cdr: the step's hot path)
        raw_state = (CellState, self._on_raw_cell_state, STREAM_QOS, True)
        if camera and self.node.count_publishers(f"{self._ns}/cell_state/video"):
            topics = [("cell_state/video", *raw_state)]
            camera = False
        elif self.node.count_publishers(f"{self._ns}/cell_state"):  # one message per step
            topics = [("cell_state", *raw_state)]
        else:  # a cell of standard topics only (ros2_control and a perception node)
            topics = [
                ("joint_states", JointState, self._on_raw_js, STREAM_QOS, True),
                ("perception/block_pose", BlockPose, self._on_pose, STREAM_QOS, False),
            ]
        if camera:
            topics.append(("camera/image_raw", Image, self._on_image, CAMERA_QOS, False))
        self._subs = [
            self.streams.subscribe(t, f"{self._ns}/{name}", cb, qos, raw)
            for name, t, cb, qos, raw in topics
        ]

    def close(self) -> None:
        for s in self._subs:
            self.streams.unsubscribe(s)
        self._subs = []

    def wait_alive(self, timeout: float) -> bool:
        """Whether the (open) link receives joint states within ``timeout`` s."""
        with self._cv:  # the first message after subscribing waits for discovery too
            ok = self._cv.wait_for(
                lambda: self._js is not None and time.monotonic() - self._js_wall < timeout,
                max(timeout, DISCOVERY_TIMEOUT),
            )
            # the first perception and video frame, where the cell streams them
            if ok and self.node.count_publishers(f"{self._ns}/perception/block_pose"):
                self._cv.wait_for(lambda: self._pose is not None, timeout)
            if ok and self._record_video:
                self._cv.wait_for(lambda: self._image is not None, min(timeout, 1.0))
            return ok

    # --- inputs -------------------------------------------------------------------------
    def _on_raw_js(self, data: bytes) -> None:
        self._on_js(cdr.decode_joint_state(data))

    def _on_js(self, msg: cdr.JointStateView) -> None:
        with self._cv:
            self._js, self._js_wall = msg, time.monotonic()
            self._tick += 1
            self._cv.notify_all()
        for f in list(self.listeners):
            f("joint_states", msg)

    def _on_raw_cell_state(self, data: bytes) -> None:
        self._on_cell_state(cdr.decode_cell_state(data))

    def _on_cell_state(self, msg: cdr.CellStateView) -> None:
        """The parts of a cell_state, as if they had come on their own topics (the MCAP log
        records them so); the pose only when perception gave a new one, the camera frame where
        the message carries one (cell_state/video)."""
        if msg.image.width:  # before the joint states: a step's frame is there when it ends
            self._on_image(msg.image)
        pose = msg.block_pose
        with self._cv:
            last = self._pose
        if (pose.visible or pose.source) and (last is None or pose.header != last.header):
            self._on_pose(pose)
        self._on_js(cdr.JointStateView(msg.header, msg.name, msg.position, msg.velocity))

    def _on_pose(self, msg: BlockPose) -> None:
        with self._cv:
            self._pose = msg
            self._cv.notify_all()
        for f in list(self.listeners):
            f("perception/block_pose", msg)

    def _on_image(self, msg: Image) -> None:
        with self._cv:
            self._image = msg
            self._cv.notify_all()
        for f in list(self.listeners):
            f("camera/image_raw", msg)

    def alive(self, timeout: float) -> bool:
        with self._cv:
            return self._js is not None and time.monotonic() - self._js_wall < timeout

    def state_stamp(self):
        """The stamp of the state the episode acts on (None before its first)."""
        js = self._state or self._js
        return None if js is None else js.header.stamp

    def wait_tick(self, after: int, timeout: float) -> tuple[int, cdr.JointStateView]:
        with self._cv:
            ok = self._cv.wait_for(lambda: self._tick > after, timeout)
            if not ok:
                raise CellLostError(f"{self.robot_id}: no joint states for {timeout:g} s")
            return self._tick, self._js

    def publish(self, q: np.ndarray, dt: float) -> cdr.JointTrajectoryView:
        msg = cdr.trajectory_view(JOINT_NAMES, [(dt, q)])
        self.pub.publish(msg.cdr())  # as bytes (enpire_env.cdr: the step's hot path)
        for f in list(self.listeners):
            f("policy/joint_trajectory", msg)
        return msg

    # --- RobotPort --------------------------------------------------------------------------
    def start(self) -> float:
        self._state_tick, self._state = self.wait_tick(self._tick, self.cell_timeout)
        return seconds_from_stamp(self._state.header.stamp)

    def coverage(self, obs: dict) -> float | None:
        return None if obs["block_pose"] is None else coverage(obs["block_pose"])

    def joints(self) -> np.ndarray:
        return joint_positions(self._state)

    def command(self, q: np.ndarray) -> None:
        self.publish(q, self.dt)

    def advance(self) -> float:
        self._state_tick, self._state = self.wait_tick(self._state_tick, self.cell_timeout)
        return seconds_from_stamp(self._state.header.stamp)

    def image(self, size: int) -> np.ndarray | None:
        with self._cv:
            msg = self._image
        if msg is None:
            return None
        img = msg_to_image(msg, copy=False)
        frame = video_frame(img, size)
        return frame.copy() if frame is img else frame

    def observe(self, step: int, pose_wait: float = 0.05) -> dict:
        js, dt = self._state, self.dt
        q = joint_positions(js)
        tip = self.kin.tip_position(q)
        u, v = self.cell_cfg.table_to_px(tip[0], tip[1])
        t = seconds_from_stamp(js.header.stamp)
        with self._cv:  # perception of the same instant, when it streams at the control rate
            if self._pose is not None and seconds_from_stamp(self._pose.header.stamp) >= t - dt:
                self._cv.wait_for(
                    lambda: seconds_from_stamp(self._pose.header.stamp) >= t - 1e-6, pose_wait
                )
            p = self._pose
        pose = [p.x, p.y, p.theta] if p is not None and p.visible else None
        return {
            "tip": [u, v],
            "tip_height": float(tip[2]),
            "joints": q.tolist(),
            "step": step,
            "dt": dt,
            "goal_pose": list(GOAL_POSE),
            "block_pose": pose,
        }

    # --- around episodes: EN's reset, the MCAP log ------------------------------------------
    def reset(self, seed: int) -> ResetReport:
        t0 = time.monotonic()
        if not self.reset_client.wait_for_server(timeout_sec=10.0):
            return ResetReport(False, "no /reset server", cell_unavailable=True)
        goal = Reset.Goal(
            robot_id=self.robot_id, task="pusht", seed=int(seed), mode=self.reset_mode
        )
        life = Liveness("the Reset server")
        try:
            handle = send_goal(self.reset_client, goal, life)
            if handle is None or not handle.accepted:
                return ResetReport(False, "reset goal refused", cell_unavailable=True)
            got = wait_result(handle.get_result_async(), life, self.reset_timeout, handle)
        except (ServerGoneError, TimeoutError) as e:  # env_node died: the cell is not at fault
            return ResetReport(False, str(e), time.monotonic() - t0, cell_unavailable=True)
        r = got.result
        unavailable = int(r.error_code) == Reset.Result.CELL_UNAVAILABLE
        return ResetReport(r.success, r.error_msg, float(r.robot_seconds), unavailable)

    def recorder(self, path: Path) -> Recorder:
        return _McapRecorder(self, path)

    def hold(self) -> None:
        """Stop the arm where it is: a command to the joints' present positions."""
        with self._cv:
            js = self._js
        q = joint_positions(js) if js is not None else None
        if q is not None:
            self.publish(q, self.dt)


class _McapRecorder(Recorder):
    """The episode's topics as they travel (every ``mcap_image_every``-th camera frame)."""

    def __init__(self, link: RobotLink, path: Path):
        self.link, self.log, self.images = link, McapEpisodeLog(path), 0

    def _on(self, topic: str, msg) -> None:
        if topic == "camera/image_raw":
            self.images += 1
            every = self.link.mcap_image_every
            if not every or self.images % every:
                return
        if topic == "policy/joint_trajectory":  # stamped 0 (start now): at its state's time
            stamp = self.link.state_stamp()
        else:
            stamp = getattr(getattr(msg, "header", None), "stamp", None)
        t_ns = stamp.sec * 1_000_000_000 + stamp.nanosec if stamp else time.time_ns()
        self.log.write(f"/{self.link.robot_id}/{topic}", msg, t_ns)

    def __enter__(self):
        self.link.listeners.append(self._on)
        return self

    def __exit__(self, *exc) -> None:
        if self._on in self.link.listeners:
            self.link.listeners.remove(self._on)

    def finish(self, metadata: dict) -> str:
        self.log.metadata("episode", metadata)
        return str(self.log.close())

    def abort(self) -> None:
        self.log.abort()
