"""One robot of the fleet as the rollout node sees it: its topics, its liveness, and how an
episode runs on it (Reset through EN, then the policy at the cell's 10 Hz through the safety
filter, then verification and recording)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.action import ActionClient
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from enpire_env.kinematics import JOINT_NAMES
from enpire_env.node_utils import joint_positions, transient_subscription
from enpire_env.pusht_geometry import GOAL_POSE, coverage, is_success, reward_from_coverage
from enpire_env.ros_cell_port import DISCOVERY_TIMEOUT
from enpire_env.ros_conversions import make_trajectory, msg_to_image, seconds_from_stamp
from enpire_msgs.action import Reset
from enpire_msgs.msg import BlockPose
from enpire_policy.episode import TipControl
from enpire_policy.interface import Action
from enpire_policy.sandbox import PolicyError


class CellLostError(RuntimeError):
    """The cell stopped publishing (dead, disconnected or paused)."""


@dataclass
class EpisodeRecord:
    episode_id: str
    robot_id: str
    seed: int
    outcome: str  # success | failure | policy_error | reset_failed | interrupted | canceled
    success: bool = False
    steps: int = 0
    final_reward: float = 0.0
    max_reward: float = 0.0
    robot_seconds: float = 0.0
    reset_seconds: float = 0.0
    wall_start: float = 0.0
    wall_end: float = 0.0
    error: str = ""
    states: list = field(default_factory=list, repr=False)
    actions: list = field(default_factory=list, repr=False)
    rewards: list = field(default_factory=list, repr=False)
    frames: list = field(default_factory=list, repr=False)


class RobotLink:
    def __init__(
        self,
        node: Node,
        robot_id: str,
        group,
        kin,
        cell_cfg,
        record_video: bool,
        streams: Node | None = None,
    ):
        self.node, self.robot_id = node, robot_id
        self.streams = streams or node  # where the robot's topic subscriptions live
        self._cv = threading.Condition()
        self._js: JointState | None = None
        self._js_wall = 0.0
        self._tick = 0
        self._pose: BlockPose | None = None
        self._image: Image | None = None
        self.ctrl = TipControl(kin, cell_cfg)
        self.listeners: list = []  # callables(topic, msg) while an episode records MCAP
        self._group, self._record_video, self._subs = group, record_video, []
        self._ns = ns = f"/{robot_id}"
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.cmd_topic = f"{ns}/policy/joint_trajectory"
        self.pub = node.create_publisher(JointTrajectory, self.cmd_topic, reliable)
        self.reset_client = ActionClient(node, Reset, "/reset", callback_group=group)

    # --- streams: subscribed only while they are used (an idle robot costs nothing) -------
    def open(self) -> None:
        """Subscribe to the robot's state (and camera, when recording video)."""
        if self._subs:
            return
        with self._cv:
            self._js, self._pose, self._image = None, None, None
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        topics = [
            (JointState, "joint_states", self._on_js, reliable),
            (BlockPose, "perception/block_pose", self._on_pose, reliable),
        ]
        if self._record_video:
            topics.append((Image, "camera/image_raw", self._on_image, 2))
        group = self._group if self.streams is self.node else None
        self._subs = [
            transient_subscription(self.streams, t, f"{self._ns}/{name}", cb, qos, group)
            for t, name, cb, qos in topics
        ]

    def close(self) -> None:
        for s in self._subs:
            self.streams.destroy_subscription(s)
        self._subs = []

    @property
    def is_open(self) -> bool:
        return bool(self._subs)

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
    def _on_js(self, msg: JointState) -> None:
        with self._cv:
            self._js, self._js_wall = msg, time.monotonic()
            self._tick += 1
            self._cv.notify_all()
        for f in list(self.listeners):
            f("joint_states", msg)

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

    def wait_tick(self, after: int, timeout: float) -> tuple[int, JointState]:
        with self._cv:
            ok = self._cv.wait_for(lambda: self._tick > after, timeout)
            if not ok:
                raise CellLostError(f"{self.robot_id}: no joint states for {timeout:g} s")
            return self._tick, self._js

    def publish(self, q: np.ndarray, dt: float) -> JointTrajectory:
        msg = make_trajectory(JOINT_NAMES, [(dt, q)])
        self.pub.publish(msg)
        for f in list(self.listeners):
            f("policy/joint_trajectory", msg)
        return msg

    # --- one episode --------------------------------------------------------------------
    def observation(self, js: JointState, step: int, dt: float, pose_wait: float = 0.05) -> dict:
        q = joint_positions(js)
        tip = self.ctrl.kin.tip_position(q)
        u, v = self.ctrl.cell_cfg.table_to_px(tip[0], tip[1])
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

    def run_policy(
        self,
        rec: EpisodeRecord,
        policy,
        max_steps: int,
        dt: float,
        cell_timeout: float,
        stop: threading.Event,
        video_size: int,
    ) -> None:
        """Drive the policy for up to ``max_steps`` control periods of cell time."""
        tick, js = self.wait_tick(self._tick, cell_timeout)
        t0 = seconds_from_stamp(js.header.stamp)
        step = 0
        while step < max_steps and not stop.is_set():
            obs = self.observation(js, step, dt)
            if obs["block_pose"] is not None:
                cov = coverage(obs["block_pose"])
                reward = reward_from_coverage(cov)
                rec.max_reward = max(rec.max_reward, reward)
                rec.final_reward = reward
                if is_success(cov):
                    rec.success = True
                    break
            if policy.metadata().get("needs_image"):
                obs["image"] = self._latest_image()
            try:
                action = Action.parse(policy.act(obs))
            except PolicyError:
                raise
            except Exception as e:  # an in-process policy's bug
                raise PolicyError("exception", f"{type(e).__name__}: {e}") from None
            q_now = joint_positions(js)
            q = self.ctrl.joints(action, q_now)
            self.publish(q, dt)
            self._record(rec, obs, action, video_size)
            last = seconds_from_stamp(js.header.stamp)
            tick, js = self.wait_tick(tick, cell_timeout)
            now = seconds_from_stamp(js.header.stamp)
            # a restarted cell's clock starts again from 0 (messages may also come a tick out
            # of order: that is not a restart)
            if now < last - 1.0:
                raise CellLostError(f"{self.robot_id} restarted mid-episode (its clock went back)")
            step = max(step, int(round((now - t0) / dt)))
        rec.steps = min(step, max_steps)
        rec.robot_seconds = seconds_from_stamp(js.header.stamp) - t0

    def _latest_image(self) -> np.ndarray | None:
        with self._cv:
            img = self._image
        return None if img is None else msg_to_image(img)

    def _record(self, rec: EpisodeRecord, obs: dict, action: Action, video_size: int) -> None:
        pose = obs["block_pose"] or [float("nan")] * 3
        rec.states.append([*obs["tip"], *pose])
        tip = action.tip if action.tip is not None else obs["tip"]
        rec.actions.append([tip[0], tip[1], float(action.lift)])
        rec.rewards.append(rec.final_reward)
        if video_size:
            img = self._latest_image()
            if img is None:
                img = np.zeros((video_size, video_size, 3), np.uint8)
            elif img.shape[0] != video_size:
                import cv2

                img = cv2.resize(img, (video_size, video_size), interpolation=cv2.INTER_AREA)
            rec.frames.append(img)

    def hold(self, dt: float) -> None:
        """Stop the arm where it is: a command to the joints' present positions."""
        with self._cv:
            js = self._js
        q = joint_positions(js) if js is not None else None
        if q is not None:
            self.publish(q, dt)
