"""What one tick of the rollout node's /fleet/metrics costs late in a long run (it ticks at
1 Hz while anyone subscribes): a ledger holding ``--hours`` of ``--robots`` robots cycling
through a reset and an episode (2 + 4 s, ~6.3 s a cycle), then ``--ticks`` ticks, a new
cycle's intervals and episodes written before each. Prints the CPU ms per tick of the total
since the node's start (``fleet_usage`` over every interval, as the node computed it before,
and ``UsageMeter``, as it does now) and of the last minute's window.

    scripts/run python bench/metrics_tick.py [--hours 10] [--robots 8] [--ticks 30]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time

from enpire_rollout.ledger import Ledger
from enpire_rollout.metrics import UsageMeter, fleet_usage

CYCLE, RESET, EPISODE = 6.3, 2.0, 4.0


def _cycle(conn: sqlite3.Connection, robots: list[str], t: float, k: int) -> None:
    conn.executemany(
        "INSERT INTO robot_intervals (robot_id, state, goal_id, episode_id, t_start, t_end)"
        " VALUES (?, ?, 'g', ?, ?, ?)",
        [
            row
            for r in robots
            for row in (
                (r, "reset", f"e{k}-{r}", t, t + RESET),
                (r, "episode", f"e{k}-{r}", t + RESET, t + RESET + EPISODE),
            )
        ],
    )
    conn.executemany(
        "INSERT INTO episodes (id, goal_id, robot_id, status, wall_start, wall_end)"
        " VALUES (?, 'g', ?, 'success', ?, ?)",
        [(f"e{k}-{r}", r, t + RESET, t + RESET + EPISODE) for r in robots],
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=10.0)
    ap.add_argument("--robots", type=int, default=8)
    ap.add_argument("--ticks", type=int, default=30)
    args = ap.parse_args()
    robots = [f"robot_{i}" for i in range(args.robots)]
    with tempfile.TemporaryDirectory(prefix="enpire-metrics-") as d:
        ledger = Ledger(f"{d}/ledger.sqlite")
        conn = sqlite3.connect(f"{d}/ledger.sqlite")
        start = 1_000_000.0
        cycles = int(args.hours * 3600 / CYCLE)
        for k in range(cycles):
            _cycle(conn, robots, start + k * CYCLE, k)
        conn.commit()
        meter = UsageMeter(ledger, start, robots)
        t = start + cycles * CYCLE
        meter.usage(t)  # the first call reads the night once, as the node's first tick would
        cpu = {"old": 0.0, "new": 0.0, "window": 0.0}
        for k in range(cycles, cycles + args.ticks):
            _cycle(conn, robots, t, k)
            conn.commit()
            t += CYCLE
            c0 = time.process_time()
            old = fleet_usage(ledger, start, t, robots)
            c1 = time.process_time()
            new = meter.usage(t)
            c2 = time.process_time()
            fleet_usage(ledger, t - 60.0, t, robots)
            c3 = time.process_time()
            assert abs(old.mru - new.mru) < 1e-9 and old.episodes == new.episodes
            cpu["old"] += c1 - c0
            cpu["new"] += c2 - c1
            cpu["window"] += c3 - c2
        n = args.ticks
        rows = conn.execute("SELECT COUNT(*) FROM robot_intervals").fetchone()[0]
        print(
            f"bench/metrics_tick.py: a ledger of {args.hours:g} h of {args.robots} robots "
            f"({rows} intervals, MRU {new.mru:.3f}), {n} ticks"
        )
        print(
            f"  the total since the start, every interval read (as before): "
            f"{1000 * cpu['old'] / n:.1f} ms CPU per tick"
        )
        print(
            f"  the total since the start, UsageMeter (the node now): "
            f"{1000 * cpu['new'] / n:.2f} ms CPU per tick (the same figures)"
        )
        print(f"  the last minute's window: {1000 * cpu['window'] / n:.2f} ms CPU per tick")


if __name__ == "__main__":
    main()
