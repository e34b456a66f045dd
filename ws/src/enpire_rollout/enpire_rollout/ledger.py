"""The experiment ledger: every goal, episode, robot busy/idle interval (and, for E, training
run and agent step) is a row in one SQLite database in WAL mode.

Each write commits at once, so a crash of any node loses no finished row; several processes
(rollout, train, evolve nodes) may open the same file. MRU, throughput and MTU are computed from
these rows (:mod:`enpire_rollout.metrics`), never from assumptions.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS goals (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, agent_id TEXT, policy TEXT, task TEXT,
    requested INTEGER, status TEXT NOT NULL, created REAL NOT NULL, finished REAL,
    result TEXT
);
CREATE TABLE IF NOT EXISTS episodes (
    id TEXT PRIMARY KEY, goal_id TEXT, agent_id TEXT, robot_id TEXT NOT NULL, policy TEXT,
    task TEXT, seed INTEGER, status TEXT NOT NULL, success INTEGER NOT NULL DEFAULT 0,
    steps INTEGER, robot_seconds REAL, reset_seconds REAL, wall_start REAL, wall_end REAL,
    dataset TEXT, dataset_index INTEGER, mcap TEXT, error TEXT, background INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS episodes_goal ON episodes(goal_id);
CREATE INDEX IF NOT EXISTS episodes_end ON episodes(wall_end, status);
CREATE TABLE IF NOT EXISTS robot_intervals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, robot_id TEXT NOT NULL, state TEXT NOT NULL,
    goal_id TEXT, episode_id TEXT, t_start REAL NOT NULL, t_end REAL
);
CREATE INDEX IF NOT EXISTS intervals_robot ON robot_intervals(robot_id, t_start);
CREATE INDEX IF NOT EXISTS intervals_end ON robot_intervals(t_end);
CREATE TABLE IF NOT EXISTS trainings (
    id TEXT PRIMARY KEY, agent_id TEXT, recipe TEXT, policy TEXT, artifact TEXT,
    status TEXT, metrics TEXT, wall_start REAL, wall_end REAL
);
CREATE TABLE IF NOT EXISTS agent_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, branch TEXT, commit_sha TEXT,
    parent_sha TEXT, hypothesis TEXT, outcome TEXT, success_rate REAL, prompt_tokens INTEGER,
    completion_tokens INTEGER, wall_start REAL, wall_end REAL, kept INTEGER
);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, agent_id TEXT NOT NULL, model TEXT,
    t_start REAL NOT NULL, t_end REAL, prompt_tokens INTEGER DEFAULT 0,
    completion_tokens INTEGER DEFAULT 0, ok INTEGER NOT NULL, error TEXT
);
CREATE TABLE IF NOT EXISTS tool_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT, tool TEXT NOT NULL,
    t_start REAL NOT NULL, duration REAL, outcome TEXT NOT NULL, detail TEXT
);
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, run_id TEXT, agent_id TEXT NOT NULL, kind TEXT NOT NULL,
    policy TEXT NOT NULL, commit_sha TEXT, episodes INTEGER NOT NULL, seed INTEGER,
    priority INTEGER DEFAULT 0, status TEXT NOT NULL, note TEXT, submitted REAL NOT NULL,
    started REAL, finished REAL, server TEXT, goal_id TEXT, episodes_done INTEGER DEFAULT 0,
    successes INTEGER, success_rate REAL, result TEXT, error TEXT
);
CREATE INDEX IF NOT EXISTS experiments_status ON experiments(status, priority);
CREATE TABLE IF NOT EXISTS evolve_runs (
    id TEXT PRIMARY KEY, created REAL NOT NULL, config TEXT, status TEXT NOT NULL,
    wall_used REAL DEFAULT 0, finished REAL, result TEXT
);
"""
# columns added after the first release: (table, column, type); old ledgers get them on open
MIGRATIONS = (
    ("agent_steps", "run_id", "TEXT"),
    ("agent_steps", "parent_rate", "REAL"),
    ("agent_steps", "episodes", "INTEGER"),
    ("agent_steps", "successes", "INTEGER"),
    ("agent_steps", "robot_seconds", "REAL"),
    ("agent_steps", "details", "TEXT"),
    ("llm_calls", "cached_tokens", "INTEGER DEFAULT 0"),  # of prompt_tokens, from a cache
)

BUSY_STATES = ("reset", "episode")  # robot time spent on experiments


def _retry_locked(fn, timeout: float = 30.0):
    """Call ``fn`` until SQLite stops answering "database is locked" (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class Ledger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        _retry_locked(self._create)

    def _create(self) -> None:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")  # one process creates or migrates at a time
        try:
            for stmt in filter(str.strip, SCHEMA.split(";")):
                c.execute(stmt)
            for table, column, kind in MIGRATIONS:
                have = {r["name"] for r in c.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            # switching to WAL needs a moment alone with the file: a new ledger opened by
            # several processes at once may see "database is locked" here
            _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
        return conn

    def _exec(self, sql: str, args=()) -> sqlite3.Cursor:
        return self._conn().execute(sql, args)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- goals --------------------------------------------------------------------------
    def add_goal(
        self,
        goal_id: str,
        kind: str,
        agent_id: str = "",
        policy: dict | None = None,
        task: str = "",
        requested: int = 0,
    ) -> None:
        self._exec(
            "INSERT OR IGNORE INTO goals (id, kind, agent_id, policy, task, requested, status,"
            " created) VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
            (goal_id, kind, agent_id, json.dumps(policy or {}), task, requested, time.time()),
        )

    def abort_running_goals(self, kind: str, reason: str) -> list[str]:
        """Close the goals of ``kind`` left ``running`` by a node that died (status
        ``aborted``, the reason in the result); returns their ids. Called by a node at start."""
        ids = [
            r["id"]
            for r in self._exec(
                "SELECT id FROM goals WHERE kind = ? AND status = 'running'", (kind,)
            )
        ]
        for goal_id in ids:
            self.finish_goal(goal_id, "aborted", {"error_msg": reason})
        return ids

    def finish_goal(self, goal_id: str, status: str, result: dict | None = None) -> None:
        self._exec(
            "UPDATE goals SET status = ?, finished = ?, result = ? WHERE id = ?",
            (status, time.time(), json.dumps(result or {}, default=str), goal_id),
        )

    def goal(self, goal_id: str) -> dict | None:
        rows = self._read("SELECT * FROM goals WHERE id = ?", (goal_id,))
        return rows[0] if rows else None

    # --- episodes -----------------------------------------------------------------------
    EPISODE_FIELDS = (
        "id",
        "goal_id",
        "agent_id",
        "robot_id",
        "policy",
        "task",
        "seed",
        "status",
        "success",
        "steps",
        "robot_seconds",
        "reset_seconds",
        "wall_start",
        "wall_end",
        "dataset",
        "dataset_index",
        "mcap",
        "error",
        "background",
    )

    def add_episode(self, row: dict) -> None:
        unknown = set(row) - set(self.EPISODE_FIELDS)
        if unknown:
            raise ValueError(f"unknown episode fields {sorted(unknown)}")
        self._insert("INSERT OR REPLACE", "episodes", row)

    def episodes(self, goal_id: str | None = None, agent_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM episodes", []
        cond = []
        if goal_id is not None:
            cond.append("goal_id = ?")
            args.append(goal_id)
        if agent_id is not None:
            cond.append("agent_id = ?")
            args.append(agent_id)
        if cond:
            sql += " WHERE " + " AND ".join(cond)
        return self._read(sql + " ORDER BY wall_end", args)

    # --- robot intervals ----------------------------------------------------------------
    def open_interval(
        self,
        robot_id: str,
        state: str,
        goal_id: str = "",
        episode_id: str = "",
        t: float | None = None,
    ) -> int:
        cur = self._exec(
            "INSERT INTO robot_intervals (robot_id, state, goal_id, episode_id, t_start)"
            " VALUES (?, ?, ?, ?, ?)",
            (robot_id, state, goal_id, episode_id, time.time() if t is None else t),
        )
        return int(cur.lastrowid)

    def close_interval(self, interval_id: int, t: float | None = None) -> None:
        self._exec(
            "UPDATE robot_intervals SET t_end = ? WHERE id = ? AND t_end IS NULL",
            (time.time() if t is None else t, interval_id),
        )

    def close_open_intervals(self, t: float | None = None) -> int:
        """After a crash: end every interval left open (at ``t``, default now)."""
        cur = self._exec(
            "UPDATE robot_intervals SET t_end = ? WHERE t_end IS NULL",
            (time.time() if t is None else t,),
        )
        return cur.rowcount

    def intervals(self, since: float = 0.0, until: float | None = None) -> list[dict]:
        until = time.time() if until is None else until
        return self._read(
            "SELECT * FROM robot_intervals WHERE t_start < ? AND (t_end IS NULL OR t_end > ?)"
            " ORDER BY t_start",
            (until, since),
        )

    def intervals_from(self, first_id: int, since: float) -> list[dict]:
        """The intervals from id ``first_id`` on that are open or ended after ``since``, in
        the order they began (ids grow as intervals are opened)."""
        return self._read(
            "SELECT * FROM robot_intervals WHERE id >= ? AND (t_end IS NULL OR t_end > ?)"
            " ORDER BY id",
            (first_id, since),
        )

    def intervals_by_id(self, ids: list[int]) -> list[dict]:
        marks = ", ".join("?" * len(ids))
        return self._read(f"SELECT * FROM robot_intervals WHERE id IN ({marks})", tuple(ids))

    # --- E: trainings and agent steps ---------------------------------------------------
    def add_training(self, row: dict) -> None:
        self._insert("INSERT OR REPLACE", "trainings", row)

    def add_agent_step(self, row: dict) -> int:
        return self._insert("INSERT", "agent_steps", row)

    def add_agent_failed(
        self, run_id: str, agent_id: str, why: str, t0: float, details: dict
    ) -> int:
        """An ``agent_failed`` step: the agent stopped for good (``why``), so the morning report
        can say so."""
        return self.add_agent_step({
            "run_id": run_id, "agent_id": agent_id, "branch": agent_id, "prompt_tokens": 0,
            "completion_tokens": 0, "commit_sha": "", "parent_sha": "",
            "outcome": "agent_failed", "hypothesis": f"the agent stopped: {why}"[:500], "kept": 0,
            "wall_start": t0, "wall_end": time.time(), "details": details,
        })  # fmt: skip

    def agent_steps(self, run_id: str, agent_id: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM agent_steps WHERE run_id = ?", [run_id]
        if agent_id is not None:
            sql += " AND agent_id = ?"
            args.append(agent_id)
        return self._read(sql + " ORDER BY id", args)

    def robot_seconds(self, run_id: str, agent_id: str | None = None) -> float:
        """Robot-seconds a run's agent steps spent (one agent's, or all)."""
        sql = "SELECT COALESCE(SUM(robot_seconds), 0) AS s FROM agent_steps WHERE run_id = ?"
        args = [run_id]
        if agent_id is not None:
            sql += " AND agent_id = ?"
            args.append(agent_id)
        return float(self._read(sql, args)[0]["s"])

    def add_tool_call(self, row: dict) -> int:
        """One call of the lab's tools (MCP): agent, tool, duration, outcome."""
        return self._insert("INSERT", "tool_calls", row)

    def add_llm_call(self, row: dict) -> int:
        return self._insert("INSERT", "llm_calls", row)

    def tokens(self, run_id: str, agent_id: str | None = None) -> tuple[int, int]:
        """(prompt, completion) tokens of a run's LLM calls (one agent's, or all)."""
        sql = (
            "SELECT COALESCE(SUM(prompt_tokens), 0) AS p, COALESCE(SUM(completion_tokens), 0)"
            " AS c FROM llm_calls WHERE run_id = ?"
        )
        args = [run_id]
        if agent_id is not None:
            sql += " AND agent_id = ?"
            args.append(agent_id)
        r = self._read(sql, args)[0]
        return int(r["p"]), int(r["c"])

    # --- the experiment queue (enpire_rollout.experiments) --------------------------------
    def add_experiment(self, row: dict) -> None:
        self._insert("INSERT", "experiments", row)

    def update_experiment(self, exp_id: str, **fields) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)  # column names are the caller's
        values = [
            json.dumps(v, default=str) if isinstance(v, dict) else v for v in fields.values()
        ]
        self._exec(f"UPDATE experiments SET {sets} WHERE id = ?", (*values, exp_id))

    def claim_experiment(self, exp_id: str, server: str) -> bool:
        """Take a queued experiment for ``server``'s fleet; False if another took it."""
        cur = self._exec(
            "UPDATE experiments SET status = 'running', server = ?, started = ? WHERE id = ?"
            " AND status = 'queued'",
            (server, time.time(), exp_id),
        )
        return cur.rowcount == 1

    def requeue_experiments(self, server: str) -> int:
        """Experiments a fleet left running when it died go back to the queue."""
        cur = self._exec(
            "UPDATE experiments SET status = 'queued', server = NULL, goal_id = NULL,"
            " episodes_done = 0 WHERE status = 'running' AND server = ?",
            (server,),
        )
        return cur.rowcount

    # --- E: runs ------------------------------------------------------------------------
    def open_run(self, run_id: str, config: dict) -> dict:
        """The run's row, created on first use (a resumed run keeps its row)."""
        self._exec(
            "INSERT OR IGNORE INTO evolve_runs (id, created, config, status) VALUES (?, ?, ?,"
            " 'running')",
            (run_id, time.time(), json.dumps(config, default=str)),
        )
        self._exec("UPDATE evolve_runs SET status = 'running' WHERE id = ?", (run_id,))
        return self.run(run_id)

    def run(self, run_id: str) -> dict | None:
        rows = self._read("SELECT * FROM evolve_runs WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    def update_run(self, run_id: str, **fields) -> None:
        allowed = {"status", "wall_used", "finished", "result"}
        if set(fields) - allowed:
            raise ValueError(f"unknown run fields {sorted(set(fields) - allowed)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        values = [
            json.dumps(v, default=str) if isinstance(v, dict) else v for v in fields.values()
        ]
        self._exec(f"UPDATE evolve_runs SET {sets} WHERE id = ?", (*values, run_id))

    def _insert(self, verb: str, table: str, row: dict) -> int:
        """One row from a dict (column names are the caller's, never user input); dict values
        are stored as JSON."""
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        values = tuple(json.dumps(v) if isinstance(v, dict) else v for v in row.values())
        cur = self._exec(f"{verb} INTO {table} ({cols}) VALUES ({marks})", values)
        return int(cur.lastrowid)

    def _read(self, sql: str, args=()) -> list[dict]:
        """The writer's own reads go through the read-only connection too (no limits)."""
        return self.query(sql, args, max_rows=1 << 30, timeout=600.0)

    def query(
        self, sql: str, args=(), max_rows: int = 100_000, timeout: float = 30.0
    ) -> list[dict]:
        """Read-only SQL for reports and tools, through a read-only connection
        (:class:`LedgerReader`), never the writer's."""
        reader = getattr(self._local, "reader", None)
        if reader is None:
            reader = self._local.reader = LedgerReader(self.path)
        return reader.query(sql, args, max_rows=max_rows, timeout=timeout)


class QueryError(ValueError):
    """A ledger query that was refused (not read-only), too slow or too large."""


_READ_PRAGMAS = {
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "foreign_key_list",
}


def _authorize(action, arg1, arg2, dbname, source) -> int:
    if action in (
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_RECURSIVE,
    ):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and arg1 in _READ_PRAGMAS:  # reads, whatever the arg
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class LedgerReader:
    """A read-only view of the ledger for everyone but its writer: agents, reports, tools.

    Three locks, each enough on its own: the file is opened ``mode=ro``, the connection is
    ``PRAGMA query_only``, and an authorizer allows reading only (no INSERT/UPDATE/DELETE,
    including inside ``WITH``, no ATTACH, no writing PRAGMA, no schema change). One statement per
    call (stacked statements are refused by sqlite3 itself); each query has a row and a time
    limit.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no ledger at {self.path}")
        self.conn = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, timeout=30.0, check_same_thread=False
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA query_only = ON")
        self.conn.set_authorizer(_authorize)
        self._lock = threading.Lock()

    def query(self, sql: str, args=(), max_rows: int = 1000, timeout: float = 5.0) -> list[dict]:
        """Rows of one read-only statement; :class:`QueryError` when it is refused, returns
        more than ``max_rows`` rows or runs longer than ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self.conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
            try:
                cur = self.conn.execute(sql, args)
                rows = cur.fetchmany(max_rows + 1)
            except sqlite3.DatabaseError as e:
                if "interrupted" in str(e):
                    raise QueryError(f"query stopped after {timeout:g} s") from None
                raise QueryError(f"refused: {e} (the ledger is read-only here)") from None
            except (sqlite3.ProgrammingError, sqlite3.Warning) as e:
                raise QueryError(f"refused: {e}") from None
            finally:
                self.conn.set_progress_handler(None, 0)
        if len(rows) > max_rows:
            raise QueryError(f"more than {max_rows} rows: add a LIMIT or aggregate")
        return [dict(r) for r in rows]

    def close(self) -> None:
        self.conn.close()
