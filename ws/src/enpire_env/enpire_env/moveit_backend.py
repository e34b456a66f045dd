"""The MoveIt reset backend: the pick-and-place moves planned by MoveIt through ``moveit_py``.

The only module of enpire that imports ``moveit``. Selected by env_node's ``reset_backend``
parameter (``moveit``, or ``auto`` when moveit_py is installed). The reset routine keeps the
task logic (where to grasp, which jaw roll, when to open the gripper); MoveIt plans each move
from the commanded joint state to the goal joint state, by default with the Pilz ``LIN``
planner (a straight tool-tip line, as the IK backend moves). enpire only plans: every
trajectory is executed through the cell's ``arm_controller/joint_trajectory`` topic, so the
safety filter stays between MoveIt and the arm.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from enpire_env.kinematics import ARM_JOINTS, GRIPPER_INDEX, So101Kinematics
from enpire_env.moveit_config import PLANNING_GROUP, moveit_config_dict, plan_request_namespaces
from enpire_env.reset_routine import IkLinePlanner, LinePlanner, PlanningError

RESET_BACKENDS = ("auto", "ik", "moveit")


def moveit_available() -> bool:
    """Whether moveit_py can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("moveit.planning") is not None
    except (ImportError, ValueError):
        return False


class MoveItLinePlanner(LinePlanner):
    name = "moveit"

    def __init__(
        self,
        kin: So101Kinematics,
        max_tilt: float = 0.7,
        plan_request: str = "pilz_lin",
        node_name: str = "enpire_moveit_py",
        config_dir: str | None = None,
    ):
        from moveit.core.robot_state import RobotState
        from moveit.planning import MoveItPy, PlanRequestParameters

        self.kin, self.max_tilt = kin, max_tilt
        config = moveit_config_dict(config_dir, kin.urdf)
        if plan_request not in plan_request_namespaces(config):
            raise PlanningError(
                f"no plan request parameters '{plan_request}' in moveit_py.yaml; "
                f"have: {', '.join(repr(n) for n in plan_request_namespaces(config))}"
            )
        self._RobotState = RobotState
        self._moveit = MoveItPy(
            node_name=node_name, config_dict=config, provide_planning_service=False
        )
        self._model = self._moveit.get_robot_model()
        self._arm = self._moveit.get_planning_component(PLANNING_GROUP)
        self._params = PlanRequestParameters(self._moveit, plan_request)
        self._lock = threading.Lock()  # one planning component, resets of several robots

    def _state(self, q: np.ndarray):
        state = self._RobotState(self._model)
        state.set_joint_group_positions(PLANNING_GROUP, np.asarray(q[:5], dtype=float))
        state.update()
        return state

    def line(self, q_from, xyz_to, roll, gripper):
        q_from = np.asarray(q_from, dtype=float)
        goal = self.kin.ik(xyz_to, seed=q_from, max_tilt=self.max_tilt)  # UnreachableError
        goal[4] = roll
        with self._lock:
            self._arm.set_start_state(robot_state=self._state(q_from))
            self._arm.set_goal_state(robot_state=self._state(goal))
            result = self._arm.plan(single_plan_parameters=self._params)
        if not result:
            code = getattr(getattr(result, "error_code", None), "val", "?")
            raise PlanningError(f"no plan to the tip at {np.round(xyz_to, 3).tolist()} "
                                f"(MoveIt error code {code})")  # fmt: skip
        return trajectory_waypoints(result.trajectory.get_robot_trajectory_msg(), gripper)


def trajectory_waypoints(msg, gripper: float) -> list[np.ndarray]:
    """6-joint waypoints (gripper fixed) from a moveit_msgs/RobotTrajectory, start excluded."""
    jt = msg.joint_trajectory
    names = list(jt.joint_names)
    missing = [n for n in ARM_JOINTS if n not in names]
    if missing:
        raise PlanningError(f"planned trajectory lacks joints {missing}")
    idx = [names.index(n) for n in ARM_JOINTS]
    out = []
    for point in list(jt.points)[1:] or list(jt.points):
        q = np.zeros(len(ARM_JOINTS) + 1)
        q[: len(ARM_JOINTS)] = [point.positions[i] for i in idx]
        q[GRIPPER_INDEX] = gripper
        out.append(q)
    if not out:
        raise PlanningError("MoveIt returned an empty trajectory")
    return out


def make_line_planner(
    backend: str,
    kin: So101Kinematics,
    cartesian_step: float = 0.01,
    max_tilt: float = 0.7,
    plan_request: str = "pilz_lin",
    config_dir: str | None = None,
) -> LinePlanner:
    """The reset backend by name; ``auto`` = MoveIt when moveit_py is installed, else IK."""
    if backend not in RESET_BACKENDS:
        raise ValueError(f"unknown reset_backend '{backend}'; use one of {RESET_BACKENDS}")
    if backend == "auto":
        backend = "moveit" if moveit_available() else "ik"
    if backend == "ik":
        return IkLinePlanner(kin, cartesian_step, max_tilt)
    if not moveit_available():
        raise PlanningError(
            "reset_backend 'moveit' needs moveit_py (apt install ros-$ROS_DISTRO-moveit-py); "
            "use reset_backend:=ik or auto without it"
        )
    return MoveItLinePlanner(kin, max_tilt, plan_request, config_dir=config_dir)
