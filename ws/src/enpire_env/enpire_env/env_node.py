"""EN node: serves the ``Reset`` action for the robots of the fleet.

A thin ROS wrapper over :mod:`enpire_env.reset_core` (goal checks) and
:mod:`enpire_env.reset_routine` (pick-and-place and camera verification), driving each robot
through :class:`enpire_env.ros_cell_port.RosCellPort`.
"""

from __future__ import annotations

import time

from action_msgs.msg import GoalStatus
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from enpire_env.calibration import CalibrationError
from enpire_env.goal_liveness import FeedbackKeepalive
from enpire_env.kinematics import So101Kinematics
from enpire_env.moveit_backend import make_line_planner
from enpire_env.moveit_config import MoveItConfigError
from enpire_env.node_utils import StreamNode, declare, run_node
from enpire_env.perception import load_perception
from enpire_env.reset_core import (
    ResetError,
    ResetErrorCode,
    ResetOutcome,
    ResetRequest,
    RobotLocks,
    validate,
)
from enpire_env.reset_routine import PickPlaceConfig, PickPlaceReset, PlanningError
from enpire_env.ros_cell_port import CellUnavailableError, RosCellPort
from enpire_env.sim_cell import CellConfig
from enpire_msgs.action import Reset


class EnvNode(Node):
    def __init__(self) -> None:
        super().__init__("env_node")
        declare(self, "robots", ["robot_0"], "Robot ids this node resets.")
        declare(self, "default_mode", "pick_place", "Reset mode when a goal leaves it empty.")
        declare(self, "max_attempts", 3, "Reset attempts before giving up.")
        declare(
            self,
            "reset_deadline",
            100.0,
            "Wall seconds a whole reset (every attempt) may take; then it fails with TIMEOUT.",
        )
        speed_scale = declare(
            self, "speed_scale", 0.6, "Reset motions' fraction of the joint speed limits."
        )
        goal_tolerance = declare(
            self, "goal_tolerance", 0.02, "Joint error [rad] at which a waypoint is reached."
        )
        cell_timeout = declare(
            self, "cell_timeout", 5.0, "Wall seconds without joint states = cell down."
        )
        urdf = declare(self, "robot_description", "", "SO-101 URDF (empty: enpire_bringup's).")
        cell_cfg = CellConfig(
            workspace_center_x=declare(
                self, "workspace_center_x", 0.20, "Table x of the workspace centre [m]."
            ),
            workspace_size=declare(self, "workspace_size", 0.18, "Workspace side [m]."),
        )
        backend = declare(
            self,
            "reset_backend",
            "auto",
            "Motion planning of resets: ik (closed-form IK on the URDF), moveit (MoveIt through "
            "moveit_py, config/moveit of enpire_bringup) or auto (moveit when installed).",
        )
        plan_request = declare(
            self,
            "moveit_plan_request",
            "pilz_lin",
            "MoveIt backend: the plan request parameter set of moveit_py.yaml to plan with.",
        )
        moveit_dir = declare(
            self, "moveit_config_dir", "", "MoveIt backend: config folder (empty: bringup's)."
        )
        calibration_dir = declare(
            self, "calibration_dir", "",
            "Folder of camera calibrations (<robot>.yaml, written by `enpire calibrate camera`);"
            " a robot without one is seen through the renderer's top-down palette (sim cells).",
        )  # fmt: skip
        self._locks = RobotLocks()
        group = ReentrantCallbackGroup()
        kin = So101Kinematics(urdf or None)
        pp_cfg = PickPlaceConfig(speed_scale=speed_scale)
        try:
            planner = make_line_planner(
                backend, kin, pp_cfg.cartesian_step, pp_cfg.max_tilt, plan_request,
                moveit_dir or None,
            )  # fmt: skip
        except (PlanningError, MoveItConfigError, ValueError) as e:
            self.get_logger().fatal(f"cannot set up the reset backend: {e}")
            raise SystemExit(f"env_node: {e}") from None
        self._routine = PickPlaceReset(kin, cell_cfg, pp_cfg, planner)
        self._streams = StreamNode(self)
        self._ports = {}
        for r in self.get_parameter("robots").value:
            try:
                perception = load_perception(calibration_dir, r)
            except CalibrationError as e:
                self.get_logger().fatal(f"{r}: {e}")
                raise SystemExit(f"env_node: {r}: {e}") from None
            self.get_logger().info(f"{r}: camera read as {perception.name}")
            self._ports[r] = RosCellPort(
                self, r, group, self._streams, goal_tolerance, cell_timeout, perception
            )
        self._server = ActionServer(
            self,
            Reset,
            "reset",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            cancel_callback=self._on_cancel,
            callback_group=group,
        )
        self.get_logger().info(
            f"reset server ready for robots {list(self.get_parameter('robots').value)} "
            f"(reset backend: {planner.name})"
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
        result.planner = self._routine.planner.name
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
        run, owner = self._locks.claim(req)
        if run is None:
            return self._abort(
                goal_handle,
                result,
                ResetErrorCode.ROBOT_BUSY,
                f"robot '{plan.robot_id}' is already resetting",
                t0,
            )
        if not owner:
            return self._join(goal_handle, run, result, t0)
        done = None
        try:
            done = self._reset(goal_handle, plan, result, t0)
            return done
        finally:
            self._locks.release(plan.robot_id, (done, goal_handle.status))

    def _reset(self, goal_handle, plan, result: Reset.Result, t0: float) -> Reset.Result:
        port = self._ports[plan.robot_id]
        feedback = Reset.Feedback()

        keepalive = FeedbackKeepalive(goal_handle, feedback).start()  # clients see we live

        def publish(phase: str, progress: float, attempt: int) -> None:
            feedback.phase, feedback.progress, feedback.attempt = phase, progress, attempt
            keepalive.publish()

        limit = float(self.get_parameter("reset_deadline").value)

        def late() -> bool:
            return time.monotonic() - t0 > limit

        def canceled() -> bool:
            return goal_handle.is_cancel_requested or port.estop or late()

        try:
            with port.streaming():
                outcome = self._routine.run(plan, port, publish, canceled)
        except CellUnavailableError as e:
            outcome = ResetOutcome(False, ResetErrorCode.CELL_UNAVAILABLE, str(e))
        except NotImplementedError as e:
            outcome = ResetOutcome(False, ResetErrorCode.INVALID_GOAL, str(e))
        finally:
            keepalive.stop()
        if (
            outcome.error_code == ResetErrorCode.CANCELED
            and late()
            and (not goal_handle.is_cancel_requested)
        ):
            outcome.error_code = ResetErrorCode.TIMEOUT
            outcome.error_msg = f"the reset did not finish within reset_deadline ({limit:g} s)"
        if port.estop and not outcome.success:
            outcome.error_msg = f"emergency stop: {outcome.error_msg}"
        result.mode = plan.mode
        result.attempts = outcome.attempts
        result.robot_seconds = outcome.robot_seconds
        result.verified_state = [float(v) for v in outcome.verified_state]
        if outcome.error_code == ResetErrorCode.CANCELED:
            result.error_code, result.error_msg = int(outcome.error_code), outcome.error_msg
            result.wall_seconds = time.monotonic() - t0
            if goal_handle.is_cancel_requested:
                self._end(goal_handle, "canceled")
            else:
                self._end(goal_handle, "abort")
            return result
        if not outcome.success:
            return self._abort(goal_handle, result, outcome.error_code, outcome.error_msg, t0)
        result.success = True
        result.wall_seconds = time.monotonic() - t0
        self._end(goal_handle, "succeed")
        return result

    def _join(self, goal_handle, run, result: Reset.Result, t0: float) -> Reset.Result:
        """The same goal again while it runs (a client resent it, its first answer lost):
        wait for the running reset and answer with its result."""
        self.get_logger().info("the same reset goal again while it runs: joining that reset")
        feedback = Reset.Feedback()
        feedback.phase = "joined"
        with FeedbackKeepalive(goal_handle, feedback):
            while not run.wait(0.25):
                if goal_handle.is_cancel_requested:
                    result.error_code = int(ResetErrorCode.CANCELED)
                    result.error_msg = "canceled while waiting for the same reset to finish"
                    self._end(goal_handle, "canceled")
                    return result
        done, status = run.outcome
        if done is None:  # the running reset raised
            msg = "the same reset, which this goal joined, ended with an internal error"
            return self._abort(goal_handle, result, ResetErrorCode.CELL_UNAVAILABLE, msg, t0)
        for name in Reset.Result.get_fields_and_field_types():
            setattr(result, name, getattr(done, name))
        if status == GoalStatus.STATUS_SUCCEEDED:
            self._end(goal_handle, "succeed")
        elif status == GoalStatus.STATUS_CANCELED and goal_handle.is_cancel_requested:
            self._end(goal_handle, "canceled")
        else:
            self._end(goal_handle, "abort")
        return result

    def _end(self, goal_handle, how: str) -> None:
        """``goal_handle.abort()`` / ``succeed()`` / ``canceled()``; a reset that ends while the
        process shuts down (its context gone) ends quietly, nobody is there to hear it."""
        try:
            getattr(goal_handle, how)()
        except Exception:
            if self.context.ok():
                raise

    def destroy_node(self) -> None:
        self._streams.close()
        super().destroy_node()

    def _abort(self, goal_handle, result, code: ResetErrorCode, msg: str, t0: float):
        self.get_logger().warning(f"reset failed ({code.name}): {msg}")
        result.success = False
        result.error_code = int(code)
        result.error_msg = msg
        result.wall_seconds = time.monotonic() - t0
        self._end(goal_handle, "abort")
        return result


def main(args=None) -> None:
    # a thread per concurrent reset (one per robot) plus the robots' topic callbacks
    run_node(EnvNode, lambda node: 2 * len(node.get_parameter("robots").value) + 4, args)


if __name__ == "__main__":
    main()
