"""rviz markers of a cell: geometry for a known state (ROS-free), the message conversion, and
the viz node over ROS beside a simulated cell."""

import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from visualization_msgs.msg import Marker, MarkerArray

from enpire_env.kinematics import So101Kinematics
from enpire_env.markers import cell_markers, centroid
from enpire_env.pusht_geometry import GOAL_POSE
from enpire_env.sim_cell import CellConfig
from enpire_env.testing import NodeProcess, TopicProbe
from enpire_env.viz_node import to_marker_array


def _by(items, ns):
    return [i for i in items if i["ns"] == ns]


def test_markers_of_a_known_state():
    cfg = CellConfig()
    kin = So101Kinematics()
    tip = kin.tip_position([0.0, 0.2, 0.3, 0.4, 0.0, 0.0])
    items = cell_markers(GOAL_POSE, GOAL_POSE, tip=tip, target=None, cfg=cfg)
    goal, block = _by(items, "goal"), _by(items, "block")
    assert len(goal) == len(block) == 2  # the T's bar and stem
    for g, b in zip(goal, block, strict=True):
        assert len(g["points"]) == 5 and g["points"][0] == g["points"][-1]  # closed rectangles
        # a block on its goal is drawn on the goal outline (just above it)
        assert np.allclose(np.array(g["points"])[:, :2], np.array(b["points"])[:, :2])
        assert b["points"][0][2] > g["points"][0][2]
    # the goal sits at the workspace centre, in base_link metres: 256 px -> x = centre
    cx, cy, _ = np.mean([centroid(g["points"]) for g in goal], axis=0)
    assert abs(cx - cfg.workspace_center_x) < 0.03 and abs(cy) < 0.03
    # the bar is 120 px long: 120 * 0.18 / 512 m
    bar = np.array(goal[0]["points"])
    sides = np.linalg.norm(np.diff(bar[:, :2], axis=0), axis=1)
    assert max(sides) == pytest.approx(120 * cfg.workspace_size / 512, rel=1e-6)
    (t,) = _by(items, "tool_tip")
    assert t["position"] == pytest.approx(tuple(tip)) and not t["delete"]
    (p,) = _by(items, "planned_contact")
    assert p["delete"]  # nothing commanded yet


def test_a_block_out_of_view_deletes_its_markers():
    items = cell_markers(None)
    assert all(i["delete"] for i in _by(items, "block"))


def test_marker_messages():
    items = cell_markers((300.0, 200.0, 0.3), tip=(0.2, 0.0, 0.01), target=(0.21, 0.01, 0.006))
    arr = to_marker_array(items, "robot_0/base_link", Time(sec=5))
    assert isinstance(arr, MarkerArray) and len(arr.markers) == 6
    kinds = {(m.ns, m.type) for m in arr.markers}
    assert ("goal", Marker.LINE_STRIP) in kinds and ("tool_tip", Marker.SPHERE) in kinds
    tip = [m for m in arr.markers if m.ns == "tool_tip"][0]
    assert (tip.pose.position.x, tip.pose.position.z) == pytest.approx((0.2, 0.01))
    assert all(m.header.frame_id == "robot_0/base_link" for m in arr.markers)


@pytest.mark.xdist_group("viz_node")
def test_viz_node_draws_the_cells_block(ros_domain, ros_context):
    cell = NodeProcess("enpire_env.sim_cell_node", ["-r", "__ns:=/robot_0", "-p",
                                                    "camera_hz:=1.0"])  # fmt: skip
    viz = NodeProcess("enpire_env.viz_node", ["-r", "__ns:=/robot_0"])
    probe = TopicProbe(ros_context)
    try:
        assert cell.wait_for_output("ready") and viz.wait_for_output("ready"), viz.output
        from enpire_msgs.msg import SimGroundTruth

        probe.watch("/robot_0/sim/ground_truth", SimGroundTruth, qos=1)
        probe.watch("/robot_0/viz/markers", MarkerArray, qos=1)
        arr = probe.wait_for(
            "/robot_0/viz/markers", lambda a: any(m.ns == "block" and m.points for m in a.markers)
        )
        truth = probe.wait_for("/robot_0/sim/ground_truth")
        want = cell_markers(tuple(truth.block_pose))
        got = [m for m in arr.markers if m.ns == "block"]
        for m, w in zip(got, _by(want, "block"), strict=True):
            pts = np.array([[p.x, p.y] for p in m.points])
            # the perception model's error is a few px: within 5 mm on the table
            assert np.abs(pts - np.array(w["points"])[:, :2]).max() < 0.005
        tip = [m for m in arr.markers if m.ns == "tool_tip"][0]
        assert tip.action == Marker.ADD and math.isfinite(tip.pose.position.x)
    finally:
        probe.close()
        viz.stop()
        cell.stop()
