"""MRU, throughput and per-robot utilisation from the ledger's robot intervals."""

from __future__ import annotations

import time
from dataclasses import dataclass

from enpire_rollout.ledger import BUSY_STATES, Ledger


@dataclass
class FleetUsage:
    window_start: float
    window_end: float
    per_robot: dict[str, float]  # busy fraction of the window, per robot
    mru: float  # mean busy fraction over the robots (robot time on experiments / wall time)
    episodes: int  # episodes finished in the window
    episodes_per_hour: float


def utilisation(
    intervals: list[dict], start: float, end: float, robots: list[str] | None = None
) -> dict[str, float]:
    """Busy fraction of [start, end] per robot (open intervals run to ``end``)."""
    span = max(end - start, 1e-9)
    busy: dict[str, float] = {r: 0.0 for r in robots or []}
    for iv in intervals:
        busy.setdefault(iv["robot_id"], 0.0)
        if iv["state"] not in BUSY_STATES:
            continue
        a = max(iv["t_start"], start)
        b = min(iv["t_end"] if iv["t_end"] is not None else end, end)
        if b > a:
            busy[iv["robot_id"]] += b - a
    return {r: min(v / span, 1.0) for r, v in busy.items()}


def fleet_usage(
    ledger: Ledger, start: float, end: float | None = None, robots: list[str] | None = None
) -> FleetUsage:
    end = time.time() if end is None else end
    per = utilisation(ledger.intervals(start, end), start, end, robots)
    done = ledger.query(
        "SELECT COUNT(*) AS n FROM episodes WHERE wall_end >= ? AND wall_end <= ?"
        " AND status != 'interrupted'",
        (start, end),
    )[0]["n"]
    hours = max(end - start, 1e-9) / 3600
    mru = sum(per.values()) / len(per) if per else 0.0
    return FleetUsage(start, end, per, mru, done, done / hours)
