"""Stand-in for moveit.planning (MoveItPy, PlanningComponent, PlanRequestParameters).

See ../README.md. Validates the configuration as MoveIt would refuse it; plans by sampling the
joint-space segment between the start and goal states.
"""

import math
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import numpy as np
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

import moveit


class RobotModel:
    def __init__(self, urdf: str, srdf: str):
        root = ET.fromstring(urdf)
        self._joints = {j.get("name"): j for j in root.findall("joint")}
        self.joint_names = [n for n, j in self._joints.items() if j.get("type") != "fixed"]
        self._groups = {}
        for g in ET.fromstring(srdf).findall("group"):
            chain = g.find("chain")
            if chain is not None:
                self._groups[g.get("name")] = self._chain(chain.get("base_link"),
                                                          chain.get("tip_link"))  # fmt: skip
            else:
                self._groups[g.get("name")] = [j.get("name") for j in g.findall("joint")]

    def _chain(self, base: str, tip: str) -> list[str]:
        by_child = {j.find("child").get("link"): j for j in self._joints.values()}
        out, link = [], tip
        while link != base:
            if link not in by_child:
                raise RuntimeError(f"SRDF chain: no path from {base} to {tip} in the URDF")
            j = by_child[link]
            if j.get("type") != "fixed":
                out.append(j.get("name"))
            link = j.find("parent").get("link")
        return out[::-1]

    def group_joints(self, name: str) -> list[str]:
        if name not in self._groups:
            raise RuntimeError(f"no joint model group '{name}'")
        return self._groups[name]

    def limits(self, name: str) -> tuple[float, float]:
        lim = self._joints[name].find("limit")
        return float(lim.get("lower")), float(lim.get("upper"))


class MoveItPy:
    def __init__(
        self,
        node_name="moveit_py",
        name_space="",
        launch_params_filepaths=None,
        config_dict=None,
        provide_planning_service=True,
        remappings=None,
    ):
        if config_dict is None:
            raise RuntimeError("stand-in: only config_dict configurations are modelled")
        for key in ("robot_description", "robot_description_semantic",
                    "robot_description_kinematics", "planning_pipelines"):  # fmt: skip
            if key not in config_dict:
                raise RuntimeError(f"parameter '{key}' not set")
        self.params = config_dict
        self._model = RobotModel(config_dict["robot_description"],
                                 config_dict["robot_description_semantic"])  # fmt: skip
        moveit.CALLS.append(f"MoveItPy({node_name})")

    def get_robot_model(self):
        return self._model

    def get_planning_component(self, planning_component_name):
        self._model.group_joints(planning_component_name)
        if planning_component_name not in self.params["robot_description_kinematics"]:
            raise RuntimeError(f"no kinematics solver for group '{planning_component_name}'")
        return PlanningComponent(planning_component_name, self)


class PlanRequestParameters:
    def __init__(self, moveit_py, ns=""):
        block = moveit_py.params if not ns else moveit_py.params.get(ns, {})
        p = block.get("plan_request_params")
        if p is None:
            raise RuntimeError(f"no parameters '{ns}.plan_request_params'")
        self.planner_id = p.get("planner_id", "")
        self.planning_pipeline = p.get("planning_pipeline", "")
        self.planning_attempts = int(p.get("planning_attempts", 1))
        self.planning_time = float(p.get("planning_time", 1.0))
        self.max_velocity_scaling_factor = float(p.get("max_velocity_scaling_factor", 1.0))
        self.max_acceleration_scaling_factor = float(p.get("max_acceleration_scaling_factor", 1.0))


class PlanningComponent:
    def __init__(self, joint_model_group_name, moveit_py_instance):
        self.planning_group_name = joint_model_group_name
        self._moveit = moveit_py_instance
        self._start = self._goal = None

    def set_start_state(self, configuration_name=None, robot_state=None):
        self._start = robot_state

    def set_goal_state(self, configuration_name=None, robot_state=None, pose_stamped_msg=None,
                       pose_link=None, motion_plan_constraints=None):  # fmt: skip
        if robot_state is None:
            raise RuntimeError("stand-in: only robot_state goals are modelled")
        self._goal = robot_state
        return True

    def plan(self, single_plan_parameters=None, multi_plan_parameters=None, planning_scene=None,
             solution_selection_function=None, stopping_criterion_callback=None):  # fmt: skip
        params = self._moveit.params
        p = single_plan_parameters
        pipelines = params["planning_pipelines"]["pipeline_names"]
        if p is None or p.planning_pipeline not in pipelines:
            return _failure(-2)  # PLANNING_FAILED: unknown pipeline
        pipeline = params[p.planning_pipeline]
        known = {"pilz_industrial_motion_planner": ("PTP", "LIN", "CIRC")}.get(
            p.planning_pipeline, tuple(pipeline.get("planner_configs", {}))
        )
        if p.planner_id not in known:
            return _failure(-2)
        group = self.planning_group_name
        model = self._moveit.get_robot_model()
        names = model.group_joints(group)
        q0 = self._start.get_joint_group_positions(group)
        q1 = self._goal.get_joint_group_positions(group)
        for n, v in zip(names, q1, strict=True):
            lo, hi = model.limits(n)
            if not lo - 1e-9 <= v <= hi + 1e-9:
                return _failure(-31)  # INVALID_GOAL_CONSTRAINTS
        n_steps = max(1, math.ceil(float(np.max(np.abs(q1 - q0))) / 0.02))
        traj = JointTrajectory(joint_names=list(names))
        for i in range(n_steps + 1):
            q = q0 + (q1 - q0) * i / n_steps
            traj.points.append(JointTrajectoryPoint(positions=q.tolist()))
        moveit.CALLS.append(f"plan({p.planning_pipeline}/{p.planner_id})")
        msg = SimpleNamespace(joint_trajectory=traj)
        return _Response(True, SimpleNamespace(get_robot_trajectory_msg=lambda: msg), 1)


class _Response:
    def __init__(self, ok, trajectory, code):
        self._ok, self.trajectory = ok, trajectory
        self.error_code = SimpleNamespace(val=code)

    def __bool__(self):
        return self._ok


def _failure(code):
    return _Response(False, None, code)
