"""Simulated SO-101 PushT cell node: the same topics a ros2_control SO-101 with a camera has.

Per robot namespace:
  sub  arm_controller/joint_trajectory      trajectory_msgs/JointTrajectory (arm and gripper)
  sub  gripper_controller/joint_trajectory  trajectory_msgs/JointTrajectory (gripper only)
  sub  policy/joint_trajectory              through the safety filter, in this process
  pub  safety/status                        (safety_filter: true; see safety_filter_node)
  pub  joint_states                         sensor_msgs/JointState (each step, while subscribed)
  pub  cell_state                           enpire_msgs/CellState: joint states and block pose
                                            in one message (every step, while subscribed)
  pub  cell_state/video                     the same with the step's camera frame (camera_hz)
  pub  camera/image_raw                     sensor_msgs/Image rgb8, top-down (camera_hz)
  pub  clock                                rosgraph_msgs/Clock: the cell's own clock
  pub  sim/ground_truth                     enpire_msgs/SimGroundTruth (tests/benchmarks only)
  srv  sim/teleport                         enpire_msgs/srv/TeleportBlock (simulator only)

Stamps are cell-clock time. ``time_scale`` runs the cell faster (or slower) than real time.
The step's messages (joint_states, cell_state(/video) out, policy/joint_trajectory in) are
written and read as bytes (:mod:`enpire_env.cdr`): the same messages on the wire, without
rclpy's message objects on the hot path.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory

from enpire_env import cdr
from enpire_env.camera_sim import CameraConfig, SyntheticCamera, draw_scene
from enpire_env.kinematics import JOINT_NAMES, So101Kinematics
from enpire_env.node_utils import StreamNode, declare, run_node
from enpire_env.perception import TopDownPerception, load_perception
from enpire_env.ros_conversions import image_to_msg, stamp_from_seconds, trajectory_points
from enpire_env.safety_filter_node import SafetyGate, declare_safety_config
from enpire_env.sim_cell import CellConfig, CommandError, PushTCell
from enpire_env.tasks import PUSHT
from enpire_msgs.msg import BlockPose, CellState, SimGroundTruth
from enpire_msgs.srv import TeleportBlock


class SimCellNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_cell")
        self.time_scale = declare(self, "time_scale", 1.0, "Cell seconds per wall second.")
        control_hz = declare(self, "control_hz", 10.0, "Control rate on the cell clock [Hz].")
        camera_hz = declare(self, "camera_hz", 10.0, "Camera rate on the cell clock [Hz].")
        self.camera_size = declare(self, "camera_size", 256, "Camera image side [px].")
        seed = declare(self, "seed", 0, "Seed of the initial block pose.")
        camera_model = declare(
            self, "camera_model", "topdown",
            "camera/image_raw: 'topdown' (gym-pusht's renderer from straight above, "
            "camera_size px square) or 'synthetic' (a tilted perspective camera with lens "
            "distortion, uneven light, noise and blur over the mat with its ArUco corner "
            "markers, as a real cell's camera; read it with a calibration).",
        )  # fmt: skip
        tilt = declare(self, "camera_tilt_deg", 20.0, "Synthetic camera: tilt from vertical.")
        brightness = declare(
            self, "camera_brightness", 1.0, "Synthetic camera: light / exposure factor."
        )
        noise = declare(self, "camera_noise_sigma", 2.0, "Synthetic camera: noise [grey levels].")
        calibration_dir = declare(
            self, "calibration_dir", "",
            "perception 'camera' with the synthetic camera: folder of <robot>.yaml calibrations.",
        )  # fmt: skip
        self.perception = declare(
            self, "perception", "model",
            "perception/block_pose source: 'model' (true pose plus the camera estimator's "
            "measured error, every control step), 'camera' (the estimator on each camera "
            "frame), 'off'.",
        )  # fmt: skip
        self.perception_noise = declare(
            self, "perception_noise", [0.3, 0.3, 0.002],
            "Std dev of the 'model' perception error: x, y [px], theta [rad].",
        )  # fmt: skip
        self.lockstep = declare(
            self, "lockstep", True,
            "While a policy's commands stream in (one within the last lockstep_window cell "
            "seconds), wait up to lockstep_timeout wall seconds for the next one before each "
            "step, as a synchronous simulator: a loaded machine slows the cell instead of the "
            "policy missing its control period. The policy's commands are those on "
            "policy/joint_trajectory (safety_filter: true); without the filter in the cell, "
            "any short command on arm_controller/joint_trajectory but planner_node's. "
            "Simulation only; a real arm does not wait.",
        )  # fmt: skip
        self.planner_node = declare(
            self, "planner_node", "/env_node",
            "Fully qualified name of the node whose commands on arm_controller/joint_trajectory "
            "are planned motions (EN's resets, short gripper moves included), never a policy's "
            "stream: the cell runs them at time_scale without lockstep.",
        )  # fmt: skip
        self.lockstep_timeout = declare(
            self, "lockstep_timeout", 0.25, "Longest wait for a streamed command [wall s]."
        )
        self.lockstep_window = declare(
            self, "lockstep_window", 0.25, "A stream is active this long after a command [cell s]."
        )
        self.idle_after = declare(
            self, "idle_after", 2.0,
            "Cell seconds after the last command or teleport at which a cell at rest goes "
            "idle: no physics steps, topics at idle_publish_hz (an idle fleet costs next to "
            "nothing). Commands wake it at once.",
        )  # fmt: skip
        self.idle_publish_hz = declare(
            self, "idle_publish_hz", 5.0, "Publish rate of an idle cell [wall Hz]; 0 = never idle."
        )
        self._cmd_event = threading.Event()
        self._last_cmd_t = -1e9
        self._last_activity_t = 0.0
        self._last_publish = 0.0
        self._idle_since: float | None = None  # wall time the idle clock is synced to
        if self.perception not in ("model", "camera", "off"):
            raise ValueError(f"perception must be model, camera or off, not {self.perception!r}")
        self._perception_rng = np.random.default_rng(seed + 7919)
        urdf = declare(self, "robot_description", "", "SO-101 URDF (empty: enpire_bringup's).")
        cfg = CellConfig(
            workspace_center_x=declare(
                self, "workspace_center_x", 0.20, "Table x of the workspace centre [m]."
            ),
            workspace_size=declare(self, "workspace_size", 0.18, "Workspace side [m]."),
            control_hz=control_hz,
        )
        if self.time_scale <= 0 or camera_hz <= 0:
            raise ValueError("time_scale and camera_hz must be positive")
        if camera_model not in ("topdown", "synthetic"):
            raise ValueError(f"camera_model must be topdown or synthetic, not {camera_model!r}")
        self._camera = None
        self._perception = TopDownPerception()
        if camera_model == "synthetic":
            self._camera = SyntheticCamera(CameraConfig(
                tilt_deg=tilt, brightness=brightness, noise_sigma=noise, seed=seed))  # fmt: skip
            self._camera.table_maps()  # the optics once, before the first frame is due
            if self.perception == "camera":
                robot = self.get_namespace().strip("/") or "robot_0"
                self._perception = load_perception(calibration_dir, robot)
                if isinstance(self._perception, TopDownPerception):
                    raise ValueError(
                        f"perception 'camera' through the synthetic camera needs {robot}'s "
                        f"calibration in calibration_dir ({calibration_dir!r}): run "
                        f"`enpire calibrate camera --sim --robot {robot} --dir <dir>`"
                    )
        self.cell = PushTCell(So101Kinematics(urdf or None), cfg)
        self.cell.teleport(PUSHT.sample_start_state(seed))
        self._camera_every = max(1, round(control_hz / camera_hz))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._steps = 0

        group = ReentrantCallbackGroup()
        filtered = declare(
            self, "safety_filter", True,
            "Run enpire's safety filter in this process: policies' commands on "
            "policy/joint_trajectory are checked (joint limits, tool-tip box, speed, watchdog, "
            "emergency stop) and applied here, one DDS hop less per control step than a "
            "separate safety_filter node (then set this false). Its parameters "
            "(workspace_min/max, speed_scale, watchdog_timeout) come from the safety_filter "
            "block of the params file.",
        )  # fmt: skip
        safety_cfg = declare_safety_config(self) if filtered else None
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.joint_pub = self.create_publisher(JointState, "joint_states", reliable)
        self.image_pub = self.create_publisher(Image, "camera/image_raw", 2)
        self.clock_pub = self.create_publisher(Clock, "clock", 10)
        self.truth_pub = self.create_publisher(SimGroundTruth, "sim/ground_truth", 10)
        self.pose_pub = self.create_publisher(BlockPose, "perception/block_pose", reliable)
        self.state_pub = self.video_pub = None
        if declare(
            self, "cell_state", True,
            "Publish cell_state (joint states and block pose in one message per step) and "
            "cell_state/video (the same with the step's camera frame) while someone "
            "subscribes; false: only the topics a ros2_control cell with a perception node has "
            "(the rollout node then reads joint_states, perception/block_pose and "
            "camera/image_raw).",
        ):  # fmt: skip
            self.state_pub = self.create_publisher(CellState, "cell_state", reliable)
            self.video_pub = self.create_publisher(CellState, "cell_state/video", reliable)
        self._pose = BlockPose(visible=False)  # the latest perception, for cell_state
        # commands arrive, one at a time in arrival order (a hold must not be overtaken by the
        # trajectory it stops), on the stream thread: the control step's hot path
        self.safety = None
        self._streams = StreamNode(self)
        self._command_sources: dict[bytes, str] = {}  # publisher gid -> its node's full name
        for topic in ("arm_controller/joint_trajectory", "gripper_controller/joint_trajectory"):
            self._streams.subscribe(
                JointTrajectory, topic, self._trajectory_callback(topic), reliable
            )
        if safety_cfg is not None:
            self.safety = SafetyGate(
                self, safety_cfg, self._on_filtered, self._streams, self.cell.kin
            )
        self.create_service(TeleportBlock, "sim/teleport", self._on_teleport, callback_group=group)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"sim cell ready: time_scale={self.time_scale:g} control_hz={control_hz:g} "
            f"camera {camera_model} @ {camera_hz:g} Hz"
        )

    # --- inputs ---------------------------------------------------------------------------
    def _trajectory_callback(self, topic: str):
        def on_trajectory(msg: JointTrajectory, info) -> None:
            # with the safety filter in this process the policy's stream comes through it: a
            # command here is a planned motion (EN's reset), short gripper moves included;
            # without it, every command here but the planner's may be a policy's
            self._command(msg, None, policy=self.safety is None and not self._planned(topic, info))

        return on_trajectory

    def _planned(self, topic: str, info) -> bool:
        """Whether a command on ``topic`` came from planner_node (by its publisher's gid)."""
        gid = bytes(((info or {}).get("publisher_gid") or {}).get("data") or b"")
        if gid and gid not in self._command_sources:  # a new publisher: ask the graph whose it is
            for e in self.get_publishers_info_by_topic(self.resolve_topic_name(topic)):
                ns = e.node_namespace.rstrip("/")
                self._command_sources[bytes(e.endpoint_gid)] = f"{ns}/{e.node_name}"
        return bool(gid) and self._command_sources.get(gid) == self.planner_node

    def _on_filtered(self, points) -> None:
        """What the safety filter lets through: points to follow, or None to hold."""
        self._command(None, points or [], policy=True)

    def _command(self, msg: JointTrajectory | None, points, policy: bool) -> None:
        with self._lock:
            if msg is not None and msg.points:
                span = msg.points[-1].time_from_start
                span = span.sec + span.nanosec * 1e-9
            else:
                span = points[-1][0] if points else None
            # a stream is a policy's short commands one after another (one per control
            # period); a planned motion runs freely at time_scale (measured: EN's short
            # gripper moves taken for a stream held each step up to lockstep_timeout, a
            # 1-cell-second reset took 3.5 wall s at time_scale 5)
            streamed = policy and span is not None and span <= self.lockstep_window
            self._last_cmd_t = self.cell.t if streamed else -1e9
            self._last_activity_t = self.cell.t
            self._cmd_event.set()
            if span is None:  # as joint_trajectory_controller: an empty trajectory stops
                self.cell.hold()
                return
            try:
                if msg is not None:
                    points = trajectory_points(msg, JOINT_NAMES, self.cell._setpoint())
                clipped = self.cell.command(points)
            except (ValueError, CommandError) as e:
                self.cell.rejected_commands += 1
                self.get_logger().warning(f"trajectory refused: {e}")
                return
        if clipped:
            self.get_logger().warning(f"{clipped} trajectory point(s) clipped to joint limits")

    def _on_teleport(self, req, resp):
        pose = list(req.block_pose)
        try:
            PUSHT.validate_start_state(pose)
        except ValueError as e:
            resp.success, resp.message = False, str(e)
            return resp
        with self._lock:
            self.cell.teleport(pose)
            self._last_activity_t = self.cell.t
        self._cmd_event.set()
        resp.success, resp.message = True, "teleported"
        return resp

    # --- the cell loop ----------------------------------------------------------------------
    def _run(self) -> None:
        period = self.cell.dt / self.time_scale
        next_t = time.monotonic()
        while not self._stop.is_set() and self.context.ok():
            idle = False
            try:
                self._cmd_event.clear()
                idle = self._idle()
                if idle:
                    self._idle_step(period)
                else:
                    self._idle_since = None
                    self._step_and_publish()
            except Exception as e:  # noqa: BLE001 - keep the cell alive, say what happened
                if not self.context.ok():
                    return  # shutting down
                self.get_logger().error(f"cell step failed: {e!r}")
            if idle:  # sleep until the next publish; a command wakes the cell at once
                self._cmd_event.wait(
                    self._last_publish + 1.0 / self.idle_publish_hz - time.monotonic()
                )
                next_t = time.monotonic()
                continue
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            elif delay < -10 * period:
                next_t = time.monotonic()  # fell behind: do not try to catch up in a burst
            # lockstep: the next step waits for the policy's command to this state, if it has
            # not come during the period (it usually has: one wake per step, the period's)
            if self.lockstep and self.cell.t - self._last_cmd_t <= self.lockstep_window:
                self._cmd_event.wait(self.lockstep_timeout)

    def _idle(self) -> bool:
        """At rest since idle_after cell seconds with no command: nothing to simulate."""
        with self._lock:
            return (
                self.idle_publish_hz > 0
                and self.cell.t - self._last_activity_t > self.idle_after
                and self.cell.settled()
            )

    def _idle_step(self, period: float) -> None:
        """The clock of an idle cell catches up with wall time (no physics: nothing moves)."""
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now - period
        steps = int((now - self._idle_since) / period)
        self._idle_since += steps * period
        with self._lock:
            for _ in range(steps):
                self.cell.advance()
        if now - self._last_publish >= 1.0 / self.idle_publish_hz:
            self._publish_state()

    def _step_and_publish(self) -> None:
        with self._lock:
            self.cell.step()
        self._publish_state()

    def _publish_state(self) -> None:
        self._last_publish = time.monotonic()
        with self._lock:
            self._steps += 1
            t = self.cell.t
            q, dq = self.cell.q.tolist(), self.cell.dq.tolist()
            rejected, clipped = self.cell.rejected_commands, self.cell.clipped_commands
            # nothing is rendered, estimated or sent that nobody subscribes to
            combined = self.state_pub is not None and self.state_pub.get_subscription_count() > 0
            video = self.video_pub is not None and self.video_pub.get_subscription_count() > 0
            raw = self.image_pub.get_subscription_count() > 0
            joints = self.joint_pub.get_subscription_count() > 0
            pose_subs = self.pose_pub.get_subscription_count() > 0
            perceive = combined or video or pose_subs
            truth = self.truth_pub.get_subscription_count() > 0
            gt = self.cell.ground_truth() if perceive or truth else {}
            img = None
            camera_tick = self._steps % self._camera_every == 0
            if camera_tick and (video or raw or (perceive and self.perception == "camera")):
                if self._camera is None:
                    img = self.cell.render(self.camera_size)
                else:
                    img = (self.cell.block_pose(), tuple(self.cell.env.agent.position))
        if img is not None and self._camera is not None:
            # outside the lock: the scene (~25 ms) and the optics (~40 ms)
            img = self._camera.frame(draw_scene(*img))
        stamp = stamp_from_seconds(t)
        # the step's state goes out as bytes (enpire_env.cdr: the step's hot path)
        header = cdr.Header(cdr.Stamp(stamp.sec, stamp.nanosec))
        if self.clock_pub.get_subscription_count():
            self.clock_pub.publish(Clock(clock=stamp))
        if joints:  # during an episode the rollout node reads cell_state: often nobody
            self.joint_pub.publish(cdr.JointStateView(header, JOINT_NAMES, q, dq).cdr())
        if self.safety is not None:
            self.safety.on_state(np.asarray(q), t)
        if truth:
            self._publish_truth(gt, t, stamp, rejected, clipped)
        if perceive:
            pose = self._perceive(gt, img, stamp)
            if pose is not None:
                self._pose = pose
                if pose_subs:
                    self.pose_pub.publish(pose)
        if combined or video:
            if combined:
                self.state_pub.publish(
                    cdr.encode_cell_state(header, JOINT_NAMES, q, dq, self._pose)
                )
            if video:  # one message for the step's state and frame (the rollout node's video)
                frame = None
                if img is not None:
                    h, w = img.shape[:2]
                    frame_header = cdr.Header(header.stamp, "camera")
                    data = memoryview(np.ascontiguousarray(img)).cast("B")  # written once
                    frame = cdr.ImageView(frame_header, h, w, "rgb8", 0, w * 3, data)
                self.video_pub.publish(
                    cdr.encode_cell_state(header, JOINT_NAMES, q, dq, self._pose, frame)
                )
        if img is not None and raw:
            frame = image_to_msg(img)
            frame.header.stamp = stamp
            frame.header.frame_id = "camera"
            self.image_pub.publish(frame)

    def _publish_truth(self, gt: dict, t: float, stamp, rejected: int, clipped: int) -> None:
        truth = SimGroundTruth(
            cell_time=t,
            block_pose=[float(v) for v in gt["block_pose"]],
            tip_px=[float(v) for v in gt["tip_px"]],
            tip_height=gt["tip_height"],
            attached=gt["attached"],
            coverage=float(gt["coverage"]),
            success=bool(gt["success"]),
            rejected_commands=rejected,
            clipped_commands=clipped,
        )
        truth.header.stamp = stamp
        self.truth_pub.publish(truth)

    def _perceive(self, gt: dict, img, stamp) -> BlockPose | None:
        """The block pose perception gives now (None: no new estimate this step)."""
        header = Header(stamp=stamp)
        if self.perception == "model":
            pose = np.asarray(gt["block_pose"]) + self._perception_rng.normal(
                0.0, self.perception_noise
            )
            return BlockPose(header=header, visible=True, x=float(pose[0]), y=float(pose[1]),
                             theta=float(pose[2]), mismatch=0.0, source="sim_model")  # fmt: skip
        if self.perception == "camera" and img is not None:
            est = self._perception.estimate(img)
            if est is None:
                return BlockPose(header=header, visible=False, source="camera")
            return BlockPose(header=header, visible=True, x=float(est.pose[0]),
                             y=float(est.pose[1]), theta=float(est.pose[2]),
                             mismatch=float(est.mismatch), source="camera")  # fmt: skip
        return None

    def destroy_node(self) -> None:
        if hasattr(self, "_thread"):  # not when __init__ failed before the loop started
            self._stop.set()
            self._thread.join(2.0)
        if hasattr(self, "_streams"):
            self._streams.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(SimCellNode, 1, args)  # quick callbacks; the cell loop has its own thread


if __name__ == "__main__":
    main()
