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
    """area(block ∩ goal) / area(goal), gym-pusht's rule. ``PushTEnv._get_coverage`` computes
    it with shapely; this is the same area in ~20 instead of ~240 us (the per-step reward).
    The T's two rectangles do not overlap, so the intersection's area is the sum over the four
    pairs of a block and a goal rectangle, each pair clipped in the goal rectangle's frame."""
    (gx, gy, gc, gs), boxes, goal_area = _goal_frame()
    x, y, th = (float(v) for v in pose)
    # the block's rectangles in the goal's frame (rotated by the block's minus the goal's angle)
    dx, dy = x - gx, y - gy
    ox, oy = gc * dx + gs * dy, -gs * dx + gc * dy
    c, s = gc * math.cos(th) + gs * math.sin(th), gc * math.sin(th) - gs * math.cos(th)
    block = [
        [(c * px - s * py + ox, s * px + c * py + oy) for px, py in p] for p in _local_lists()
    ]
    return sum(_clipped_area(pts, lo, hi) for lo, hi in boxes for pts in block) / goal_area


@functools.cache
def _local_lists() -> tuple:
    return tuple(tuple(map(tuple, p.tolist())) for p in _reference())


@functools.cache
def _goal_frame():
    """The goal pose as (x, y, cos, sin of its angle); its rectangles' bounds in that frame
    (axis-aligned: the T's body frame); the goal's area."""
    gx, gy, gth = GOAL_POSE
    bounds = [(tuple(p.min(axis=0).tolist()), tuple(p.max(axis=0).tolist())) for p in _reference()]
    area = sum((hi[0] - lo[0]) * (hi[1] - lo[1]) for lo, hi in bounds)
    return (gx, gy, math.cos(gth), math.sin(gth)), bounds, area


def _clipped_area(pts, lo, hi) -> float:
    """Area of a convex polygon clipped to the box [lo, hi] (Sutherland-Hodgman)."""
    for axis, bound, keep_below in (
        (0, lo[0], False),
        (0, hi[0], True),
        (1, lo[1], False),
        (1, hi[1], True),
    ):
        out = []
        n = len(pts)
        for i in range(n):
            p, q = pts[i], pts[(i + 1) % n]
            p_in = p[axis] <= bound if keep_below else p[axis] >= bound
            q_in = q[axis] <= bound if keep_below else q[axis] >= bound
            if p_in:
                out.append(p)
            if p_in != q_in:
                t = (bound - p[axis]) / (q[axis] - p[axis])
                out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        pts = out
        if not pts:
            return 0.0
    n = len(pts)
    return 0.5 * abs(sum(pts[i - 1][0] * pts[i][1] - pts[i][0] * pts[i - 1][1] for i in range(n)))


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


@functools.cache
def _tee_boxes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [(p.min(axis=0), p.max(axis=0)) for p in _reference()]


def tee_sdf(lx: np.ndarray, ly: np.ndarray):
    """Signed distance of body-frame points to the T (the nearer of its two boxes) and its
    gradient (d/dlx, d/dly)."""
    sd = gx = gy = None
    for lo, hi in _tee_boxes():
        cx, cy = (lo + hi) / 2
        hx, hy = (hi - lo) / 2
        ux, uy = lx - cx, ly - cy
        qx, qy = np.abs(ux) - hx, np.abs(uy) - hy
        ox, oy = np.maximum(qx, 0), np.maximum(qy, 0)
        out = np.hypot(ox, oy)
        d = out + np.minimum(np.maximum(qx, qy), 0)
        # outside: along (ox, oy) from the nearest point; inside: out through the nearer side
        safe = np.where(out > 0, out, 1.0)
        inside_x = qx > qy
        rx = np.where(out > 0, ox / safe, inside_x) * np.sign(ux)
        ry = np.where(out > 0, oy / safe, ~inside_x) * np.sign(uy)
        if sd is None:
            sd, gx, gy = d, rx, ry
        else:
            nearer = d < sd
            sd, gx, gy = (
                np.where(nearer, d, sd),
                np.where(nearer, rx, gx),
                np.where(nearer, ry, gy),
            )
    return sd, gx, gy


def tee_sdf_at(pose, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Signed distance of workspace points (xs, ys) to the T at block pose ``pose``."""
    x, y, th = (float(v) for v in pose)
    c, s = math.cos(th), math.sin(th)
    ux, uy = xs - x, ys - y
    return tee_sdf(c * ux + s * uy, -s * ux + c * uy)[0]
