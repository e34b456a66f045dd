"""The fault drill: start a fleet with ``enpire launch``, SIGKILL one node at a time while it
works, and measure what a user would: episodes lost, the goal's outcome, how long the waiting
client took to notice, and how long until the node served again.

    with Fleet(data_dir, robots=2, time_scale=8) as fleet:
        row = drill_sim_cell(fleet, context)

Used by ``test_fault_drill.py`` and ``bench/fault_drill.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from enpire_env.goal_liveness import ServerGoneError
from enpire_env.testing import call_action
from enpire_rollout.ledger import Ledger

READY = {
    "/env_node": "reset server ready",
    "/rollout_node": "rollout server ready",
    "/train_node": "train server ready",
}


@dataclass
class DrillRow:
    node: str
    episodes_lost: int = 0
    outcome: str = ""
    client_noticed_s: float | None = None  # the waiting client's ServerGoneError
    recovery_s: float | None = None  # kill -> the restarted node logs that it is ready
    notes: list[str] = field(default_factory=list)


class Fleet:
    """``enpire launch`` in its own session, its output collected line by line."""

    def __init__(self, data_dir: str | Path, robots: int = 2, time_scale: float = 8.0):
        self.data_dir = Path(data_dir)
        self.args = [
            "--robots",
            str(robots),
            "--time-scale",
            str(time_scale),
            "--data-dir",
            str(self.data_dir),
        ]
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Fleet:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "enpire_bringup.enpire", "launch", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        for fqn in READY:
            self.wait_ready(fqn, since=0.0, timeout=120)
        self.ledger = Ledger(self.data_dir / "ledger.sqlite")
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def __exit__(self, *exc) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def output(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.lines)

    def pid(self, fqn: str) -> int:
        """The pid of the node's current process (the launcher's latest 'started' line)."""
        with self._lock:
            pids = [
                int(m.group(1))
                for _, line in self.lines
                if (m := re.search(rf"started {re.escape(fqn)} \(pid (\d+)\)", line))
            ]
        if not pids:
            raise RuntimeError(f"{fqn} was never started:\n{self.output()[-3000:]}")
        return pids[-1]

    def wait_for(self, pattern: str, since: float, timeout: float) -> float:
        """When a line matching ``pattern`` appeared after ``since`` (monotonic)."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            with self._lock:
                for t, line in self.lines:
                    if t >= since and rx.search(line):
                        return t
            if self.proc.poll() is not None:
                raise RuntimeError(f"the launch ended:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"no '{pattern}' within {timeout} s:\n{self.output()[-3000:]}")

    def wait_ready(self, fqn: str, since: float, timeout: float = 90) -> float:
        label = re.escape(fqn.lstrip("/"))
        if fqn in READY:
            return self.wait_for(rf"\[{label}\s*\].*{READY[fqn]}", since, timeout)
        return self.wait_for(rf"\[{label}\s*\].*ready", since, timeout)

    def kill(self, fqn: str) -> float:
        os.kill(self.pid(fqn), signal.SIGKILL)
        return time.monotonic()

    def finished_ids(self) -> set[str]:
        return {r["id"] for r in self.ledger.episodes()}


def rollout_goal(n: int, seed: int, robots=()):
    from enpire_msgs.action import Rollout
    from enpire_msgs.msg import PolicyRef

    return Rollout.Goal(
        policy=PolicyRef(name="heuristic"),
        task="pusht",
        num_episodes=n,
        seed=seed,
        agent_id="drill",
        robot_ids=list(robots),
    )


def _in_thread(fn) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def run() -> None:
        try:
            box["calls"] = fn()
        except ServerGoneError as e:
            box["error"], box["t"] = e, time.monotonic()
        except Exception as e:  # noqa: BLE001 - reported in the row
            box["other"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def _wait_rows(fleet: Fleet, sql: str, args=(), timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fleet.ledger.query(sql, args):
            return
        time.sleep(0.1)
    raise TimeoutError(f"never: {sql} {args}")


def _outcome(box: dict) -> str:
    if "calls" in box:
        c = box["calls"][0]
        return (
            f"status {c.status}: {c.result.num_episodes} episodes"
            if hasattr(c.result, "num_episodes")
            else f"status {c.status}"
        )
    if "error" in box:
        return "client failed: server gone"
    return f"client error: {box.get('other')!r}"


def drill_rollout_work(
    fleet: Fleet, context, fqn: str, robot: str = "robot_1", episodes: int = 4, seed: int = 100
) -> DrillRow:
    """Kill ``fqn`` (a sim cell or env_node) while a Rollout goal runs; the goal should still
    finish its count once the node is back."""
    from enpire_msgs.action import Rollout

    row = DrillRow(fqn)
    before = fleet.finished_ids()
    t, box = _in_thread(
        lambda: call_action(
            context, Rollout, "/rollout", [rollout_goal(episodes, seed)], timeout=600
        )
    )
    state = "episode" if "sim_cell" in fqn else "reset"
    _wait_rows(
        fleet,
        "SELECT 1 FROM robot_intervals WHERE robot_id = ? AND state = ? AND t_end IS NULL",
        (robot, state),
    )
    mid = fleet.finished_ids()
    t_kill = fleet.kill(fqn)
    row.recovery_s = fleet.wait_ready(fqn, t_kill) - t_kill
    t.join(timeout=600)
    row.outcome = _outcome(box)
    row.episodes_lost = len(mid - fleet.finished_ids())
    if "calls" in box:
        row.notes.append(f"{len(fleet.finished_ids() - before)} episode rows written")
    if "sim_cell" in fqn:  # the restarted cell rejoins: a goal for it alone runs on it
        (c,) = call_action(
            context, Rollout, "/rollout", [rollout_goal(1, seed + 50, [robot])], timeout=300
        )
        row.notes.append(
            f"{robot} after restart: status {c.status}, {c.result.num_episodes} episode(s)"
        )
    return row


def _kill_and_watch(fleet: Fleet, row: DrillRow, client: threading.Thread, box: dict) -> None:
    """SIGKILL ``row.node``; fill in its recovery time, the client's outcome and how long the
    client took to notice."""
    t_kill = fleet.kill(row.node)
    row.recovery_s = fleet.wait_ready(row.node, t_kill) - t_kill
    client.join(timeout=120)
    row.outcome = _outcome(box)
    if "t" in box:
        row.client_noticed_s = box["t"] - t_kill


def drill_rollout_node(fleet: Fleet, context, episodes: int = 20, seed: int = 300) -> DrillRow:
    """Kill the rollout node mid-goal: the client fails within seconds, nothing finished is
    lost, the goal is closed as aborted, and the restarted node serves the next goal."""
    from enpire_msgs.action import Rollout

    row = DrillRow("/rollout_node")
    before = fleet.finished_ids()
    t, box = _in_thread(
        lambda: call_action(
            context, Rollout, "/rollout", [rollout_goal(episodes, seed)], timeout=600
        )
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(fleet.finished_ids() - before) < 2:
        time.sleep(0.2)
    mid = fleet.finished_ids()
    _kill_and_watch(fleet, row, t, box)
    row.episodes_lost = len(mid - fleet.finished_ids())
    running = fleet.ledger.query("SELECT id FROM goals WHERE status = 'running'")
    row.notes.append(f"{len(running)} goal(s) left running")
    (c,) = call_action(context, Rollout, "/rollout", [rollout_goal(1, seed + 100)], timeout=300)
    row.notes.append(f"next goal: status {c.status}, {c.result.num_episodes} episode(s)")
    return row


def drill_train_node(fleet: Fleet, context) -> DrillRow:
    """Kill the train node mid-training: the client fails within seconds; the restarted node
    trains the next goal."""
    import json

    from enpire_msgs.action import Train
    from enpire_msgs.msg import PolicyRef

    def goal(iterations: int) -> Train.Goal:
        hp = {"iterations": iterations, "population": 2, "episodes": 1, "max_steps": 20}
        return Train.Goal(
            recipe="heuristic_search",
            policy=PolicyRef(name="heuristic"),
            task="pusht",
            hyperparameters=json.dumps(hp),
        )

    row = DrillRow("/train_node")
    t, box = _in_thread(lambda: call_action(context, Train, "/train", [goal(1000)], timeout=600))
    fleet.wait_for(r"\[train_node\s*\].*train goal", time.monotonic() - 60, 60)
    time.sleep(2.0)  # training is under way
    _kill_and_watch(fleet, row, t, box)
    (c,) = call_action(context, Train, "/train", [goal(1)], timeout=300)
    row.notes.append(f"next goal: error_code {c.result.error_code} {c.result.error_msg}".strip())
    return row


def format_rows(rows: list[DrillRow]) -> str:
    out = [
        f"{'node killed (SIGKILL)':<22} {'lost':>4}  {'client noticed':>14}  "
        f"{'recovery':>8}  goal outcome / notes"
    ]
    for r in rows:
        noticed = "-" if r.client_noticed_s is None else f"{r.client_noticed_s:.1f} s"
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        out.append(
            f"{r.node:<22} {r.episodes_lost:>4}  {noticed:>14}  {rec:>8}  "
            f"{r.outcome}; {'; '.join(r.notes)}"
        )
    return "\n".join(out)
