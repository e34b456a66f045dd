"""What rviz shows of a cell, ROS-free: the T where perception sees it, the goal region, the
tool tip and the point the arm is heading to (the planned contact), in base_link metres.

    items = cell_markers(block_pose, goal_pose, tip_xyz, target_xyz, cfg)

Each item is a dict (ns, id, kind, points or position, colour, scale) that ``viz_node`` turns
into a visualization_msgs/Marker; tests check the geometry here without a graph.
"""

from __future__ import annotations

import numpy as np

from enpire_env.pusht_geometry import GOAL_POSE, tee_polygons
from enpire_env.sim_cell import CellConfig

BLOCK_COLOUR = (0.47, 0.53, 0.60, 0.9)  # gym-pusht's light slate grey
GOAL_COLOUR = (0.56, 0.93, 0.56, 0.6)  # gym-pusht's light green
TIP_COLOUR = (0.25, 0.41, 0.88, 1.0)  # royal blue, as the pusher
TARGET_COLOUR = (1.0, 0.55, 0.0, 1.0)
Z_TABLE = 0.001  # m: drawn just above the table


def _outline(pose, cfg: CellConfig, z: float) -> list[list[tuple[float, float, float]]]:
    """The T's two rectangles as closed outlines in base_link metres."""
    out = []
    for poly in tee_polygons(pose):
        pts = [(*cfg.px_to_table(float(u), float(v)), z) for u, v in poly]
        out.append(pts + pts[:1])
    return out


def cell_markers(block_pose, goal_pose=GOAL_POSE, tip=None, target=None,
                 cfg: CellConfig | None = None) -> list[dict]:  # fmt: skip
    cfg = cfg or CellConfig()
    items: list[dict] = []
    for k, pts in enumerate(_outline(goal_pose, cfg, Z_TABLE)):
        items.append({"ns": "goal", "id": k, "kind": "line_strip", "points": pts,
                      "colour": GOAL_COLOUR, "scale": 0.002})  # fmt: skip
    for k, pts in enumerate(_outline(block_pose, cfg, 2 * Z_TABLE) if block_pose is not None
                            else [[], []]):  # fmt: skip
        items.append({"ns": "block", "id": k, "kind": "line_strip", "points": pts,
                      "colour": BLOCK_COLOUR, "scale": 0.003,
                      "delete": block_pose is None})  # fmt: skip
    spheres = (("tool_tip", tip, TIP_COLOUR, 0.012), ("planned_contact", target, TARGET_COLOUR,
                                                        0.008))  # fmt: skip
    for ns, xyz, colour, size in spheres:
        items.append({"ns": ns, "id": 0, "kind": "sphere", "delete": xyz is None,
                      "position": None if xyz is None else tuple(float(v) for v in xyz),
                      "colour": colour, "scale": size})  # fmt: skip
    return items


def centroid(points) -> np.ndarray:
    return np.mean(np.asarray(points, dtype=float)[:-1], axis=0)
