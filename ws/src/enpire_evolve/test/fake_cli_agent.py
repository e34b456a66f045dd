#!/usr/bin/env python3
"""A fake coding-agent CLI, for the tests and the MRU bench: a real program that takes Claude
Code's or Codex's headless flags (or the command backend's template), prints their JSON event
stream (session id, token usage) and works the lab through ``enpire mcp`` over stdio with the
official ``mcp`` client, as the real CLIs do. No model: what it does is scripted.

    fake_cli_agent.py --flavor claude -p PROMPT --mcp-config F [--resume S] ...
    fake_cli_agent.py --flavor codex exec [resume] --json -c mcp_servers.enpire.command=.. S P
    fake_cli_agent.py --flavor command --mcp-config F --worktree D [--session S]

Its plan comes from the JSON file ``$FAKE_AGENT_PLAN``: ``{"agent_0": ["work", "crash"], "*":
["work"]}``, one action per run (turn; the last repeats): ``work`` (task, edit, commit, submit,
wait, failure frames, leaderboard, adopt a better branch, publish), ``protected`` (a commit that
touches tests/), ``crash`` (exit 3), ``hang`` (never answers), ``bench`` (think
``$FAKE_AGENT_THINK`` s per decision, keep ``$FAKE_AGENT_K`` experiments in flight, forever).
Everything it did goes to ``$FAKE_AGENT_STATE/<agent>.log`` (JSON lines).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

AGENT = os.environ.get("ENPIRE_AGENT_ID", "agent")
STATE = Path(os.environ.get("FAKE_AGENT_STATE", "."))
USAGE = {"input_tokens": 1200, "cache_read_input_tokens": 800, "output_tokens": 150}
EPISODES = int(os.environ.get("FAKE_AGENT_EPISODES", "4"))


def emit(ev: dict) -> None:
    print(json.dumps(ev), flush=True)


def note(**kw) -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / f"{AGENT}.log").open("a") as f:
        f.write(json.dumps({"t": time.time(), **kw}) + "\n")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


class Stream:
    """The flavour's event stream: a session event, usage per 'model call', a result."""

    def __init__(self, flavor: str, session: str):
        self.flavor, self.session, self.calls = flavor, session, 0
        if flavor == "claude":
            emit({"type": "system", "subtype": "init", "session_id": session})
        elif flavor == "codex":
            emit({"type": "thread.started", "thread_id": session})
            emit({"type": "turn.started"})

    def think(self, text: str) -> None:
        self.calls += 1
        if self.flavor == "claude":
            msg = {
                "id": f"msg_{self.calls}",
                "model": "fake-model",
                "usage": USAGE,
                "content": [{"type": "text", "text": text}],
            }
            emit({"type": "assistant", "message": msg, "session_id": self.session})
        elif self.flavor == "codex":
            item = {"id": f"item_{self.calls}", "type": "agent_message", "text": text}
            emit({"type": "item.completed", "item": item})
        else:
            print(text, flush=True)

    def done(self) -> None:
        n = self.calls
        if self.flavor == "claude":
            total = {k: v * n for k, v in USAGE.items()}
            emit(
                {
                    "type": "result",
                    "subtype": "success",
                    "is_error": False,
                    "usage": total,
                    "session_id": self.session,
                    "num_turns": n,
                }
            )
        elif self.flavor == "codex":
            usage = {
                "input_tokens": 2000 * n,
                "cached_input_tokens": 800 * n,
                "output_tokens": 150 * n,
            }
            emit({"type": "turn.completed", "usage": usage})
        note(action="usage", calls=n, flavor=self.flavor)


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flavor", choices=("claude", "codex", "command"), required=True)
    flavor, rest = ap.parse_known_args(argv)
    out = argparse.Namespace(flavor=flavor.flavor, session="", mcp=None, worktree=os.getcwd())
    if flavor.flavor == "claude":
        p = argparse.ArgumentParser()
        p.add_argument("-p", dest="prompt", required=True)
        p.add_argument("--mcp-config", required=True)
        p.add_argument("--resume", default="")
        p.add_argument("--output-format", choices=("stream-json",), required=True)
        p.add_argument("--verbose", action="store_true", required=True)
        for flag in ("--allowedTools", "--permission-mode", "--model"):
            p.add_argument(flag)
        p.add_argument("--strict-mcp-config", action="store_true")
        a = p.parse_args(rest)
        out.session = a.resume
        out.mcp = json.loads(Path(a.mcp_config).read_text())["mcpServers"]["enpire"]
    elif flavor.flavor == "codex":
        if rest[:1] != ["exec"]:
            sys.exit("codex: only `exec` is faked")
        rest = rest[1:]
        resume = rest[:1] == ["resume"]
        rest = rest[1:] if resume else rest
        p = argparse.ArgumentParser()
        p.add_argument("--json", action="store_true", required=True)
        if not resume:  # `codex exec resume` has no --sandbox (the bench checks the real one)
            p.add_argument("--sandbox", choices=("workspace-write",), required=True)
        p.add_argument("--skip-git-repo-check", action="store_true")
        p.add_argument("-c", action="append", default=[])
        p.add_argument("-m")
        p.add_argument("-C", dest="cd")
        p.add_argument("words", nargs="+")
        a = p.parse_args(rest)
        conf = dict(c.split("=", 1) for c in a.c)
        if "mcp_servers.enpire.url" in conf:  # served over HTTP by the host
            conf.setdefault("mcp_servers.enpire.command", "null")
            conf.setdefault("mcp_servers.enpire.args", "null")
        if resume and conf.get("sandbox_mode") != '"workspace-write"':
            sys.exit("codex exec resume: the sandbox must be set (-c sandbox_mode=...)")
        out.mcp = {
            "command": json.loads(conf["mcp_servers.enpire.command"]),
            "args": json.loads(conf["mcp_servers.enpire.args"]),
            "url": json.loads(conf.get("mcp_servers.enpire.url", '""')),
        }
        var = json.loads(conf.get("mcp_servers.enpire.bearer_token_env_var", '""'))
        if var:  # as codex does: the token from the named variable
            out.mcp["headers"] = {"Authorization": f"Bearer ${{{var}}}"}
        out.session = a.words[0] if resume and len(a.words) > 1 else ""
        if a.cd:
            out.worktree = a.cd
    else:
        p = argparse.ArgumentParser()
        p.add_argument("--mcp-config", required=True)
        p.add_argument("--worktree", required=True)
        p.add_argument("--session", default="")
        a = p.parse_args(rest)
        out.session, out.worktree = a.session, a.worktree
        out.mcp = json.loads(Path(a.mcp_config).read_text())["mcpServers"]["enpire"]
    return out


def plan_action() -> tuple[str, int]:
    plan = json.loads(Path(os.environ["FAKE_AGENT_PLAN"]).read_text())
    steps = plan.get(AGENT) or plan.get("*") or ["work"]
    counter = STATE / f"{AGENT}.turns"
    STATE.mkdir(parents=True, exist_ok=True)
    turn = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(turn + 1))
    return steps[min(turn, len(steps) - 1)], turn


def data(result) -> dict:
    if result.is_error:
        return {"error": result.content[0].text}
    return json.loads(result.content[0].text)


def edit_policy(turn: int) -> None:
    path = Path("policy/pusht_policy.py")
    text = path.read_text()
    now = re.search(r'"step": ([0-9.]+)', text)
    step = float(now.group(1)) + 0.7 if now else 8.0  # always a change to commit
    step = step if step < 17.0 else 8.0 + (turn % 7) / 10
    text = re.sub(r'"step": [0-9.]+', f'"step": {step:.1f}', text, count=1)
    path.write_text(text)


async def work(s: ClientSession, stream: Stream, turn: int) -> None:
    task = data(await s.call_tool("task", {}))
    stream.think(f"the goal is {task['goal_success_rate']}")
    note(action="task", goal=task["goal_success_rate"], protected=task["protected_paths"])
    edit_policy(turn)
    git("commit", "-qam", f"{AGENT}: try another step size (turn {turn})")
    sha = git("rev-parse", "HEAD").strip()
    sub = data(await s.call_tool("submit_experiment", {"commit": sha, "episodes": EPISODES}))
    note(action="submit", commit=sha, answer=sub)
    stream.think("submitted; waiting")
    done = data(await s.call_tool("wait_experiment", {"experiment_id": sub["id"]}))
    note(action="wait", status=done["status"], rate=done.get("success_rate"))
    if done.get("successes", 0) < done.get("episodes_done", 0):
        cases = await s.call_tool("failure_cases", {"experiment_id": sub["id"], "limit": 2})
        images = [c for c in cases.content if c.type == "image"]
        note(action="failure_cases", images=len(images), mime=[c.mime_type for c in images])
    git("push", "-qf", "origin", f"HEAD:{AGENT}")
    board = data(await s.call_tool("leaderboard", {}))["entries"]
    mine = max(
        (
            (e.get("screened") or {}).get("success_rate") or 0.0
            for e in board
            if e["agent_id"] == AGENT
        ),
        default=0.0,
    )
    better = [
        e
        for e in board
        if e["agent_id"] != AGENT and ((e.get("screened") or {}).get("success_rate") or 0.0) > mine
    ]
    note(action="leaderboard", entries=len(board), mine=mine)
    if better:
        theirs = better[0]
        git("fetch", "-q", "origin")
        git("reset", "-q", "--hard", theirs["commit"])
        git("push", "-qf", "origin", f"HEAD:{AGENT}")
        note(action="adopt", agent=theirs["agent_id"], commit=theirs["commit"])
    stream.think("done for this turn")


async def adopt(s: ClientSession, stream: Stream, turn: int) -> None:
    """Take the best other agent's commit as one's own (waits for one to be on the board)."""
    for _ in range(120):
        board = data(await s.call_tool("leaderboard", {}))["entries"]
        others = [e for e in board if e["agent_id"] != AGENT]
        if others:
            break
        await anyio.sleep(0.5)
    else:
        note(action="adopt", agent=None)
        return
    theirs = others[0]
    git("fetch", "-q", "origin")
    git("reset", "-q", "--hard", theirs["commit"])
    git("push", "-qf", "origin", f"HEAD:{AGENT}")
    note(action="adopt", agent=theirs["agent_id"], commit=theirs["commit"])
    stream.think("adopted")


async def escape(s: ClientSession, stream: Stream, turn: int) -> None:
    """Try to write where a confined agent must not: the ledger, another agent's tree."""
    tried = {}
    for name, path in (
        ("ledger", os.environ.get("FAKE_AGENT_LEDGER", "")),
        ("other_tree", os.environ.get("FAKE_AGENT_OTHER", "")),
    ):
        if not path:
            continue
        try:
            with open(path, "a") as f:
                f.write("forged\n")
            tried[name] = "written"
        except OSError as e:
            tried[name] = f"{type(e).__name__}: {e.strerror}"
    try:  # and its own worktree stays writable
        Path("scratch.txt").write_text("mine")
        tried["worktree"] = "written"
    except OSError as e:
        tried["worktree"] = f"{type(e).__name__}: {e.strerror}"
    own = os.environ.get("ENPIRE_MCP_TOKEN", "")
    tokens = set()  # other agents' tokens, from the environments of the processes it can see
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        tokens |= {v.split(b"=", 1)[1] for v in environ if v.startswith(b"ENPIRE_MCP_TOKEN=")}
    tried["foreign_tokens"] = len(tokens - {own.encode()})
    tried["processes_seen"] = sum(1 for p in os.listdir("/proc") if p.isdigit())
    other_mcp = Path(os.environ.get("FAKE_AGENT_OTHER_MCP", "/nonexistent"))
    for _ in range(200):  # the other agent's server may still be starting
        if other_mcp.exists() or not os.environ.get("FAKE_AGENT_OTHER_MCP"):
            break
        time.sleep(0.1)
    if other_mcp.exists():  # its server, without a token and with this agent's own
        url = json.loads(other_mcp.read_text())["mcpServers"]["enpire"]["url"]
        for label, headers in (
            ("other_mcp_no_token", {}),
            ("other_mcp_own_token", {"Authorization": f"Bearer {own}"}),
        ):
            try:
                with anyio.fail_after(30):
                    client = create_mcp_http_client(headers=headers)
                    async with (
                        client,
                        streamable_http_client(url, http_client=client) as (r, w, *_),
                        ClientSession(r, w) as other,
                    ):
                        await other.initialize()
                        await other.call_tool("task", {})
                tried[label] = "answered"
            except BaseException as e:  # noqa: BLE001 - 401s come back in exception groups
                if isinstance(e, KeyboardInterrupt):
                    raise
                tried[label] = f"refused: {type(e).__name__}: {str(e)[:200]}"
    note(action="escape", tried=tried)
    await s.call_tool("task", {})
    stream.think("tried")


async def protected(s: ClientSession, stream: Stream, turn: int) -> None:
    path = Path("tests/test_pusht_policy.py")
    path.write_text(path.read_text() + "\n\ndef test_nothing():\n    pass\n")
    git("commit", "-qam", "weaken the checks")
    sha = git("rev-parse", "HEAD").strip()
    answer = data(await s.call_tool("submit_experiment", {"commit": sha, "episodes": 2}))
    note(action="protected", answer=answer)
    git("reset", "-q", "--hard", "HEAD~1")
    stream.think("refused")


async def bench(s: ClientSession, stream: Stream, turn: int) -> None:
    """Think, submit, keep K in flight (K=1: think, submit, wait: one at a time)."""
    think = float(os.environ.get("FAKE_AGENT_THINK", "60"))
    k = int(os.environ.get("FAKE_AGENT_K", "2"))
    flight: list[str] = []
    n = 0
    while True:
        await anyio.sleep(think)  # the model thinking
        stream.think("next experiment")
        n += 1
        edit_policy(turn * 1000 + n)
        git("commit", "-qam", f"{AGENT}: experiment {n}")
        sha = git("rev-parse", "HEAD").strip()
        while True:
            sub = data(
                await s.call_tool("submit_experiment", {"commit": sha, "episodes": EPISODES})
            )
            if "id" in sub:
                flight.append(sub["id"])
                note(action="submit", id=sub["id"])
                break
            await s.call_tool("wait_experiment", {"experiment_id": flight.pop(0)})
        if k <= 1:  # one experiment at a time: wait for its result before thinking again
            while flight:
                await s.call_tool("wait_experiment", {"experiment_id": flight.pop(0)})


async def run(args: argparse.Namespace, action: str, turn: int) -> None:
    session = args.session or str(uuid.uuid4())
    note(
        action="start",
        turn=turn,
        plan=action,
        session=session,
        resumed=bool(args.session),
        flavor=args.flavor,
    )
    stream = Stream(args.flavor, session)
    if action == "crash":
        stream.think("about to fail")
        note(action="crash")
        sys.exit(3)
    if action == "hang":
        note(action="hang")
        time.sleep(3600)
    acts = {"work": work, "protected": protected, "bench": bench, "adopt": adopt, "escape": escape}
    if args.mcp.get("url"):  # the host serves the lab over HTTP (a confined agent)
        headers = {  # ${VAR} expanded from the environment, as Claude Code does
            k: re.sub(r"\$\{(\w+)\}", lambda m: os.environ.get(m[1], ""), v)
            for k, v in (args.mcp.get("headers") or {}).items()
        }
        client = create_mcp_http_client(headers=headers)
        async with (
            client,
            streamable_http_client(args.mcp["url"], http_client=client) as (r, w, *_),
            ClientSession(r, w) as s,
        ):
            await s.initialize()
            await acts[action](s, stream, turn)
    else:
        env = dict(os.environ, **(args.mcp.get("env") or {}))
        params = StdioServerParameters(command=args.mcp["command"], args=args.mcp["args"], env=env)
        async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            await acts[action](s, stream, turn)
    stream.done()


def main() -> None:
    args = parse(sys.argv[1:])
    os.chdir(args.worktree)
    action, turn = plan_action()
    anyio.run(run, args, action, turn)


if __name__ == "__main__":
    main()
