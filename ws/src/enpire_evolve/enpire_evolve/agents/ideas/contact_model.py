"""Orientation-aware contact points: push where the T both moves and turns toward its goal.

The T has no floor friction and loses its velocity every physics step, so a push moves it
quasi-statically: an impulse J at a point r from the centre of mass moves it by J / m and turns
it by (r x J) / I. Candidate contacts lie along the T's outline, each pushed at a few angles
inside the friction cone (outside it the tip slides along the edge). Each step the remaining
error (centre-of-mass offset, and the turn weighted by ``angle_weight`` px per rad) is expressed
in the block's frame, and the contact whose push reduces it most is chosen.
"""

import math

import numpy as np

IDEA = {
    "title": "orientation-aware contact points",
    "replaces": ["plan_push"],
    "requires": [],
    "cures": "turned",
}

PARAMS = {
    "angle_weight": 60.0,
    "contact_spacing": 4.0,
    "corner_margin": 3.0,
    "push_angle": 0.5,
    "n_push_angles": 5,
    "friction": 1.0,
}

PUSHER_RADIUS = 15.0  # px
# the T in its own frame (gym-pusht's block), counter-clockwise, and as two rectangles
TEE_OUTLINE = np.array(
    [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)],
    dtype=float,
)
TEE_RECTS = ((-60.0, 60.0, 0.0, 30.0), (-15.0, 15.0, 30.0, 120.0))
BLOCK_MASS = 1.0
BLOCK_MOMENT = 3000.0  # gym-pusht's value about the centre of mass
BLOCK_COG = np.array([0.0, 45.0])
WALL_MIN = 23.0  # px: where the tip's centre fits between the walls
WALL_MAX = 488.0
_CONTACTS: dict = {}


def rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def dist_to_tee(points: np.ndarray) -> np.ndarray:
    """Distance from points (N, 2) in the block's frame to the T (0 inside)."""
    d = np.full(len(points), np.inf)
    for x0, x1, y0, y1 in TEE_RECTS:
        dx = np.maximum(np.maximum(x0 - points[:, 0], points[:, 0] - x1), 0)
        dy = np.maximum(np.maximum(y0 - points[:, 1], points[:, 1] - y1), 0)
        d = np.minimum(d, np.hypot(dx, dy))
    return d


def build_contacts(p: dict) -> dict:
    """Candidate contacts in the block's frame and the block's twist per px of push at each."""
    key = tuple(
        float(p[k])
        for k in (
            "contact_spacing",
            "corner_margin",
            "push_angle",
            "n_push_angles",
            "friction",
            "approach_gap",
        )
    )
    if key in _CONTACTS:
        return _CONTACTS[key]
    pts, nrm = [], []
    for a, b in zip(TEE_OUTLINE, np.roll(TEE_OUTLINE, -1, axis=0), strict=True):
        edge = b - a
        length = float(np.hypot(*edge))
        t = edge / length
        n = np.array([t[1], -t[0]])  # outward
        k = max(int((length - 2 * p["corner_margin"]) // p["contact_spacing"]), 0)
        for s in np.linspace(p["corner_margin"], length - p["corner_margin"], k + 1):
            pts.append(a + t * s)
            nrm.append(n)
    pts, nrm = np.array(pts), np.array(nrm)
    # the tip touching there must not overlap another part of the T, nor where it is lowered
    centre = pts + nrm * PUSHER_RADIUS
    gap = max(p["approach_gap"], 2.0)
    ok = (dist_to_tee(centre) >= PUSHER_RADIUS - 0.01) & (
        dist_to_tee(centre + nrm * gap) >= PUSHER_RADIUS + gap - 0.5
    )
    pts, nrm = pts[ok], nrm[ok]
    n_angles = int(p["n_push_angles"])
    angles = np.linspace(-p["push_angle"], p["push_angle"], n_angles) if n_angles > 1 else [0.0]
    out = {"points": [], "normals": [], "push_dirs": [], "twists": []}
    for q, n in zip(pts, nrm, strict=True):
        r = q - BLOCK_COG
        k = np.array(
            [
                [1 / BLOCK_MASS + r[1] ** 2 / BLOCK_MOMENT, -r[0] * r[1] / BLOCK_MOMENT],
                [-r[0] * r[1] / BLOCK_MOMENT, 1 / BLOCK_MASS + r[0] ** 2 / BLOCK_MOMENT],
            ]
        )
        tang = np.array([-n[1], n[0]])
        for al in angles:
            u = rotation(al) @ -n
            j = np.linalg.solve(k, u)
            jn, jt = float(j @ -n), float(j @ tang)
            if jn <= 1e-9:
                continue
            if abs(jt) > p["friction"] * jn:  # outside the friction cone: it slides
                dirn = -n + math.copysign(p["friction"], jt) * tang
                j = float(u @ -n) / float((k @ dirn) @ -n) * dirn
            v = j / BLOCK_MASS
            w = (r[0] * j[1] - r[1] * j[0]) / BLOCK_MOMENT
            out["points"].append(q)
            out["normals"].append(n)
            out["push_dirs"].append(u)
            out["twists"].append((v[0], v[1], w))
    _CONTACTS[key] = out = {k: np.array(v) for k, v in out.items()}
    return out


def block_error(pose: np.ndarray, goal, p: dict) -> np.ndarray:
    """What is left to do, in the block's frame: centre-of-mass dx, dy and the weighted turn."""
    th, gth = float(pose[2]), float(goal[2])
    cog = pose[:2] + rotation(th) @ BLOCK_COG
    gcog = np.asarray(goal[:2], dtype=float) + rotation(gth) @ BLOCK_COG
    d = rotation(-th) @ (gcog - cog)
    return np.array([d[0], d[1], p["angle_weight"] * math.remainder(gth - th, math.tau)])


def contact_scores(gains: np.ndarray, travel: np.ndarray, p: dict) -> np.ndarray:
    """How good each contact is to push next: how much it reduces the error."""
    return gains.copy()


def worth_switching(current: float, best: float, p: dict) -> bool:
    """Leave the contact being pushed for another? Only once it stops helping."""
    return current <= 0


def plan_push(obs: dict, memory: dict, p: dict) -> dict | None:
    """Push at the outline contact that best reduces the position and turn error."""
    c = build_contacts(p)
    pose = np.asarray(obs["block_pose"], dtype=float)
    err = block_error(pose, obs["goal_pose"], p)
    tw = c["twists"] * np.array([1.0, 1.0, p["angle_weight"]])
    along = tw @ err
    lengths = np.maximum(along, 0) / (tw * tw).sum(axis=1)  # best push length per contact, px
    gains = lengths * along  # error-squared it removes
    rot = rotation(pose[2])
    touch = pose[:2] + (c["points"] + c["normals"] * PUSHER_RADIUS) @ rot.T
    normals = c["normals"] @ rot.T
    start = touch + normals * p["approach_gap"]
    reachable = np.all((start > WALL_MIN) & (start < WALL_MAX), axis=1)
    tip = np.asarray(obs["tip"], dtype=float)
    score = contact_scores(gains, np.hypot(*(touch - tip).T), p)
    score[~reachable | (gains <= 0)] = -np.inf
    cur = memory.get("contact")
    if cur is not None and memory.get("engaged"):
        score[cur] = gains[cur]
    best = int(np.argmax(score))
    if (
        cur is None
        or not reachable[cur]
        or gains[cur] <= 0
        or worth_switching(score[cur], score[best], p)
    ):
        cur = best
    memory["contact"] = cur
    if gains[cur] <= 0 or not reachable[cur]:
        return None
    return {
        "touch": touch[cur],
        "normal": normals[cur],
        "direction": c["push_dirs"][cur] @ rot.T,
        "length": float(lengths[cur]),
        "key": cur,
    }
