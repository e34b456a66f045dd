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
from enpire_rollout.metrics import fleet_usage, utilisation

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
