"""The lab's tools over MCP (the official ``mcp`` SDK, v2: ``MCPServer``, stdio), for Claude
Code, Codex or any MCP client; started as ``enpire mcp``.

    enpire mcp --lab local --data-dir DIR --agent a0     # simulated cells in this process
    enpire mcp --lab ros --agent a0                      # the fleet's /rollout and /train

A client configures it as a stdio server, e.g. in a ``.mcp.json``::

    {"mcpServers": {"enpire": {"command": "enpire", "args": ["mcp", "--agent", "a0"]}}}
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError
from pydantic import BaseModel

from enpire_evolve.lab import Lab, LocalLab
from enpire_evolve.lab_tools import LabTools, TaskRules, ToolError
from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.ledger import Ledger

INSTRUCTIONS = (
    "enpire lab: robots (real or simulated) that run PushT policies. Call `task` first for "
    "the goal, the success rule and what you must not change. `rollout` runs your policy "
    "code (a commit of your git repository) on seeded episodes and returns the success rate "
    "with its interval and the failures; `train` runs one of PI's recipes; `score` is your "
    "rolling success rate; `query_ledger` reads the experiment ledger (SQL, read-only)."
)


class Policy(BaseModel):
    """Which policy: your code (`repo_path` + `commit` + `module`), a built-in (`name`:
    heuristic or naive) or a trained `artifact` directory."""

    repo_path: str = ""
    commit: str = ""
    module: str = "policy"
    name: str = ""
    artifact: str = ""

    def ref(self) -> PolicyRef:
        return PolicyRef.from_any(self.model_dump())


def build_server(tools: LabTools) -> MCPServer:
    server = MCPServer("enpire", instructions=INSTRUCTIONS)

    @server.tool()
    def task() -> dict:
        """The task, its success rule, the protected paths and the score to beat."""
        return _answer(tools.task)

    @server.tool()
    async def rollout(episodes: int, policy: Policy, ctx: Context, seed: int = 0) -> dict:
        """Run a policy for `episodes` seeded episodes (seeds seed .. seed+episodes-1) and
        wait for the result: success rate, 95% interval, outcomes, failures with their errors
        and recordings. Progress is reported per episode."""
        token = anyio.lowlevel.current_token()  # progress comes from the lab's own threads

        def progress(done: int, total: int, ok: int) -> None:
            try:
                anyio.from_thread.run(
                    ctx.report_progress, done, total, f"{ok} successes", token=token
                )
            except Exception:  # noqa: BLE001 - a lost notification must not stop the rollout
                pass

        def run() -> dict:
            return tools.rollout(episodes, seed, policy.ref(), progress)

        return await anyio.to_thread.run_sync(_answer, run)

    @server.tool()
    async def train(
        recipe: str, policy: Policy, hyperparameters: str = "{}", time_budget: float = 0.0
    ) -> dict:
        """Improve a policy with a recipe (heuristic_search, bc_mlp, bc_cnn, residual_rl);
        `hyperparameters` is a JSON object. Returns the artifact directory and metrics."""
        try:
            hp = json.loads(hyperparameters or "{}")
        except json.JSONDecodeError as e:
            raise McpToolError(f"hyperparameters is not JSON: {e}") from None

        def run() -> dict:
            return tools.train(recipe, hp, time_budget, policy.ref())

        return await anyio.to_thread.run_sync(_answer, run)

    @server.tool()
    def score(window: int = 50) -> dict:
        """Your success rate over your last `window` episodes, with its 95% interval."""
        return _answer(tools.score, window)

    @server.tool()
    def query_ledger(sql: str) -> dict:
        """Read the experiment ledger with one SQL SELECT (tables: goals, episodes,
        robot_intervals, trainings, agent_steps, llm_calls, tool_calls); at most 200 rows."""
        return _answer(tools.query_ledger, sql)

    @server.tool()
    def fleet_status() -> dict:
        """The robots of the lab."""
        return _answer(tools.fleet_status)

    return server


def _answer(fn, *args) -> dict:
    """A refused call reaches the agent as a tool error with the reason (MCP's ToolError);
    anything else is a crash the SDK reports without its text."""
    try:
        return fn(*args)
    except ToolError as e:
        raise McpToolError(str(e)) from None


def _ros_lab(timeout: float) -> Lab:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from enpire_evolve.evolve_node import RosLab

    rclpy.init()
    node = rclpy.create_node(f"enpire_mcp_{os.getpid()}")
    executor = MultiThreadedExecutor(4)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    lab = RosLab(node, "/rollout", "/train", timeout)
    if not lab.wait_for_servers(30.0):
        raise SystemExit("enpire mcp: no /rollout and /train servers (is `enpire launch` up?)")
    return lab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="enpire mcp", description=__doc__.splitlines()[0])
    ap.add_argument("--lab", choices=("local", "ros"), default="ros")
    ap.add_argument("--agent", default=os.environ.get("ENPIRE_AGENT_ID", "mcp"))
    ap.add_argument("--data-dir", default=os.path.expanduser("~/.enpire/data"))
    ap.add_argument("--max-steps", type=int, default=300, help="--lab local: steps per episode")
    ap.add_argument("--timeout", type=float, default=3600.0, help="--lab ros: per goal [s]")
    args = ap.parse_args(argv)
    # stdout carries the protocol: no library may print its greeting there
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    data = Path(args.data_dir)
    ledger = Ledger(data / "ledger.sqlite")
    if args.lab == "local":
        lab: Lab = LocalLab(data / "artifacts", max_steps=args.max_steps)
    else:
        lab = _ros_lab(args.timeout)
    build_server(LabTools(lab, ledger, args.agent, TaskRules())).run("stdio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
