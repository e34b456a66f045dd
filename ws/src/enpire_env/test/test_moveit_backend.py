"""The MoveIt reset backend: its configuration (config/moveit of enpire_bringup) checked against
the URDF, backend selection, and pick-and-place planned through the moveit_py API — against the
stand-in in ``moveit_standin/`` (MoveIt does not install here), in process and in the EN node
over a real ROS graph."""

import importlib
import math
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from enpire_env import moveit_backend
from enpire_env.kinematics import ARM_JOINTS, JOINT_NAMES, So101Kinematics
from enpire_env.moveit_backend import make_line_planner, trajectory_waypoints
from enpire_env.moveit_config import (
    MoveItConfigError,
    default_moveit_config_dir,
    moveit_config_dict,
    plan_request_namespaces,
    srdf_groups,
)
from enpire_env.reset_core import ResetErrorCode, ResetPlan
from enpire_env.reset_routine import DirectCellPort, IkLinePlanner, PickPlaceReset, PlanningError
from enpire_env.sim_cell import CellConfig, PushTCell, park_pose
from enpire_env.tasks import PUSHT
from enpire_env.testing import NodeProcess, call_action
from enpire_msgs.action import Reset

STANDIN = Path(__file__).parent / "moveit_standin"


@pytest.fixture(scope="module")
def kin():
    return So101Kinematics()


@pytest.fixture(scope="module")
def config(kin):
    return moveit_config_dict(urdf=kin.urdf)


@pytest.fixture
def standin(monkeypatch):
    """moveit_py's stand-in importable for this test only."""
    monkeypatch.syspath_prepend(str(STANDIN))
    for name in [m for m in sys.modules if m == "moveit" or m.startswith("moveit.")]:
        monkeypatch.delitem(sys.modules, name)
    importlib.invalidate_caches()
    yield importlib.import_module("moveit")
    for name in [m for m in sys.modules if m == "moveit" or m.startswith("moveit.")]:
        del sys.modules[name]


# --- the configuration ---------------------------------------------------------------------
def test_srdf_groups_match_the_urdf(kin, config):
    urdf = ET.fromstring(kin.urdf)
    links = {link.get("name") for link in urdf.findall("link")}
    joints = {j.get("name"): j for j in urdf.findall("joint")}
    srdf = ET.fromstring(config["robot_description_semantic"])
    assert srdf.get("name") == urdf.get("name")
    groups = srdf_groups(config["robot_description_semantic"])
    chain = groups["arm"].find("chain")
    assert (chain.get("base_link"), chain.get("tip_link")) == ("base_link", "tool_tip")
    assert [j.get("name") for j in groups["gripper"].findall("joint")] == ["gripper"]
    for pair in srdf.findall("disable_collisions"):
        assert {pair.get("link1"), pair.get("link2")} <= links
    ee = srdf.find("end_effector")
    assert ee.get("parent_link") in links and ee.get("group") in groups
    for state in srdf.findall("group_state"):
        group_joints = ARM_JOINTS if state.get("group") == "arm" else ("gripper",)
        names = [j.get("name") for j in state.findall("joint")]
        assert sorted(names) == sorted(group_joints), state.get("name")
        for j in state.findall("joint"):
            lim = joints[j.get("name")].find("limit")
            assert float(lim.get("lower")) <= float(j.get("value")) <= float(lim.get("upper"))


def test_srdf_park_state_is_the_cells_park_pose(kin, config):
    srdf = ET.fromstring(config["robot_description_semantic"])
    (park,) = [s for s in srdf.findall("group_state") if s.get("name") == "park"]
    values = {j.get("name"): float(j.get("value")) for j in park.findall("joint")}
    expected = park_pose(kin, CellConfig())
    for i, name in enumerate(ARM_JOINTS):
        assert values[name] == pytest.approx(expected[i], abs=2e-3), name


def test_limits_and_kinematics_agree_with_the_urdf(kin, config):
    limits = config["robot_description_planning"]["joint_limits"]
    assert sorted(limits) == sorted(JOINT_NAMES)
    for name in JOINT_NAMES:
        assert limits[name]["max_velocity"] == pytest.approx(kin.limits[name].velocity)
        assert limits[name]["has_acceleration_limits"] and limits[name]["max_acceleration"] > 0
    cart = config["robot_description_planning"]["cartesian_limits"]
    assert cart["max_trans_vel"] > 0 and cart["max_trans_dec"] < 0
    assert set(config["robot_description_kinematics"]) == {"arm"}
    assert "kinematics_solver" in config["robot_description_kinematics"]["arm"]


def test_every_plan_request_names_a_configured_pipeline_and_planner(config):
    pipelines = config["planning_pipelines"]["pipeline_names"]
    namespaces = plan_request_namespaces(config)
    assert {"", "pilz_lin", "ompl_rrtc"} <= set(namespaces)
    for ns in namespaces:
        p = (config[ns] if ns else config)["plan_request_params"]
        assert p["planning_pipeline"] in pipelines, ns
        pipeline = config[p["planning_pipeline"]]
        assert pipeline["planning_plugins"], ns
        if p["planning_pipeline"] == "ompl":
            assert p["planner_id"] in pipeline["planner_configs"]
            assert p["planner_id"] in pipeline["arm"]["planner_configs"]
        else:
            assert p["planner_id"] in ("PTP", "LIN", "CIRC")


def test_missing_or_broken_config_is_a_clear_error(tmp_path, kin):
    with pytest.raises(MoveItConfigError, match="missing SRDF"):
        moveit_config_dict(tmp_path, kin.urdf)
    for f in default_moveit_config_dir().iterdir():
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "ompl_planning.yaml").unlink()
    with pytest.raises(MoveItConfigError, match="ompl_planning.yaml"):
        moveit_config_dict(tmp_path, kin.urdf)


# --- selection -------------------------------------------------------------------------------
def test_backend_selection_without_moveit(kin):
    assert not moveit_backend.moveit_available()
    assert isinstance(make_line_planner("auto", kin), IkLinePlanner)
    assert make_line_planner("ik", kin).name == "ik"
    with pytest.raises(PlanningError, match="needs moveit_py"):
        make_line_planner("moveit", kin)
    with pytest.raises(ValueError, match="unknown reset_backend"):
        make_line_planner("ompl", kin)


def test_trajectory_waypoints_reorders_joints_and_sets_the_gripper():
    names = list(reversed(ARM_JOINTS))
    traj = JointTrajectory(joint_names=names)
    for k in range(3):
        traj.points.append(JointTrajectoryPoint(positions=[k + i / 10 for i in range(5)]))
    out = trajectory_waypoints(type("M", (), {"joint_trajectory": traj})(), gripper=0.7)
    assert len(out) == 2  # the start point is where the arm already is
    assert out[-1].tolist() == pytest.approx([2.4, 2.3, 2.2, 2.1, 2.0, 0.7])
    traj.joint_names[0] = "other"
    with pytest.raises(PlanningError, match="lacks joints"):
        trajectory_waypoints(type("M", (), {"joint_trajectory": traj})(), gripper=0.7)


# --- planning through the moveit_py API (stand-in) -------------------------------------------
def test_auto_picks_moveit_when_installed(standin, kin):
    planner = make_line_planner("auto", kin)
    assert planner.name == "moveit"
    assert standin.CALLS[-1].startswith("MoveItPy(")
    with pytest.raises(PlanningError, match="no plan request parameters 'nope'"):
        make_line_planner("moveit", kin, plan_request="nope")


@pytest.mark.parametrize("seed", [3, 11])
def test_pick_and_place_planned_by_moveit(standin, kin, seed):
    cell = PushTCell(kin)
    routine = PickPlaceReset(kin, planner=make_line_planner("moveit", kin))
    n0 = len(standin.CALLS)
    target = PUSHT.sample_start_state(seed)
    out = routine.run(
        ResetPlan("robot_0", "pusht", seed, "pick_place", target, 3),
        DirectCellPort(cell),
        lambda *a: None,
        lambda: False,
    )
    assert out.success, out.error_msg
    gt = cell.block_pose()
    assert np.hypot(*(gt[:2] - target[:2])) < routine.cfg.tolerance_px + 2
    assert abs(math.remainder(gt[2] - target[2], 2 * math.pi)) < routine.cfg.tolerance_rad + 0.03
    plans = standin.CALLS[n0:]
    # approach x2, lift, place x2, release-retreat, park: every move planned by MoveIt (LIN)
    assert len(plans) >= 7 and set(plans) == {"plan(pilz_industrial_motion_planner/LIN)"}


def test_a_goal_moveit_refuses_fails_the_attempt_with_planning_failed(standin, kin):
    planner = make_line_planner("moveit", kin)
    planner._params.planner_id = "NOT_A_PLANNER"
    cell = PushTCell(kin)
    out = PickPlaceReset(kin, planner=planner).run(
        ResetPlan("robot_0", "pusht", 3, "pick_place", PUSHT.sample_start_state(3), 1),
        DirectCellPort(cell),
        lambda *a: None,
        lambda: False,
    )
    assert not out.success and out.error_code == ResetErrorCode.PLANNING_FAILED
    assert "moveit planner: no plan" in out.error_msg


@pytest.mark.xdist_group("env_node_graph")
def test_env_node_resets_with_the_moveit_backend(ros_domain, ros_context):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(STANDIN), env.get("PYTHONPATH", "")])
    cell = NodeProcess(
        "enpire_env.sim_cell_node",
        ["-r", "__ns:=/robot_0", "-p", "time_scale:=20.0", "-p", "camera_hz:=2.0"],
        env=env,
    )
    node = NodeProcess("enpire_env.env_node", ["-p", "robots:=[robot_0]"], env=env)
    try:
        for p in (cell, node):
            assert p.wait_for_output("ready"), p.output
        assert "reset backend: moveit" in node.output
        (call,) = call_action(
            ros_context, Reset, "/reset", [Reset.Goal(robot_id="robot_0", task="pusht", seed=5)],
            timeout=90,
        )  # fmt: skip
        assert call.status == GoalStatus.STATUS_SUCCEEDED, call.result.error_msg
        assert call.result.planner == "moveit" and call.result.mode == "pick_place"
    finally:
        for p in (node, cell):
            p.stop()


def test_env_node_refuses_to_start_with_moveit_missing(ros_domain):
    node = NodeProcess("enpire_env.env_node", ["-p", "reset_backend:=moveit"])
    try:
        assert node.proc.wait(timeout=30) != 0
        assert "needs moveit_py" in node.output
    finally:
        node.stop()
