"""The lab's tools over MCP (the official ``mcp`` SDK, v2: ``MCPServer``, stdio), for Claude
Code, Codex or any MCP client; started as ``enpire mcp``.

    enpire mcp --lab local --data-dir DIR --agent a0     # simulated cells in this process
    enpire mcp --lab ros --agent a0                      # the fleet's /rollout and /train
    enpire mcp --lab shared --data-dir DIR --agent a0    # experiments go to a fleet that
                                                         # serves DIR's queue (enpire evolve)

A client configures it as a stdio server, e.g. in a ``.mcp.json``::

    {"mcpServers": {"enpire": {"command": "enpire", "args": ["mcp", "--agent", "a0"]}}}

or, with ``--transport http --port 8765``, as a streamable HTTP server at
``http://127.0.0.1:8765/mcp``; with ``ENPIRE_MCP_TOKEN`` set in its environment, that server
answers only requests carrying ``Authorization: Bearer <the token>`` (``enpire agents`` gives each
agent's server a token of its own, in that agent's environment and in no file).
Experiments (``submit_experiment``) are rows of the ledger's queue
in ``--data-dir``: the rollout node serves it for a ROS fleet, ``--lab local`` serves it with
``--cells`` simulated cells in this process, ``--lab shared`` leaves it to the evolve host.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import threading
from pathlib import Path

import anyio
import anyio.lowlevel
from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as McpToolError
from pydantic import BaseModel

from enpire_evolve.lab import Lab, LocalLab
from enpire_evolve.lab_tools import TOKEN_ENV, LabTools, TaskRules, ToolError
from enpire_evolve.repo import POLICY_MODULE
from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.experiments import ConfirmRule, ExperimentQueue
from enpire_rollout.ledger import Ledger

INSTRUCTIONS = (
    "enpire lab: robots (real or simulated) that run PushT policies. Call `task` first for "
    "the goal, the success rule and what you must not change. Commit your policy code, then "
    "`submit_experiment` (returns an id at once: keep thinking while robots work) and "
    "`wait_experiment` / `experiment_status` for the result; `failure_cases` shows failed "
    "episodes with camera frames; `leaderboard` ranks every agent's commits (adopt a better "
    "branch with git); `rollout` runs and waits; `train` runs one of PI's recipes; `score` is "
    "your rolling success rate; `query_ledger` reads the experiment ledger (SQL, read-only)."
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


def _progress_reporter(ctx: Context):
    """``report(progress, total, message)`` callable from the lab's own threads: an MCP progress
    notification of the tool call ``ctx`` belongs to (a lost one never stops the work)."""
    token = anyio.lowlevel.current_token()

    def report(progress: float, total: float, message: str) -> None:
        try:
            anyio.from_thread.run(ctx.report_progress, progress, total, message, token=token)
        except Exception:  # noqa: BLE001
            pass

    return report


class BearerToken:
    """The MCP SDK's token verifier for the one token an agent's HTTP server was given."""

    def __init__(self, token: str, agent_id: str):
        self.token, self.agent_id = token, agent_id

    async def verify_token(self, token: str):
        from mcp.server.auth.provider import AccessToken

        if hmac.compare_digest(token.encode(), self.token.encode()):
            return AccessToken(token=token, client_id=self.agent_id, scopes=[])
        return None


def build_server(tools: LabTools, token: str = "", url: str = "") -> MCPServer:
    """The lab's tools as an MCP server; with ``token`` (HTTP at ``url``) every request must
    carry it as a bearer token (the SDK's resource-server auth answers 401 otherwise)."""
    auth = {}
    if token:
        from mcp.server.auth.settings import AuthSettings

        auth = {
            "token_verifier": BearerToken(token, tools.agent_id),
            "auth": AuthSettings(issuer_url=url.rsplit("/", 1)[0], resource_server_url=url),
        }
    server = MCPServer("enpire", instructions=INSTRUCTIONS, **auth)

    @server.tool()
    def task() -> dict:
        """The task, its success rule, the protected paths and the score to beat."""
        return _answer(tools.task)

    @server.tool()
    async def rollout(episodes: int, policy: Policy, ctx: Context, seed: int = 0) -> dict:
        """Run a policy for `episodes` seeded episodes (seeds seed .. seed+episodes-1) and
        wait for the result: success rate, 95% interval, outcomes, failures with their errors
        and recordings. Progress is reported per episode."""
        report = _progress_reporter(ctx)

        def progress(done: int, total: int, ok: int) -> None:
            report(done, total, f"{ok} successes")

        def run() -> dict:
            return tools.rollout(episodes, seed, policy.ref(), progress)

        return await anyio.to_thread.run_sync(_answer, run)

    @server.tool()
    async def train(
        recipe: str,
        policy: Policy,
        ctx: Context,
        hyperparameters: str = "{}",
        time_budget: float = 0.0,
    ) -> dict:
        """Improve a policy with a recipe (heuristic_search, bc_mlp, bc_cnn, residual_rl);
        `hyperparameters` is a JSON object. Returns the artifact directory and metrics.
        Progress (0..1, with the recipe's stage) is reported as it trains."""
        try:
            hp = json.loads(hyperparameters or "{}")
        except json.JSONDecodeError as e:
            raise McpToolError(f"hyperparameters is not JSON: {e}") from None
        report = _progress_reporter(ctx)

        def progress(fraction: float, stage: str) -> None:
            report(fraction, 1.0, stage)

        def run() -> dict:
            return tools.train(recipe, hp, time_budget, policy.ref(), progress)

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
    def submit_experiment(
        commit: str = "HEAD",
        episodes: int = 10,
        kind: str = "screen",
        seed: int = 0,
        artifact: str = "",
        module: str = POLICY_MODULE,
        note: str = "",
    ) -> dict:
        """Queue an experiment and return its id at once: `commit` of your repository (a sha
        or ref; commit your changes first), `episodes` seeded episodes. `kind`: screen (seeds
        seed .. seed+episodes-1, the same for everyone: comparable), fresh (new random seeds)
        or confirm. A commit changing protected paths is refused. You may have a few in
        flight (see the error when you reach the limit)."""
        return _answer(
            tools.submit_experiment, commit, episodes, kind, seed, artifact, module, note
        )

    @server.tool()
    def experiment_status(experiment_id: str = "") -> dict:
        """One experiment's state and result, or (no id) your last 20 experiments."""
        return _answer(tools.experiment_status, experiment_id)

    @server.tool()
    async def wait_experiment(experiment_id: str, ctx: Context, timeout: float = 300.0) -> dict:
        """Wait until the experiment is done (or `timeout` s, at most 600, passed: then its
        status says `running`); progress is reported per episode."""
        report = _progress_reporter(ctx)

        def progress(done: int, total: int, _ok: int) -> None:
            report(done, total, "episodes")

        def run() -> dict:
            return tools.wait_experiment(experiment_id, timeout, progress)

        return await anyio.to_thread.run_sync(_answer, run)

    @server.tool()
    def cancel_experiment(experiment_id: str) -> dict:
        """Drop a queued experiment, or stop a running one after its current episodes."""
        return _answer(tools.cancel_experiment, experiment_id)

    @server.tool()
    def leaderboard() -> dict:
        """Every agent's evaluated commits, best first, with screening and confirmation
        results (success rate and 95% interval)."""
        return _answer(tools.leaderboard)

    @server.tool()
    def failure_cases(experiment_id: str, limit: int = 3) -> list:
        """The failed episodes of an experiment (outcome, steps, error) with the first and last
        camera frame of each as images."""
        summary, frames = _answer(tools.failure_cases, experiment_id, limit)
        return [json.dumps(summary)] + [Image(data=png, format="png") for _e, _w, png in frames]

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
    # the action clients exist before the executor spins: rclpy's ActionClient registers
    # itself with the node before it is fully built, and an executor iterating the node's
    # waitables meanwhile dies ("'ActionClient' object has no attribute '_lock'", seen in CI)
    lab = RosLab(node, "/rollout", "/train", timeout)
    executor = MultiThreadedExecutor(4)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    if not lab.wait_for_servers(30.0):
        raise SystemExit("enpire mcp: no /rollout and /train servers (is `enpire launch` up?)")
    return lab


def local_fleet(
    ledger: Ledger,
    data: Path,
    cells: int,
    max_steps: int,
    time_scale: float,
    video_size: int = 96,
    server: str = "local",
    confirm: ConfirmRule | None = None,
):
    """An in-process fleet of simulated cells serving the queue: (service, feeder)."""
    from enpire_rollout.experiments import ExperimentFeeder
    from enpire_rollout.rollout_service import RolloutService, ServiceConfig, SimRobot

    robots = {f"cell_{i}": SimRobot(f"cell_{i}", time_scale=time_scale) for i in range(cells)}
    cfg = ServiceConfig(max_steps=max_steps, video_size=video_size, min_episode_wall=0.0)
    service = RolloutService(robots, ledger, data, cfg)
    feeder = ExperimentFeeder(service, ExperimentQueue(ledger), server, confirm).start()
    return service, feeder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="enpire mcp", description=__doc__.splitlines()[0])
    ap.add_argument("--lab", choices=("local", "ros", "shared"), default="ros")
    ap.add_argument("--agent", default=os.environ.get("ENPIRE_AGENT_ID", "mcp"))
    ap.add_argument("--data-dir", default=os.path.expanduser("~/.enpire/data"))
    ap.add_argument("--repo", default=os.getcwd(), help="the agent's git repository")
    ap.add_argument(
        "--base",
        default="",
        help="commit protected paths are compared with (default: the repository's origin/main)",
    )
    ap.add_argument("--run-id", default="")
    ap.add_argument("--goal-success", type=float, default=0.95)
    ap.add_argument("--max-in-flight", type=int, default=2, help="experiments per agent")
    ap.add_argument("--max-steps", type=int, default=300, help="--lab local: steps per episode")
    ap.add_argument("--cells", type=int, default=1, help="--lab local: simulated cells")
    ap.add_argument(
        "--time-scale",
        type=float,
        default=0.0,
        help="--lab local: cell clock vs wall (0: as fast as it computes)",
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="--lab ros: per goal [s]")
    ap.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    ap.add_argument("--port", type=int, default=8765, help="--transport http")
    args = ap.parse_args(argv)
    # stdout carries the protocol: no library may print its greeting there
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    data = Path(args.data_dir)
    ledger = Ledger(data / "ledger.sqlite")
    if args.lab == "ros":
        lab: Lab = _ros_lab(args.timeout)
    else:
        lab = LocalLab(data / "artifacts", max_steps=args.max_steps)
    if args.lab == "local":
        rule = ConfirmRule(goal_success=args.goal_success)
        local_fleet(ledger, data, args.cells, args.max_steps, args.time_scale, confirm=rule)
    rules = TaskRules(goal_success=args.goal_success, base=args.base, run_id=args.run_id)
    queue = ExperimentQueue(ledger, max_in_flight=args.max_in_flight)
    tools = LabTools(lab, ledger, args.agent, rules, queue, args.repo)
    if args.transport == "http":
        url = f"http://127.0.0.1:{args.port}/mcp"
        server = build_server(tools, os.environ.get(TOKEN_ENV, ""), url)
        server.run("streamable-http", host="127.0.0.1", port=args.port)
        return 0
    build_server(tools).run("stdio")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
