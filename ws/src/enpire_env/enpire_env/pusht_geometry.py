"""PushT geometry shared by the simulator, the camera verifier and the reset planner.

Everything is taken from gym-pusht itself (its T shapes, goal pose, coverage rule and success
threshold); poses are ``(x, y, theta)`` of the block body's origin in the 512 x 512 px workspace,
as gym-pusht's state observation reports them.
"""

from __future__ import annotations

import functools
import math

import numpy as np

WORKSPACE_PX = 512.0


@functools.cache
def _reference():
    import pymunk
    from gym_pusht.envs.pusht import PushTEnv

    _body, shapes = PushTEnv.add_tee(pymunk.Space(), (0, 0), 0)
    return [np.array([tuple(v) for v in s.get_vertices()], dtype=float) for s in shapes]


def tee_local_polygons() -> list[np.ndarray]:
    """The T's two rectangles in body coordinates (px), as gym-pusht builds them."""
    return [p.copy() for p in _reference()]


# gym-pusht's goal pose and PushTEnv.success_threshold (tests check both against the package)
GOAL_POSE = (256.0, 256.0, math.pi / 4)
SUCCESS_THRESHOLD = 0.95


def tee_polygons(pose) -> list[np.ndarray]:
    """The T's rectangles in workspace px for a block pose."""
    x, y, th = (float(v) for v in pose)
    c, s = math.cos(th), math.sin(th)
    rot = np.array([[c, -s], [s, c]])
    return [poly @ rot.T + (x, y) for poly in tee_local_polygons()]


def _shapely(pose):
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    return unary_union([Polygon(p) for p in tee_polygons(pose)])


def coverage(pose) -> float:
    """area(block ∩ goal) / area(goal), gym-pusht's rule."""
    goal = _shapely(GOAL_POSE)
    return float(_shapely(pose).intersection(goal).area / goal.area)


def reward_from_coverage(cov: float) -> float:
    return float(np.clip(cov / SUCCESS_THRESHOLD, 0.0, 1.0))


def is_success(cov: float) -> bool:
    return cov > SUCCESS_THRESHOLD


def point_in_tee(pose, point, margin: float = 0.0) -> bool:
    """Whether a workspace point lies inside the T (at least ``margin`` px from its edge)."""
    from shapely.geometry import Point

    return bool(_shapely(pose).buffer(-margin).contains(Point(*point)))


def tee_world_point(pose, local) -> np.ndarray:
    x, y, th = (float(v) for v in pose)
    c, s = math.cos(th), math.sin(th)
    return np.array([x + c * local[0] - s * local[1], y + s * local[0] + c * local[1]])


# gym-pusht's walls: segments at 5 and 506 px with radius 2; the block stays inside these
WALL_INNER = (5.0 + 2.0, 506.0 - 2.0)


def inside_walls(pose, margin: float = 0.5, max_shift: float = 20.0) -> np.ndarray:
    """The pose shifted (no turn) just enough for the whole T to lie inside the walls.

    gym-pusht's reset can place the T overlapping a wall (its physics then pushes it out), so
    some benchmark start states cannot be reproduced exactly; a reset aims for this instead.
    A pose further out than ``max_shift`` px is returned unchanged (it is not a near miss).
    """
    pose = np.asarray(pose, dtype=float).copy()
    pts = np.concatenate(tee_polygons(pose))
    lo, hi = WALL_INNER[0] + margin, WALL_INNER[1] - margin
    for axis in (0, 1):
        below = lo - pts[:, axis].min()
        above = pts[:, axis].max() - hi
        if 0 < below <= max_shift:
            pose[axis] += below
        elif 0 < above <= max_shift:
            pose[axis] -= above
    return pose
