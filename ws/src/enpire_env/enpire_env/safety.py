"""The safety filter between any policy and a robot's joint-command topic (ROS-free core).

Every trajectory a policy sends passes through :meth:`SafetyFilter.filter`:
  * non-finite or malformed points, or any command while the emergency stop is engaged,
    are refused (the arm holds);
  * positions outside the URDF joint limits are clipped;
  * a point whose tool tip (forward kinematics) leaves the workspace box is refused;
  * points the joints could only reach faster than their speed limit are slowed down.
A watchdog holds the arm when a stream of commands stops while the arm is still moving.
Counters only grow, so per-episode figures are differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from enpire_env.kinematics import So101Kinematics


@dataclass
class SafetyConfig:
    workspace_min: tuple[float, float, float] = (0.05, -0.16, -0.002)  # tip box [m], base frame
    workspace_max: tuple[float, float, float] = (0.36, 0.16, 0.30)
    speed_scale: float = 1.0  # fraction of the URDF velocity limits allowed
    watchdog_timeout: float = 0.5  # s without a command while moving -> hold

    def __post_init__(self) -> None:
        if any(lo >= hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ValueError("workspace_min must be below workspace_max on every axis")
        if not 0 < self.speed_scale <= 1:
            raise ValueError("speed_scale must be in (0, 1]")
        if self.watchdog_timeout <= 0:
            raise ValueError("watchdog_timeout must be positive")


@dataclass
class SafetyCounters:
    commands: int = 0
    forwarded: int = 0
    refused: int = 0
    clipped_position: int = 0
    clipped_velocity: int = 0
    watchdog_trips: int = 0
    last_violation: str = ""


@dataclass
class Verdict:
    points: list[tuple[float, np.ndarray]] | None  # None: refused, hold
    reason: str = ""
    notes: list[str] = field(default_factory=list)


class SafetyFilter:
    def __init__(self, kin: So101Kinematics, cfg: SafetyConfig | None = None):
        self.kin = kin
        self.cfg = cfg or SafetyConfig()
        self.counters = SafetyCounters()
        self.estop = False
        self._stops: dict[str, bool] = {}  # engaged or not, per source (the robot's, the fleet's)
        self.watchdog_tripped = False
        self._last_command: float | None = None
        self._motion_end: float | None = None
        self._lo, self._hi = kin.lower(), kin.upper()
        self._vmax = kin.max_velocity() * self.cfg.speed_scale

    def _refuse(self, reason: str) -> Verdict:
        self.counters.refused += 1
        self.counters.last_violation = reason
        return Verdict(None, reason)

    def tip_in_box(self, q) -> bool:
        tip = self.kin.tip_position(q)
        return bool(
            np.all(tip >= self.cfg.workspace_min) and np.all(tip <= self.cfg.workspace_max)
        )

    def filter(self, points, q_now, now: float) -> Verdict:
        """Check a trajectory ``[(time_from_start, positions[6])]`` received at time ``now``."""
        self.counters.commands += 1
        self._last_command = now
        self.watchdog_tripped = False
        if self.estop:
            return self._refuse("emergency stop engaged")
        if not points:
            return self._refuse("trajectory has no points")
        out, notes = [], []
        prev_t, prev_q, delay = 0.0, np.asarray(q_now, dtype=float), 0.0
        clipped_pos = clipped_vel = False
        for i, (t, q) in enumerate(points):
            q = np.asarray(q, dtype=float).reshape(-1)
            if q.shape != (6,) or not np.all(np.isfinite(q)) or not math.isfinite(t):
                return self._refuse(f"point {i} is malformed or not finite")
            if t < prev_t:
                return self._refuse(f"point {i}: time_from_start goes backwards")
            qc = np.clip(q, self._lo, self._hi)
            if np.any(qc != q):
                clipped_pos = True
                notes.append(f"point {i} clipped to joint limits")
            if not self.tip_in_box(qc):
                tip = np.round(self.kin.tip_position(qc), 3).tolist()
                return self._refuse(f"point {i}: tool tip {tip} m outside the workspace box")
            need = float(np.max(np.abs(qc - prev_q)[:5] / self._vmax[:5]))  # arm joints
            dt = (t + delay) - prev_t
            if need > dt + 1e-9:
                delay += need - dt
                clipped_vel = True
            t_out = t + delay
            out.append((t_out, qc))
            prev_t, prev_q = t_out, qc
        if clipped_vel:
            notes.append(f"slowed down by {delay:.3f} s to respect joint speed limits")
        self.counters.clipped_position += clipped_pos
        self.counters.clipped_velocity += clipped_vel
        if notes:
            self.counters.last_violation = "; ".join(notes)
        self.counters.forwarded += 1
        self._motion_end = now + out[-1][0]
        return Verdict(out, notes=notes)

    def tick(self, now: float) -> bool:
        """True when the watchdog trips: commands stopped while the arm was still moving."""
        if self._last_command is None or self.watchdog_tripped or self._motion_end is None:
            return False
        silent = now - self._last_command > self.cfg.watchdog_timeout
        if silent and now < self._motion_end:
            self.watchdog_tripped = True
            self.counters.watchdog_trips += 1
            self.counters.last_violation = (
                f"no command for {now - self._last_command:.2f} s while moving: holding"
            )
            self._motion_end = None
            return True
        return False

    def set_estop(self, engaged: bool, source: str = "") -> bool:
        """Engage or release the stop of ``source`` (the robot's own, the fleet's): the arm is
        stopped while any source's stop is engaged, so releasing one never lifts another.
        Returns True when the stop was just engaged (the caller must hold the arm)."""
        self._stops[source] = engaged
        was, self.estop = self.estop, any(self._stops.values())
        if self.estop and not was:
            self.counters.last_violation = "emergency stop engaged"
            self._motion_end = None
            return True
        return False
