"""Safety filter node, one per robot namespace (see :mod:`enpire_env.safety`).

sub  policy/joint_trajectory        what policies command
pub  arm_controller/joint_trajectory what the arm receives (filtered; empty = hold)
sub  joint_states                   current positions and the cell clock
sub  emergency_stop, /emergency_stop std_msgs/Bool (robot or whole fleet)
pub  safety/status                  enpire_msgs/SafetyStatus (2 Hz and on every event)
"""

from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from trajectory_msgs.msg import JointTrajectory

from enpire_env.kinematics import JOINT_NAMES, So101Kinematics
from enpire_env.node_utils import declare, joint_positions, run_node
from enpire_env.ros_conversions import make_trajectory, seconds_from_stamp, trajectory_points
from enpire_env.safety import SafetyConfig, SafetyFilter
from enpire_msgs.msg import SafetyStatus


class SafetyFilterNode(Node):
    def __init__(self) -> None:
        super().__init__("safety_filter")

        cfg = SafetyConfig(
            workspace_min=tuple(
                declare(self, "workspace_min", [0.05, -0.16, -0.002], "Tip box min [m].")
            ),
            workspace_max=tuple(
                declare(self, "workspace_max", [0.36, 0.16, 0.30], "Tip box max [m].")
            ),
            speed_scale=declare(
                self, "speed_scale", 1.0, "Allowed fraction of joint speed limits."
            ),
            watchdog_timeout=declare(
                self, "watchdog_timeout", 0.5, "Seconds without commands -> hold."
            ),
        )
        urdf = declare(self, "robot_description", "", "SO-101 URDF (empty: enpire_bringup's).")
        self.robot_id = self.get_namespace().strip("/") or "robot"
        self.filter = SafetyFilter(So101Kinematics(urdf or None), cfg)
        self._lock = threading.Lock()
        self._q: np.ndarray | None = None
        self._now = 0.0
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.out = self.create_publisher(
            JointTrajectory, "arm_controller/joint_trajectory", reliable
        )
        self.status_pub = self.create_publisher(SafetyStatus, "safety/status", 10)
        self.create_subscription(
            JointTrajectory, "policy/joint_trajectory", self._on_command, reliable
        )
        self.create_subscription(JointState, "joint_states", self._on_joints, reliable)
        for topic in ("emergency_stop", "/emergency_stop"):
            self.create_subscription(Bool, topic, self._on_estop, 10)
        self.create_timer(0.5, self._publish_status)
        self.get_logger().info(f"safety filter ready for {self.robot_id}")

    def _hold(self) -> None:
        self.out.publish(make_trajectory(JOINT_NAMES, []))

    def _on_joints(self, msg: JointState) -> None:
        q = joint_positions(msg)
        if q is None:
            return
        with self._lock:
            self._q, self._now = q, seconds_from_stamp(msg.header.stamp)
            tripped = self.filter.tick(self._now)
            if tripped:
                self._hold()
        if tripped:
            self.get_logger().warning(self.filter.counters.last_violation)
            self._publish_status()

    def _on_command(self, msg: JointTrajectory) -> None:
        # decide and publish under one lock: an e-stop handled between the two would
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
            if verdict is None or verdict.points is None:
                self._hold()
            else:
                self.out.publish(make_trajectory(JOINT_NAMES, verdict.points))
        if verdict is None or verdict.points is None:
            self.get_logger().warning(
                f"command refused: {self.filter.counters.last_violation}", throttle_duration_sec=1
            )
        elif verdict.notes:  # clipped or slowed down: counted in safety/status
            self.get_logger().debug("; ".join(verdict.notes), throttle_duration_sec=1)
        else:
            return  # a plain forward: counted in the next periodic status
        self._publish_status()

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            if self.filter.set_estop(bool(msg.data)):
                self._hold()
                self.get_logger().error("emergency stop engaged: holding")
        self._publish_status()

    def _publish_status(self) -> None:
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
        msg.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(msg)


def main(args=None) -> None:
    run_node(SafetyFilterNode, 1, args)  # quick callbacks only


if __name__ == "__main__":
    main()
