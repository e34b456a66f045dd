"""`enpire mcp` as an MCP client sees it: the official SDK's client launches the server over
stdio (as Claude Code or Codex would), lists the tools and calls them against a local lab."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import anyio
from mcp import ClientSession

from enpire_env.testing import mcp_session, tool_json

TOOLS = {
    "task",
    "rollout",
    "train",
    "score",
    "query_ledger",
    "fleet_status",
    "submit_experiment",
    "experiment_status",
    "wait_experiment",
    "cancel_experiment",
    "leaderboard",
    "failure_cases",
}


def test_a_client_reads_the_task_runs_a_rollout_and_queries_the_ledger(tmp_path):
    async def session(s: ClientSession):
        assert {t.name for t in (await s.list_tools()).tools} >= TOOLS
        task = tool_json(await s.call_tool("task", {}))
        assert task["goal_success_rate"] == 0.95 and "tests/" in task["protected_paths"]
        seen = []

        async def progress(done, total, message):
            seen.append((done, total))

        out = tool_json(
            await s.call_tool(
                "rollout",
                {"episodes": 2, "seed": 3, "policy": {"name": "heuristic"}},
                progress_callback=progress,
            )
        )
        assert out["episodes"] == 2 and out["error_code"] == 0
        assert 0.0 <= out["ci"][0] <= out["success_rate"] <= out["ci"][1] <= 1.0
        assert seen and seen[-1] == (2.0, 2.0)
        stages = []

        async def train_progress(done, total, message):
            stages.append((done, total, message))

        hp = '{"iterations": 1, "population": 2, "episodes": 1, "max_steps": 60}'
        trained = tool_json(
            await s.call_tool(
                "train",
                {
                    "recipe": "heuristic_search",
                    "policy": {"name": "heuristic"},
                    "hyperparameters": hp,
                },
                progress_callback=train_progress,
            )
        )
        assert trained["error_code"] == 0, trained["error_msg"]
        assert [(d, t, m) for d, t, m in stages] == [
            (0.5, 1.0, "evaluate"),
            (1.0, 1.0, "evaluate"),
        ]
        rows = tool_json(
            await s.call_tool(
                "query_ledger",
                {"sql": "SELECT agent_id, tool, outcome FROM tool_calls ORDER BY id"},
            )
        )["rows"]
        assert [(r["agent_id"], r["tool"], r["outcome"]) for r in rows] == [
            ("a0", "task", "ok"),
            ("a0", "rollout", "ok"),
            ("a0", "train", "ok"),
        ]
        bad = await s.call_tool("query_ledger", {"sql": "DELETE FROM tool_calls"})
        assert bad.is_error and "query refused" in bad.content[0].text
        bad = await s.call_tool("rollout", {"episodes": 0, "policy": {"name": "heuristic"}})
        assert bad.is_error and "episodes must be" in bad.content[0].text
        return True

    async def main():
        async with mcp_session(
            "--lab", "local", "--data-dir", str(tmp_path), "--agent", "a0", "--max-steps", "150"
        ) as s:
            return await session(s)

    assert anyio.run(main)


def test_streamable_http_serves_the_same_tools_to_its_token_holder_only(tmp_path):
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "enpire_bringup.enpire",
        "mcp",
        "--lab",
        "shared",
        "--data-dir",
        str(tmp_path),
        "--agent",
        "h0",
        "--repo",
        str(tmp_path),
        "--transport",
        "http",
        "--port",
        str(port),
    ]
    env = dict(os.environ, ENPIRE_MCP_TOKEN="s3cret-of-h0")  # only its holder is answered
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    url = f"http://127.0.0.1:{port}/mcp"

    async def refused(headers: dict) -> int:
        async with create_mcp_http_client(headers=headers) as client:
            r = await client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
            return r.status_code

    async def main():
        for _ in range(100):  # the server imports, then listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        assert await refused({}) == 401
        assert await refused({"Authorization": "Bearer s3cret-of-h1"}) == 401
        client = create_mcp_http_client(headers={"Authorization": "Bearer s3cret-of-h0"})
        async with (
            client,
            streamable_http_client(url, http_client=client) as (read, write, *_),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            assert {t.name for t in (await s.list_tools()).tools} >= TOOLS
            bad = await s.call_tool("submit_experiment", {"commit": "HEAD"})
            assert bad.is_error and "no commit" in bad.content[0].text  # not a git repo
            board = tool_json(await s.call_tool("leaderboard", {}))
            assert board["entries"] == []
            return True

    try:
        assert anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(10)
