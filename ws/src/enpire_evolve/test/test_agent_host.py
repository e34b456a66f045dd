"""CLI agents hosted for real: a fake coding-agent program (``fake_cli_agent.py``, a real
executable) is launched exactly as Claude Code / Codex are (their flags, installed on PATH as
``claude`` / ``codex``) or through the command backend; it talks to ``enpire mcp`` over stdio with
the official client, edits and commits policy code, submits experiments that an in-process
fleet runs from the ledger's queue, reads failure frames, adopts another agent's branch. The
host takes its tokens from its JSON events, refuses protected commits, restarts crashed and
hung agents (resuming their sessions) and stops them at their budgets."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from enpire_evolve.agent_host import AgentHost, CliAgentConfig, EventReader, HostConfig
from enpire_evolve.mcp_server import local_fleet
from enpire_evolve.repo import git

FAKE = Path(__file__).with_name("fake_cli_agent.py")


def _shim(bin_dir: Path, name: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    p = bin_dir / name
    p.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" --flavor {name} "$@"\n')
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


def _log(state: Path, agent: str) -> list[dict]:
    path = state / f"{agent}.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def lab(tmp_path):
    """(env, state dir, data dir, make_host): agents' PATH has the fake claude and codex."""
    bin_dir, state, data = tmp_path / "bin", tmp_path / "state", tmp_path / "data"
    for name in ("claude", "codex"):
        _shim(bin_dir, name)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_AGENT_STATE=str(state),
        FAKE_AGENT_PLAN=str(tmp_path / "plan.json"),
        FAKE_AGENT_EPISODES="3",
    )
    fleets = []

    def make_host(plan: dict, cells: int = 2, **kw) -> AgentHost:
        (tmp_path / "plan.json").write_text(json.dumps(plan))
        state.mkdir(exist_ok=True)
        kw["cli"].writable.append(str(state))  # the fake agent's notes, read by the tests
        host = AgentHost(HostConfig(**kw), data, log=print, env=env)
        fleets.append(local_fleet(host.ledger, data, cells, 40, 0.0, video_size=32))
        return host

    yield env, state, data, make_host
    for service, feeder in fleets:
        feeder.close()
        service.close()


def test_claude_agents_work_the_lab_and_survive_crashes_and_hangs(lab):
    _env, state, _data, make_host = lab
    # hang_timeout: long enough for a loaded machine's quiet spells (agent_1's adopt polls the
    # leaderboard silently until agent_0's first result is in), short for the hung turn
    plan = {"agent_0": ["work", "crash", "work"], "agent_1": ["protected", "hang", "adopt"]}
    cli = CliAgentConfig(backend="claude", hang_timeout=15.0, backoff=0.2, max_turns=2)
    host = make_host(plan, run_id="claude-run", agents=2, cli=cli, wall_budget=240)
    out = host.run(poll=0.2)
    assert out["reason"] == "agents finished", out
    a0, a1 = _log(state, "agent_0"), _log(state, "agent_1")
    acts = [e["action"] for e in a0]
    # agent_0: task -> edit + commit -> submit -> wait -> failure frames -> leaderboard
    for step in ("task", "submit", "wait", "failure_cases", "leaderboard"):
        assert step in acts, acts
    sub = next(e for e in a0 if e["action"] == "submit")
    assert sub["answer"]["status"] == "queued" and sub["answer"]["commit"] == sub["commit"]
    assert next(e for e in a0 if e["action"] == "wait")["status"] == "done"
    frames = next(e for e in a0 if e["action"] == "failure_cases")
    assert frames["images"] >= 1 and set(frames["mime"]) == {"image/png"}
    # the crash was restarted with the same session, resumed
    starts = [e for e in a0 if e["action"] == "start"]
    assert [e["plan"] for e in starts] == ["work", "crash", "work"]
    assert starts[2]["resumed"] and starts[2]["session"] == starts[0]["session"]
    assert host.status["agent_0"].restarts == 1 and host.status["agent_0"].turns == 2
    # agent_1: its protected commit was refused, with the reason
    refused = next(e for e in a1 if e["action"] == "protected")["answer"]
    assert "protected paths" in refused["error"] and "tests/" in refused["error"]
    # the hung turn was killed and restarted; then it adopted agent_0's branch
    assert "hang" in [e["action"] for e in a1]
    assert host.status["agent_1"].restarts == 1
    adopted = next(e for e in a1 if e["action"] == "adopt")
    assert adopted["agent"] == "agent_0"
    assert host.shared.branches()["agent_1"] == adopted["commit"]
    # tokens come from the stream-json events: two work runs' results (3 messages each) and
    # the crashed run's one message (it died before its result)
    rows = host.ledger.query(
        "SELECT agent_id, SUM(prompt_tokens) AS p, SUM(cached_tokens) AS c,"
        " SUM(completion_tokens) AS o FROM llm_calls WHERE run_id = 'claude-run' GROUP BY"
        " agent_id ORDER BY agent_id"
    )
    assert (rows[0]["p"], rows[0]["c"], rows[0]["o"]) == (2000 * 7, 800 * 7, 150 * 7)
    assert rows[1]["p"] == 2000 * 2  # protected (1 message) + adopt (1); the hang said nothing
    calls = host.ledger.query("SELECT DISTINCT agent_id, tool FROM tool_calls")
    assert {("agent_1", "submit_experiment"), ("agent_0", "wait_experiment")} <= {
        (r["agent_id"], r["tool"]) for r in calls
    }
    # the instructions are in each worktree, out of git
    tree = host.run_dir / "agents" / "agent_0"
    assert "submit_experiment" in (tree / "AGENTS.md").read_text()
    assert (tree / "CLAUDE.md").exists()
    assert "AGENTS.md" not in git(tree, "ls-files")


def test_codex_and_command_agents_stop_at_their_budgets(lab, tmp_path):
    _env, state, _data, make_host = lab
    cli = CliAgentConfig(backend="codex", backoff=0.2, isolation="none")  # stdio MCP
    host = make_host(
        {"*": ["crash", "work"]},
        run_id="codex-run",
        agents=1,
        cli=cli,
        agent_token_budget=2500,
        wall_budget=120,
    )
    out = host.run(poll=0.2)
    st = host.status["agent_0"]
    assert st.state == "done" and "token budget" in st.message, (st, out)
    assert st.turns == 1 and st.restarts == 1 and st.session  # codex's thread id
    starts = [e for e in _log(state, "agent_0") if e["action"] == "start"]
    assert starts[1]["resumed"] and starts[1]["session"] == starts[0]["session"] == st.session
    p, c = host.ledger.tokens("codex-run", "agent_0")
    assert (p, c) == (2000 * 3, 150 * 3)
    argv = json.loads((host.run_dir / "logs" / "agent_0.events.jsonl").read_text().splitlines()[0])
    assert argv["argv"][:3] == ["codex", "exec", "--json"]

    cmd = [
        sys.executable,
        str(FAKE),
        "--flavor",
        "command",
        "--mcp-config",
        "{mcp_config}",
        "--worktree",
        "{worktree}",
        "--session",
        "{session}",
    ]
    cli = CliAgentConfig(backend="command", command=cmd, max_turns=1, isolation="none")
    host = make_host({"*": ["work"]}, run_id="command-run", agents=1, cli=cli, wall_budget=120)
    host.run(poll=0.2)
    assert host.status["agent_0"].turns == 1
    log = [e["action"] for e in _log(state, "agent_0")]
    assert log.count("wait") == 2  # the codex run's and the command's
    assert host.ledger.tokens("command-run") == (0, 0)  # its output is not an event stream
    # the morning report counts the queue's experiments of CLI agents
    from enpire_evolve.report import write_report

    paths = write_report(host.ledger, "command-run", tmp_path / "reports")
    m = paths["metrics"]
    assert Path(paths["html"]).exists()
    assert m["experiments"] == 1 and m["robot_seconds"] > 0, m


def test_a_confined_agent_cannot_write_the_ledger_or_other_trees(lab):
    from enpire_policy.isolation import probe

    if not probe().landlock_abi:
        pytest.skip("no Landlock on this kernel")
    env, state, data, make_host = lab
    cli = CliAgentConfig(backend="claude", max_turns=1, isolation="landlock")
    plan = {"agent_0": ["escape"], "agent_1": ["protected"]}
    host = make_host(plan, run_id="jail-run", agents=2, cli=cli, wall_budget=120)
    other = host.run_dir / "agents" / "agent_1" / "policy" / "pusht_policy.py"
    other_mcp = host.run_dir / "host" / "agent_1" / "mcp.json"
    env.update(
        FAKE_AGENT_LEDGER=str(data / "ledger.sqlite"),
        FAKE_AGENT_OTHER=str(other),
        FAKE_AGENT_OTHER_MCP=str(other_mcp),
    )
    host.env.update(env)
    host.run(poll=0.2)
    tried = next(e for e in _log(state, "agent_0") if e["action"] == "escape")["tried"]
    assert tried["ledger"].startswith("PermissionError"), tried
    assert tried["other_tree"].startswith("PermissionError"), tried
    assert tried["worktree"] == "written"
    # nor read another agent's token where it lives: the environments of the neighbour's CLI
    # and MCP server (their /proc entries are outside the agent's pid namespace)
    assert tried["foreign_tokens"] == 0, tried
    # nor use another agent's tools with what it can find in files: the neighbour's server
    # wants the neighbour's token, which its config names but does not hold
    assert tried["other_mcp_no_token"].startswith("refused"), tried
    assert tried["other_mcp_own_token"].startswith("refused"), tried
    assert "${ENPIRE_MCP_TOKEN}" in other_mcp.read_text()
    assert b"forged" not in (data / "ledger.sqlite").read_bytes()
    assert "forged" not in other.read_text()
    # the lab's tools still answer: over HTTP, from a server outside the confinement
    calls = host.ledger.query("SELECT agent_id, tool FROM tool_calls")
    assert {(r["agent_id"], r["tool"]) for r in calls} == {
        ("agent_0", "task"),
        ("agent_1", "submit_experiment"),
    }
    config = json.loads((host.run_dir / "host" / "agent_0" / "mcp.json").read_text())
    assert config["mcpServers"]["enpire"]["url"].startswith("http://127.0.0.1:")


def test_event_readers_take_usage_from_each_format():
    r = EventReader("claude")
    msg = {
        "id": "m1",
        "model": "claude-x",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 3},
    }
    for ev in (
        {"type": "system", "subtype": "init", "session_id": "s1"},
        {"type": "assistant", "message": msg},
        {"type": "assistant", "message": msg},
    ):
        r.feed(json.dumps(ev))
    r.feed("not json")
    assert r.session == "s1" and r.take() == []
    r.close()  # died before its result: the one message counts once
    (u,) = r.take()
    assert (u.input, u.cached, u.output, u.model) == (15, 5, 3, "claude-x")
    r = EventReader("claude")
    r.feed(json.dumps({"type": "assistant", "message": msg}))
    r.feed(
        json.dumps(
            {
                "type": "result",
                "usage": {"input_tokens": 30, "output_tokens": 9},
                "session_id": "s2",
            }
        )
    )
    r.close()
    assert [(u.input, u.output) for u in r.take()] == [(30, 9)]  # the total, not both
    r = EventReader("codex")
    r.feed(json.dumps({"type": "thread.started", "thread_id": "t1"}))
    r.feed(
        json.dumps(
            {
                "type": "turn.completed",
                "usage": {"input_tokens": 7, "cached_input_tokens": 2, "output_tokens": 1},
            }
        )
    )
    assert r.session == "t1" and [(u.input, u.cached, u.output) for u in r.take()] == [(7, 2, 1)]


def test_a_missing_program_fails_the_agent_with_the_reason(tmp_path):
    cli = CliAgentConfig(
        backend="command", command=[str(tmp_path / "no-such-agent")], isolation="none"
    )
    host = AgentHost(
        HostConfig(run_id="missing", agents=1, cli=cli, wall_budget=60),
        tmp_path / "data",
        log=print,
    )
    out = host.run(poll=0.2)
    st = host.status["agent_0"]
    assert st.state == "failed" and "cannot start" in st.message and st.restarts == 0
    assert out["reason"] == "agents finished"
    # the morning report is built from the ledger: the row says why the agent stopped
    rows = host.ledger.agent_steps("missing", "agent_0")
    assert [r["outcome"] for r in rows] == ["agent_failed"]
    assert "cannot start" in rows[0]["hypothesis"]


def test_an_agent_that_keeps_failing_is_given_up_and_its_experiments_still_count(tmp_path):
    from enpire_evolve.report import queue_experiments

    agent = tmp_path / "crashing-agent"
    agent.write_text("#!/bin/sh\nexit 3\n")
    agent.chmod(0o755)
    cli = CliAgentConfig(
        backend="command", command=[str(agent)], isolation="none", max_restarts=1, backoff=0.1
    )
    host = AgentHost(
        HostConfig(run_id="crash", agents=1, cli=cli, wall_budget=60), tmp_path / "data", log=print
    )
    # an experiment it finished before it broke (as the queue records one)
    host.ledger.add_experiment({
        "id": "e1", "run_id": "crash", "agent_id": "agent_0", "kind": "screen", "policy": "{}",
        "commit_sha": "abc", "episodes": 10, "status": "done", "submitted": 0.0,
        "finished": 1.0, "episodes_done": 10, "successes": 7, "success_rate": 0.7,
    })  # fmt: skip
    host.run(poll=0.2)
    st = host.status["agent_0"]
    assert st.state == "failed" and "exited with 3; 1 restarts in a row" in st.message
    rows = host.ledger.agent_steps("crash", "agent_0")
    assert [r["outcome"] for r in rows] == ["agent_failed"]
    assert [e["commit_sha"] for e in queue_experiments(host.ledger, "crash")] == ["abc"]
