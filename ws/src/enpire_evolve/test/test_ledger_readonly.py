"""Agents, reports and tools read the ledger through a read-only connection: writes hidden in
WITH clauses, ATTACH, writing PRAGMAs and stacked statements are refused through every
agent-facing query path, and the rows stay as they were."""

from __future__ import annotations

import sqlite3
import types

import pytest

from enpire_evolve.agents.llm import LlmAgent
from enpire_evolve.evolution import LlmConfig
from enpire_rollout.ledger import Ledger, LedgerReader, QueryError


def attacks(tmp_path) -> list[str]:
    other = tmp_path / "planted.sqlite"
    return [
        "WITH x AS (SELECT 1) DELETE FROM episodes",
        "WITH x AS (SELECT 1) UPDATE episodes SET success = 1",
        "WITH x AS (SELECT 1) INSERT INTO episodes (id, robot_id, status) VALUES ('e', 'r', 'x')",
        "DELETE FROM episodes",
        f"ATTACH DATABASE '{other}' AS planted",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA query_only = OFF",
        "PRAGMA writable_schema = ON",
        "SELECT 1; DELETE FROM episodes",
        "DROP TABLE episodes",
        "CREATE TABLE planted (x)",
        "VACUUM",
    ]


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(tmp_path / "ledger.sqlite")
    for i in range(5):
        led.add_episode({"id": f"ep{i}", "robot_id": "r0", "status": "done", "success": i % 2})
    yield led
    led.close()


def rows(led: Ledger) -> list[tuple]:
    con = sqlite3.connect(led.path)
    try:
        return con.execute("SELECT id, success, status FROM episodes ORDER BY id").fetchall()
    finally:
        con.close()


def test_ledger_query_refuses_every_write(ledger, tmp_path):
    before = rows(ledger)
    for sql in attacks(tmp_path):
        with pytest.raises(QueryError):
            ledger.query(sql)
    assert rows(ledger) == before
    assert not (tmp_path / "planted.sqlite").exists()
    assert ledger.query("SELECT count(*) AS n FROM episodes") == [{"n": 5}]
    assert ledger.query("PRAGMA table_info(episodes)")  # schema reads are fine
    # the writer itself still writes
    ledger.add_episode({"id": "ep9", "robot_id": "r0", "status": "done"})
    assert len(rows(ledger)) == 6


def test_reader_limits_rows_and_time(ledger):
    r = LedgerReader(ledger.path)
    with pytest.raises(QueryError, match="more than 3 rows"):
        r.query("SELECT * FROM episodes", max_rows=3)
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    with pytest.raises(QueryError, match="stopped after"):
        r.query(endless, timeout=0.5)
    assert len(r.query("SELECT * FROM episodes")) == 5


def test_llm_agents_query_tool_refuses_writes(ledger, tmp_path):
    agent = LlmAgent("agent_0", LlmConfig(base_url="http://127.0.0.1:9/v1"), ledger, "run")
    ctx = types.SimpleNamespace(ledger=ledger, tree=None)
    before = rows(ledger)
    for sql in attacks(tmp_path):
        out = agent._run_tool(ctx, "query_ledger", {"sql": sql})
        assert out.startswith("query refused:"), (sql, out)
    assert rows(ledger) == before
    out = agent._run_tool(ctx, "query_ledger", {"sql": "SELECT id FROM episodes LIMIT 2"})
    assert '"ep0"' in out
