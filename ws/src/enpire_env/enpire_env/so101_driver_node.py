"""A real SO-101 without a ros2_control driver: the Feetech bus behind the topics of the
controllers (and of a simulated cell), one node per robot namespace.

pub  joint_states                       sensor_msgs/JointState at ``control_hz``
sub  arm_controller/joint_trajectory    JointTrajectory over the six joints (gripper included);
                                        followed by linear interpolation; empty = hold
pub  driver/status                      std_msgs/String: "ok" or the bus error, 1 Hz

A servo that stops answering stops joint_states (so EN and R see the cell as down) and is
reported on ``driver/status``; the node keeps trying and resumes when it answers again.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from enpire_env.feetech import BusError, So101Arm
from enpire_env.kinematics import JOINT_NAMES
from enpire_env.node_utils import declare, run_node
from enpire_env.ros_conversions import trajectory_points


class TrajectoryFollower:
    """Setpoints along (t, q) points by linear interpolation from where the arm was."""

    def __init__(self) -> None:
        self.points: list[tuple[float, np.ndarray]] = []

    def start(self, q_now, points, t_now: float) -> None:
        self.points = [(t_now, np.asarray(q_now, float))]
        self.points += [(t_now + max(t, 0.0), np.asarray(q, float)) for t, q in points]

    def hold(self) -> None:
        self.points = []

    def setpoint(self, t: float) -> np.ndarray | None:
        if not self.points:
            return None
        if t >= self.points[-1][0]:
            return self.points[-1][1]
        for (t0, q0), (t1, q1) in zip(self.points, self.points[1:], strict=False):
            if t0 <= t <= t1:
                a = 0.0 if t1 <= t0 else (t - t0) / (t1 - t0)
                return q0 + a * (q1 - q0)
        return self.points[0][1]


class So101DriverNode(Node):
    def __init__(self) -> None:
        super().__init__("so101_driver")
        port = declare(self, "port", "/dev/ttyACM0", "Serial port of the Feetech bus.")
        cal = declare(self, "calibration_file", "", "LeRobot calibration JSON ('' = ids 1-6).")
        baud = declare(self, "baudrate", 1_000_000, "Bus baud rate.")
        hz = declare(self, "control_hz", 50.0, "Read/command rate [Hz].")
        margin = declare(
            self, "timeout_margin_ms", 0.0, "Extra wait for a servo's status packet [ms]."
        )
        self.arm = So101Arm(port, cal or None, baudrate=baud, timeout_margin_ms=margin)
        self.arm.connect()  # a missing bus or servo stops the node here, with its name
        self.follower = TrajectoryFollower()
        self._lock = threading.Lock()
        self.q = self.arm.observe()
        self.error = ""
        group = MutuallyExclusiveCallbackGroup()  # commands and the loop in order
        self.joint_pub = self.create_publisher(JointState, "joint_states", 10)
        self.status_pub = self.create_publisher(String, "driver/status", 10)
        self.create_subscription(JointTrajectory, "arm_controller/joint_trajectory",
                                 self._on_trajectory, 10, callback_group=group)  # fmt: skip
        self.create_timer(1.0 / hz, self._tick, callback_group=group)
        self.create_timer(1.0, self._status)
        self.get_logger().info(f"so101 driver ready on {port}")

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        with self._lock:
            if not msg.points:
                self.follower.hold()
                self.follower.start(self.q, [(0.0, self.q)], time.monotonic())
                return
            try:
                points = trajectory_points(msg, list(JOINT_NAMES), self.q)
            except ValueError as e:
                self.get_logger().warning(f"trajectory refused: {e}")
                return
            self.follower.start(self.q, points, time.monotonic())

    def _tick(self) -> None:
        try:
            q = self.arm.observe()
            with self._lock:
                self.q = q
                target = self.follower.setpoint(time.monotonic())
            if target is not None:
                self.arm.act(target)
        except BusError as e:
            if str(e) != self.error:
                self.get_logger().error(f"bus: {e}")
            self.error = str(e)
            return
        if self.error:
            self.get_logger().info("bus answers again")
        self.error = ""
        js = JointState(name=list(JOINT_NAMES), position=[float(v) for v in q])
        js.header.stamp = self.get_clock().now().to_msg()
        self.joint_pub.publish(js)

    def _status(self) -> None:
        self.status_pub.publish(String(data=self.error or "ok"))

    def destroy_node(self) -> None:
        self.arm.disconnect()
        super().destroy_node()


def main(args=None) -> None:
    run_node(So101DriverNode, 2, args)


if __name__ == "__main__":
    main()
