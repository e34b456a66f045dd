"""Safety filter node, one per robot namespace (see :mod:`enpire_env.safety`).

sub  policy/joint_trajectory        what policies command
pub  arm_controller/joint_trajectory what the arm receives (filtered; empty = hold)
sub  joint_states                   current positions and the cell clock
sub  emergency_stop, /emergency_stop std_msgs/Bool (robot or whole fleet)
pub  safety/status                  enpire_msgs/SafetyStatus (2 Hz and on every event)

A simulated cell runs the same filter in its own process (:class:`SafetyGate`, the sim cell's
``safety_filter`` parameter): the same topics, one DDS hop less per control step. This node is
for arms whose controllers enpire does not run (ros2_control, enpire's Feetech driver).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from enpire_env.cdr import (
    JointStateView,
    JointTrajectoryView,
    decode_joint_state,
    decode_joint_trajectory,
)
from enpire_env.kinematics import JOINT_NAMES, So101Kinematics
from enpire_env.node_utils import STREAM_QOS, StreamNode, declare, joint_positions, run_node
from enpire_env.ros_conversions import make_trajectory, seconds_from_stamp, trajectory_points
from enpire_env.safety import SafetyConfig, SafetyFilter
from enpire_msgs.msg import SafetyStatus

# (time_from_start, positions) points to send on, or None: hold where the arm is
Forward = Callable[[list | None], None]


def declare_safety_config(node: Node) -> SafetyConfig:
    """The safety filter's parameters, for whichever node runs the filter."""
    return SafetyConfig(
        workspace_min=tuple(
            declare(node, "workspace_min", [0.05, -0.16, -0.002], "Tip box min [m].")
        ),
        workspace_max=tuple(
            declare(node, "workspace_max", [0.36, 0.16, 0.30], "Tip box max [m].")
        ),
        speed_scale=declare(node, "speed_scale", 1.0, "Allowed fraction of joint speed limits."),
        watchdog_timeout=declare(
            node, "watchdog_timeout", 0.5, "Seconds without commands while moving -> hold."
        ),
    )


class SafetyGate:
    """The safety filter's ROS side in whichever process runs it: commands from
    ``policy/joint_trajectory`` (received on ``streams``), the emergency stops, the watchdog
    ticked by :meth:`on_state`, ``safety/status``; what passes goes to ``forward``."""

    def __init__(
        self,
        node: Node,
        cfg: SafetyConfig,
        forward: Forward,
        streams: StreamNode,
        kin: So101Kinematics | None = None,
    ):
        self.node, self.forward = node, forward
        self.robot_id = node.get_namespace().strip("/") or "robot"
        self.filter = SafetyFilter(kin or So101Kinematics(), cfg)
        self._lock = threading.Lock()
        self._q: np.ndarray | None = None
        self._now = 0.0
        self.status_pub = node.create_publisher(SafetyStatus, "safety/status", 10)
        # one command per control step, each superseding the last (a lost one: the watchdog);
        # read from its bytes (enpire_env.cdr: the step's hot path)
        streams.subscribe(
            JointTrajectory, "policy/joint_trajectory", self._on_raw_command, STREAM_QOS, raw=True
        )
        for topic in ("emergency_stop", "/emergency_stop"):  # the robot's, the fleet's
            node.create_subscription(Bool, topic, partial(self._on_estop, topic), 10)
        node.create_timer(0.5, self.publish_status)

    def on_state(self, q: np.ndarray, now: float) -> None:
        """The arm's present positions at cell time ``now``: ticks the watchdog."""
        with self._lock:
            self._q, self._now = q, now
            tripped = self.filter.tick(now)
            if tripped:
                self.forward(None)
        if tripped:
            self.node.get_logger().warning(self.filter.counters.last_violation)
            self.publish_status()

    def _on_raw_command(self, data: bytes) -> None:
        self._on_command(decode_joint_trajectory(data))

    def _on_command(self, msg: JointTrajectory | JointTrajectoryView) -> None:
        # decide and send on under one lock: an e-stop handled between the two would
        # otherwise be overtaken by the command it should have stopped
        with self._lock:
            if self._q is None:
                self.filter.counters.commands += 1
                self.filter.counters.refused += 1
                self.filter.counters.last_violation = "no joint_states yet"
                verdict = None
            else:
                try:
                    points = trajectory_points(msg, JOINT_NAMES, self._q)
                except ValueError as e:
                    points = []
                    self.filter.counters.last_violation = str(e)
                verdict = self.filter.filter(points, self._q, self._now)
            self.forward(None if verdict is None else verdict.points)
        if verdict is None or verdict.points is None:
            self.node.get_logger().warning(
                f"command refused: {self.filter.counters.last_violation}", throttle_duration_sec=1
            )
        elif verdict.notes:  # clipped or slowed down: counted in safety/status
            self.node.get_logger().debug("; ".join(verdict.notes), throttle_duration_sec=1)
        else:
            return  # a plain forward: counted in the next periodic status
        self.publish_status()

    def _on_estop(self, topic: str, msg: Bool) -> None:
        with self._lock:
            if self.filter.set_estop(bool(msg.data), topic):
                self.forward(None)
                self.node.get_logger().error("emergency stop engaged: holding")
        self.publish_status()

    def publish_status(self) -> None:
        c = self.filter.counters
        msg = SafetyStatus(
            robot_id=self.robot_id,
            estop=self.filter.estop,
            watchdog_tripped=self.filter.watchdog_tripped,
            commands=c.commands,
            forwarded=c.forwarded,
            refused=c.refused,
            clipped_position=c.clipped_position,
            clipped_velocity=c.clipped_velocity,
            watchdog_trips=c.watchdog_trips,
            last_violation=c.last_violation,
        )
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.status_pub.publish(msg)


class SafetyFilterNode(Node):
    def __init__(self) -> None:
        super().__init__("safety_filter")
        cfg = declare_safety_config(self)
        urdf = declare(self, "robot_description", "", "SO-101 URDF (empty: enpire_bringup's).")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.out = self.create_publisher(
            JointTrajectory, "arm_controller/joint_trajectory", reliable
        )
        self._streams = StreamNode(self)
        self.gate = SafetyGate(
            self, cfg, self._forward, self._streams, So101Kinematics(urdf or None)
        )
        self._streams.subscribe(
            JointState, "joint_states", self._on_raw_joints, STREAM_QOS, raw=True
        )
        self.get_logger().info(f"safety filter ready for {self.gate.robot_id}")

    def _forward(self, points) -> None:
        self.out.publish(make_trajectory(JOINT_NAMES, points or []))

    def _on_raw_joints(self, data: bytes) -> None:
        self._on_joints(decode_joint_state(data))

    def _on_joints(self, msg: JointState | JointStateView) -> None:
        q = joint_positions(msg)
        if q is not None:
            self.gate.on_state(q, seconds_from_stamp(msg.header.stamp))

    def destroy_node(self) -> None:
        if hasattr(self, "_streams"):
            self._streams.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(SafetyFilterNode, 1, args)  # quick callbacks only; the streams have their thread


if __name__ == "__main__":
    main()
