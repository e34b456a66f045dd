"""The shipped rule-based PushT pusher: plans contact points on the T and pushes it home.

No learning and no simulator inside. Each step it reads the block pose estimate and:

1. expresses the remaining error (centre-of-mass offset and turn, weighted) in the block frame;
2. scores every candidate contact — points along the T's outline, pushed at a few angles within
   the friction cone — by how much a push there reduces the error, using the quasi-static
   response of a free body to a contact impulse (gym-pusht's block has no floor friction and
   loses its velocity every physics step, so a push moves it by ``J / m`` and turns it by
   ``(r x J) / I``; contacts outside the friction cone slide);
3. keeps pushing at its current contact while it stays nearly as good as the best (no dither),
   otherwise lifts the tip, moves above the new contact, lowers it beside the block and pushes.

Every number it uses is a field of :class:`HeuristicParams`, which is what the CEM recipe and
the agents tune.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from enpire_policy.interface import Policy

PUSHER_RADIUS = 15.0  # px, gym-pusht's agent circle
# the T's outline in body coordinates (gym-pusht's add_tee), counter-clockwise in its frame
OUTLINE = np.array(
    [(-60, 0), (60, 0), (60, 30), (15, 30), (15, 120), (-15, 120), (-15, 30), (-60, 30)],
    dtype=float,
)
# gym-pusht's walls are segments at 5 and 506 px, 2 px thick: pusher centres stay within
WALL_MIN, WALL_MAX = 5 + 2 + PUSHER_RADIUS + 1, 506 - 2 - PUSHER_RADIUS - 1
RECTS = ((-60.0, 60.0, 0.0, 30.0), (-15.0, 15.0, 30.0, 120.0))  # x0, x1, y0, y1


@dataclass
class HeuristicParams:
    angle_weight: float = 60.0  # px of error per rad of turn error
    contact_spacing: float = 4.0  # px between candidate contact points
    corner_margin: float = 3.0  # px kept clear of the outline's corners
    push_angle: float = 0.5  # rad: largest push angle from the inward normal
    n_push_angles: int = 5
    push_gain: float = 0.5  # fraction of the remaining optimal push commanded per step
    max_push: float = 20.0  # px per step
    min_push: float = 1.5  # px per step
    approach_gap: float = 5.0  # px between the lowered tip and the block
    engage_tol: float = 4.0  # px: tip this close to its contact counts as engaged
    switch_ratio: float = 1.5  # a new contact must be this much better to switch
    travel_cost: float = 0.05  # gain lost per px of repositioning
    reposition_cost: float = 20.0  # gain lost by any repositioning (lift, move, lower)
    friction: float = 1.0  # pusher-block friction coefficient of the model
    done_error: float = 0.0  # px: below this weighted error the pusher backs off

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{f.name} must be a finite, non-negative number, got {v}")
        if self.contact_spacing <= 0 or self.n_push_angles < 1 or self.max_push <= 0:
            raise ValueError("contact_spacing, n_push_angles and max_push must be positive")
        if self.min_push > self.max_push:
            raise ValueError("min_push must not exceed max_push")
        if self.switch_ratio < 1:
            raise ValueError("switch_ratio must be >= 1")

    @classmethod
    def from_dict(cls, d: dict) -> HeuristicParams:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown heuristic parameters {sorted(unknown)}")
        kinds = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
        return cls(**{k: kinds[k](v) for k, v in d.items()})


def _block_body():
    import pymunk
    from gym_pusht.envs.pusht import PushTEnv

    body, _shapes = PushTEnv.add_tee(pymunk.Space(), (0, 0), 0)
    return body.mass, body.moment, np.array(tuple(body.center_of_gravity), dtype=float)


def _rot(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def _dist_to_tee(p: np.ndarray) -> np.ndarray:
    """Distance from points (N, 2) in body coordinates to the T (0 inside)."""
    d = np.full(len(p), np.inf)
    for x0, x1, y0, y1 in RECTS:
        dx = np.maximum(np.maximum(x0 - p[:, 0], p[:, 0] - x1), 0)
        dy = np.maximum(np.maximum(y0 - p[:, 1], p[:, 1] - y1), 0)
        d = np.minimum(d, np.hypot(dx, dy))
    return d


class Contacts:
    """Candidate contacts in the block frame and the block's response to pushing each."""

    def __init__(self, prm: HeuristicParams):
        mass, moment, cog = _block_body()
        self.cog = cog
        pts, nrm = [], []
        for a, b in zip(OUTLINE, np.roll(OUTLINE, -1, axis=0), strict=True):
            edge = b - a
            length = float(np.hypot(*edge))
            t = edge / length
            n = np.array([t[1], -t[0]])  # outward for this vertex order
            k = max(int((length - 2 * prm.corner_margin) // prm.contact_spacing), 0)
            for s in np.linspace(prm.corner_margin, length - prm.corner_margin, k + 1):
                pts.append(a + t * s)
                nrm.append(n)
        pts, nrm = np.array(pts), np.array(nrm)
        # the pusher touching there must not overlap another part of the T
        # (and where it is lowered, beside the contact, it must be clear of the whole T)
        centre = pts + nrm * PUSHER_RADIUS
        gap = max(prm.approach_gap, 2.0)
        ok = (_dist_to_tee(centre) >= PUSHER_RADIUS - 0.01) & (
            _dist_to_tee(centre + nrm * gap) >= PUSHER_RADIUS + gap - 0.5
        )
        pts, nrm = pts[ok], nrm[ok]
        alphas = (
            np.linspace(-prm.push_angle, prm.push_angle, prm.n_push_angles)
            if prm.n_push_angles > 1
            else np.zeros(1)
        )
        cp, cn, cu, ct = [], [], [], []
        for p, n in zip(pts, nrm, strict=True):
            r = p - cog
            kmat = np.array(
                [
                    [1 / mass + r[1] ** 2 / moment, -r[0] * r[1] / moment],
                    [-r[0] * r[1] / moment, 1 / mass + r[0] ** 2 / moment],
                ]
            )
            tang = np.array([-n[1], n[0]])
            for al in alphas:
                u = _rot(al) @ -n
                j = np.linalg.solve(kmat, u)
                jn, jt = float(j @ -n), float(j @ tang)
                if jn <= 1e-9:
                    continue
                if abs(jt) > prm.friction * jn:  # slides along the edge
                    dirn = -n + math.copysign(prm.friction, jt) * tang
                    lam = float(u @ -n) / float((kmat @ dirn) @ -n)
                    j = lam * dirn
                v = j / mass
                w = (r[0] * j[1] - r[1] * j[0]) / moment
                cp.append(p)
                cn.append(n)
                cu.append(u)
                ct.append((v[0], v[1], w))
        self.points = np.array(cp)  # contact points, body frame
        self.normals = np.array(cn)
        self.push_dirs = np.array(cu)  # pusher direction, body frame
        self.twists = np.array(ct)  # (vx, vy, omega) of the block per px of push, body frame


class HeuristicPushT(Policy):
    name = "heuristic"

    def __init__(self, params: HeuristicParams | dict | None = None):
        if isinstance(params, dict):
            params = HeuristicParams.from_dict(params)
        self.prm = params or HeuristicParams()
        self.contacts = Contacts(self.prm)
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.current: int | None = None  # index of the contact being pushed
        self.engaged = False

    def metadata(self) -> dict:
        return {"name": self.name, "needs_image": False, "params": asdict(self.prm)}

    # --- planning -----------------------------------------------------------------------
    def _error(self, pose, goal) -> np.ndarray:
        """Remaining (cog dx, cog dy, weighted turn) in the block frame."""
        th, gth = pose[2], goal[2]
        cog = np.asarray(pose[:2]) + _rot(th) @ self.contacts.cog
        gcog = np.asarray(goal[:2]) + _rot(gth) @ self.contacts.cog
        d = _rot(-th) @ (gcog - cog)
        return np.array([d[0], d[1], self.prm.angle_weight * math.remainder(gth - th, math.tau)])

    def _gains(self, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tw = self.contacts.twists * np.array([1.0, 1.0, self.prm.angle_weight])
        along = tw @ err
        norm2 = (tw * tw).sum(axis=1)
        s = np.maximum(along, 0) / norm2  # optimal push length, px
        return s * along, s  # error-squared reduction, push length

    def act(self, obs: dict) -> dict:
        tip = np.asarray(obs["tip"], dtype=float)
        pose = obs.get("block_pose")
        if pose is None:
            self.engaged = False
            return {"tip": tip.tolist(), "lift": True}
        pose = np.asarray(pose, dtype=float)
        err = self._error(pose, obs["goal_pose"])
        gains, lengths = self._gains(err)
        c = self.contacts
        rot = _rot(pose[2])
        touch = pose[:2] + (c.points + c.normals * PUSHER_RADIUS) @ rot.T  # pusher centres
        travel = np.hypot(*(touch - tip).T)
        score = gains - self.prm.travel_cost * travel - self.prm.reposition_cost
        approach = touch + (c.normals @ rot.T) * self.prm.approach_gap
        inside = np.all((approach > WALL_MIN) & (approach < WALL_MAX), axis=1)
        score[~inside] = -np.inf  # the pusher cannot get between the block and a wall
        score[gains <= 0] = -np.inf  # only pushes that help are worth moving to
        if self.current is not None and self.engaged:
            score[self.current] = gains[self.current]
        gains = np.where(inside, gains, -np.inf)  # no repositioning needed
        best = int(np.argmax(score))
        keep = (
            self.current is not None
            and gains[self.current] > 0
            and score[self.current] * self.prm.switch_ratio >= score[best]
        )
        if not keep:
            if best != self.current:
                self.engaged = False
            self.current = best
        i = self.current
        if gains[i] <= 0 or math.hypot(*err) < self.prm.done_error:
            self.engaged = False
            return {"tip": tip.tolist(), "lift": True}
        n_w = rot @ c.normals[i]
        u_w = rot @ c.push_dirs[i]
        if self.engaged:
            step = np.clip(self.prm.push_gain * lengths[i], self.prm.min_push, self.prm.max_push)
            # push from where the contact is now (the block moved), not from where the tip is
            return {"tip": (touch[i] + u_w * step).tolist(), "lift": False}
        approach = touch[i] + n_w * self.prm.approach_gap
        low = obs.get("tip_height", 0.0) < 0.02
        if np.hypot(*(tip - approach)) <= self.prm.engage_tol:
            if low:
                self.engaged = True
            return {"tip": approach.tolist(), "lift": False}
        if low and self._clear_path(tip, approach, pose):
            return {"tip": approach.tolist(), "lift": False}
        return {"tip": approach.tolist(), "lift": True}

    def _clear_path(self, a: np.ndarray, b: np.ndarray, pose: np.ndarray) -> bool:
        """Whether the pusher can slide from a to b without touching the T."""
        k = max(int(np.hypot(*(b - a)) / 4.0), 1)
        pts = a + (b - a) * np.linspace(0, 1, k + 1)[:, None]
        local = (pts - pose[:2]) @ _rot(pose[2])
        return bool(np.all(_dist_to_tee(local) > PUSHER_RADIUS + 2.0))


def make_policy(params: dict | None = None) -> HeuristicPushT:
    return HeuristicPushT(params)
