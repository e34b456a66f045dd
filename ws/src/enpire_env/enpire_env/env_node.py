"""EN node: serves the ``Reset`` action for the robots of the fleet.

A thin ROS wrapper over :mod:`enpire_env.reset_core`.
"""

from __future__ import annotations

import time

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from enpire_env.reset_core import (
    PlaceholderResetRoutine,
    ResetError,
    ResetErrorCode,
    ResetRequest,
    RobotLocks,
    validate,
)
from enpire_msgs.action import Reset


class EnvNode(Node):
    def __init__(self) -> None:
        super().__init__("env_node")
        self.declare_parameter(
            "robots", ["robot_0"], ParameterDescriptor(description="Robot ids this node resets.")
        )
        self.declare_parameter(
            "default_mode",
            "pick_place",
            ParameterDescriptor(description="Reset mode when a goal leaves it empty."),
        )
        self.declare_parameter(
            "max_attempts", 3, ParameterDescriptor(description="Reset attempts before giving up.")
        )
        self.declare_parameter(
            "placeholder_phase_seconds",
            0.05,
            ParameterDescriptor(description="Seconds per phase of the placeholder routine."),
        )
        self._locks = RobotLocks()
        self._routine = PlaceholderResetRoutine(
            self.get_parameter("placeholder_phase_seconds").value
        )
        self._server = ActionServer(
            self,
            Reset,
            "reset",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
        )
        self.get_logger().info(
            f"reset server ready for robots {list(self.get_parameter('robots').value)}"
        )

    def _on_goal(self, goal: Reset.Goal) -> GoalResponse:
        # Every goal is accepted so that a bad one gets an error code and a message back.
        self.get_logger().info(f"reset goal: robot={goal.robot_id!r} task={goal.task!r}")
        return GoalResponse.ACCEPT

    def _on_cancel(self, _goal_handle) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle) -> Reset.Result:
        t0 = time.monotonic()
        goal: Reset.Goal = goal_handle.request
        result = Reset.Result()
        req = ResetRequest(
            robot_id=goal.robot_id,
            task=goal.task,
            seed=goal.seed,
            mode=goal.mode,
            start_state=list(goal.start_state),
            max_attempts=goal.max_attempts,
        )
        try:
            plan = validate(
                req,
                self.get_parameter("robots").value,
                self.get_parameter("default_mode").value,
                self.get_parameter("max_attempts").value,
            )
        except ResetError as e:
            return self._abort(goal_handle, result, e.code, e.msg, t0)
        result.seed = plan.seed
        result.requested_state = [float(v) for v in plan.start_state]
        if not self._locks.acquire(plan.robot_id):
            return self._abort(
                goal_handle,
                result,
                ResetErrorCode.ROBOT_BUSY,
                f"robot '{plan.robot_id}' is already resetting",
                t0,
            )
        try:
            feedback = Reset.Feedback()

            def publish(phase: str, progress: float, attempt: int) -> None:
                feedback.phase, feedback.progress, feedback.attempt = phase, progress, attempt
                goal_handle.publish_feedback(feedback)

            outcome = self._routine.run(plan, publish, lambda: goal_handle.is_cancel_requested)
        finally:
            self._locks.release(plan.robot_id)
        result.mode = "placeholder"
        result.attempts = outcome.attempts
        result.robot_seconds = outcome.robot_seconds
        result.verified_state = [float(v) for v in outcome.verified_state]
        if outcome.error_code == ResetErrorCode.CANCELED:
            result.error_code, result.error_msg = int(outcome.error_code), outcome.error_msg
            result.wall_seconds = time.monotonic() - t0
            goal_handle.canceled()
            return result
        if not outcome.success:
            return self._abort(goal_handle, result, outcome.error_code, outcome.error_msg, t0)
        result.success = True
        result.wall_seconds = time.monotonic() - t0
        goal_handle.succeed()
        return result

    def _abort(self, goal_handle, result, code: ResetErrorCode, msg: str, t0: float):
        self.get_logger().warning(f"reset failed ({code.name}): {msg}")
        result.success = False
        result.error_code = int(code)
        result.error_msg = msg
        result.wall_seconds = time.monotonic() - t0
        goal_handle.abort()
        return result


def main(args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = EnvNode()
        # one thread per concurrent reset (one per robot) plus the graph's own callbacks
        robots = node.get_parameter("robots").value
        executor = MultiThreadedExecutor(num_threads=len(robots) + 2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
