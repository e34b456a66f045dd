"""The SQLite ledger: rows survive a killed writer, several processes write at once, and MRU
comes out of the intervals."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from enpire_rollout.ledger import Ledger
from enpire_rollout.metrics import UsageMeter, fleet_usage, utilisation

WRITER = textwrap.dedent(
    """
    import sys, time
    from enpire_rollout.ledger import Ledger
    led = Ledger(sys.argv[1])
    for i in range(int(sys.argv[3])):
        led.add_episode({"id": f"{sys.argv[2]}-{i}", "robot_id": sys.argv[2],
                         "status": "done", "success": i % 2, "wall_end": time.time()})
    print("written", flush=True)
    time.sleep(60)
    """
)


def test_rows_survive_a_killed_writer_and_concurrent_processes(tmp_path):
    db = tmp_path / "ledger.sqlite"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), f"r{k}", "200"],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for k in range(2)
    ]
    for p in procs:
        assert p.stdout.readline().strip() == "written"
        p.send_signal(signal.SIGKILL)  # no clean shutdown, no close()
        p.wait()
    led = Ledger(db)
    rows = led.episodes()
    assert len(rows) == 400 and {r["robot_id"] for r in rows} == {"r0", "r1"}
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert sum(r["success"] for r in rows) == 200


class _CountingLedger(Ledger):
    """A ledger that counts the interval rows the usage meter reads."""

    read = 0

    def intervals_from(self, first_id, since):
        rows = super().intervals_from(first_id, since)
        self.read += len(rows)
        return rows

    def intervals_by_id(self, ids):
        rows = super().intervals_by_id(ids)
        self.read += len(rows)
        return rows


def test_usage_meter_matches_fleet_usage_and_reads_only_what_it_has_not_counted(tmp_path):
    import random

    led = _CountingLedger(tmp_path / "l.sqlite")
    t0, robots, rng = 1000.0, ["r0", "r1", "r2"], random.Random(3)
    straddling = led.open_interval("r0", "episode", t=t0 - 50)  # began before the start
    led.close_interval(straddling, t=t0 + 5)
    led.close_interval(led.open_interval("r1", "reset", t=t0 - 30), t=t0 - 20)  # before it
    meter = UsageMeter(led, t0, robots)
    running, t, calls = {}, t0, 0
    for k in range(90):
        t += rng.uniform(0.5, 3.0)
        r = rng.choice(robots)
        if r in running:
            led.close_interval(running.pop(r), t=t)
        else:
            running[r] = led.open_interval(r, rng.choice(["reset", "episode", "idle"]), t=t)
        if k % 3 == 0:
            led.add_episode({"id": f"e{k}", "robot_id": r, "status": "success", "wall_end": t})
        end = t + 0.25
        got, want = meter.usage(end), fleet_usage(led, t0, end, robots)
        calls += 1
        assert got.per_robot == pytest.approx(want.per_robot), k
        assert (got.mru, got.episodes) == (pytest.approx(want.mru), want.episodes), k
    for i in running.values():
        led.close_interval(i, t=t + 1)
    assert meter.usage(t + 2).mru == pytest.approx(fleet_usage(led, t0, t + 2, robots).mru)
    led.read = 0  # everything is closed and counted: a next call reads no interval again
    assert meter.usage(t + 3).mru == pytest.approx(fleet_usage(led, t0, t + 3, robots).mru)
    assert led.read == 0


def test_the_usage_queries_use_indexes(tmp_path):
    """The 1 Hz metrics' window and episode count find their rows through an index, not by
    reading a night's ledger."""
    led = Ledger(tmp_path / "l.sqlite")
    conn = sqlite3.connect(tmp_path / "l.sqlite")
    plans = {
        "intervals_end": "SELECT * FROM robot_intervals WHERE t_start < 1 AND (t_end IS NULL "
        "OR t_end > 0) ORDER BY t_start",
        "episodes_end": "SELECT COUNT(*) FROM episodes WHERE wall_end >= 0 AND wall_end <= 1",
    }
    for index, sql in plans.items():
        plan = " ".join(str(r) for r in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "SCAN" not in plan and f"INDEX {index}" in plan, plan
    del led


def test_mru_from_intervals(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    t0 = 1000.0
    i = led.open_interval("r0", "reset", t=t0)
    led.close_interval(i, t=t0 + 10)
    i = led.open_interval("r0", "episode", t=t0 + 10)
    led.close_interval(i, t=t0 + 40)
    i = led.open_interval("r0", "idle", t=t0 + 40)
    led.close_interval(i, t=t0 + 100)
    led.open_interval("r1", "episode", t=t0 + 50)  # still open: runs to the window's end
    per = utilisation(led.intervals(t0, t0 + 100), t0, t0 + 100, ["r0", "r1", "r2"])
    assert per == pytest.approx({"r0": 0.4, "r1": 0.5, "r2": 0.0})
    led.add_episode({"id": "e", "robot_id": "r0", "status": "done", "wall_end": t0 + 40})
    u = fleet_usage(led, t0, t0 + 100, ["r0", "r1", "r2"])
    assert u.mru == pytest.approx(0.3) and u.episodes == 1
    assert led.close_open_intervals(t=t0 + 100) == 1
    with pytest.raises(ValueError):
        led.query("DELETE FROM episodes")
    with pytest.raises(ValueError):
        led.add_episode({"id": "x", "robot_id": "r0", "status": "done", "bogus": 1})


def test_goals_round_trip(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    led.add_goal("g1", "rollout", "a0", {"name": "heuristic"}, "pusht", 10)
    led.finish_goal("g1", "succeeded", {"success_rate": 0.9})
    g = led.goal("g1")
    assert g["status"] == "succeeded" and g["requested"] == 10 and g["finished"] >= g["created"]
    assert time.time() - g["created"] < 60
    assert os.path.exists(tmp_path / "l.sqlite-wal") or os.path.exists(tmp_path / "l.sqlite")


def test_robot_seconds_per_run_and_agent(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    for run, agent, s in (("r", "a0", 10.0), ("r", "a0", 2.5), ("r", "a1", 4.0), ("x", "a0", 99)):
        led.add_agent_step({"run_id": run, "agent_id": agent, "branch": agent,
                            "outcome": "kept", "robot_seconds": s})  # fmt: skip
    assert led.robot_seconds("r") == pytest.approx(16.5)
    assert led.robot_seconds("r", "a0") == pytest.approx(12.5)
    assert led.robot_seconds("nope") == 0.0
