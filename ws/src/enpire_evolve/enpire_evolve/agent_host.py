"""Coding agents as supervised programs: Claude Code, Codex or any command, ROS-free.

Each agent is a headless CLI run in its own clone of the shared repository, reaching the lab
through ``enpire mcp`` (stdio, started by the CLI from the MCP configuration the host writes).
The agent edits, commits, submits experiments and adopts other agents' branches itself; the host

- writes the instructions (``AGENTS.md`` for Codex and commands, ``CLAUDE.md`` for Claude Code;
  both kept out of git) and the MCP configuration into each worktree,
- launches one *turn* (``claude -p`` / ``codex exec`` / the command) after another, resuming the
  CLI's own session (``--resume`` / ``codex exec resume``) so the agent keeps its context,
- reads the CLI's JSON event stream: its session id, and its token usage into ``llm_calls``
  (input, cached, output), so budgets, MTU and tokens-to-goal hold for every backend,
- restarts a crashed turn (non-zero exit) or a hung one (no event for ``hang_timeout`` s) with a
  doubling back-off, at most ``max_restarts`` times in a row,
- stops every agent at the goal (a commit confirmed on fresh seeds by the fleet), at the wall or
  token budget (total or per agent), or on ``stop()``.

The experiments themselves go through the ledger's queue (:mod:`enpire_rollout.experiments`), so
robots never wait for an agent to think.
"""

from __future__ import annotations

import json
import math
import os
import queue
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from enpire_evolve.lab_tools import TOKEN_ENV, TaskRules
from enpire_evolve.repo import AgentTree, SharedRepo, git
from enpire_rollout.experiments import ExperimentQueue
from enpire_rollout.ledger import Ledger

BACKENDS = ("claude", "codex", "command")
EVENT_FORMATS = ("claude", "codex", "none")
INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
# what a confined CLI may write besides its worktree: its own state and caches
CLI_STATE = ("~/.claude", "~/.claude.json", "~/.codex", "~/.cache", "~/.npm", "~/.config")
# Claude Code's tools an agent may use without asking: the lab's, files, git and tests
CLAUDE_TOOLS = (
    "mcp__enpire",
    "Read",
    "Edit",
    "Write",
    "Glob",
    "Grep",
    "Bash(git:*)",
    "Bash(python -m pytest:*)",
)


@dataclass
class CliAgentConfig:
    backend: str = "claude"  # claude | codex | command
    # the program: for claude / codex the CLI (default: its name on PATH); for command, a
    # template with {worktree} {prompt} {prompt_file} {mcp_config} {session} {agent_id}
    command: list[str] = field(default_factory=list)
    events: str = ""  # the command's stdout: claude | codex | none ("" = the backend's)
    model: str = ""  # passed as --model / -m when set
    extra_args: list[str] = field(default_factory=list)
    mcp_command: list[str] = field(default_factory=list)  # how the CLI starts `enpire mcp`
    lab: str = "shared"  # what `enpire mcp` serves: shared (the host's fleet) | ros
    max_in_flight: int = 2  # experiments per agent
    hang_timeout: float = 900.0  # s without an event = hung
    max_restarts: int = 5  # crashes / hangs in a row before the agent is given up
    backoff: float = 5.0  # s before the first restart, doubling
    max_backoff: float = 300.0
    max_turns: int = 0  # per agent; 0 = until the goal or a budget
    # landlock: the CLI (and all it starts) writes only its worktree, the shared repository,
    # its own temp folder, its CLI state (~/.claude, ~/.codex, ...) and ``writable``; the lab's
    # tools then come over HTTP from a server the host runs outside. none: as the user runs it.
    # auto: landlock where the kernel has it.
    isolation: str = "auto"
    writable: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.isolation not in ("auto", "landlock", "none"):
            raise ValueError(f"isolation must be auto, landlock or none, got {self.isolation!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "command" and not self.command:
            raise ValueError("the command backend needs a command template")
        if self.events and self.events not in EVENT_FORMATS:
            raise ValueError(f"events must be one of {', '.join(EVENT_FORMATS)}")
        if self.lab not in ("shared", "ros"):
            raise ValueError("lab must be 'shared' or 'ros'")
        if self.hang_timeout <= 0 or self.max_restarts < 0 or self.backoff < 0:
            raise ValueError("hang_timeout > 0, max_restarts >= 0, backoff >= 0")
        if self.max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")

    @property
    def event_format(self) -> str:
        return self.events or {"claude": "claude", "codex": "codex"}.get(self.backend, "none")


# --- the backends' command lines --------------------------------------------------------
def mcp_server_args(
    cfg: CliAgentConfig,
    agent_id: str,
    tree: Path,
    data_dir: Path,
    run_id: str,
    base: str,
    goal: float,
) -> list[str]:
    """The ``enpire mcp`` command line an agent's CLI starts (stdio)."""
    cmd = cfg.mcp_command or [sys.executable, "-m", "enpire_bringup.enpire"]
    return [
        *cmd,
        "mcp",
        "--lab",
        cfg.lab,
        "--agent",
        agent_id,
        "--data-dir",
        str(data_dir),
        "--repo",
        str(tree),
        "--base",
        base,
        "--run-id",
        run_id,
        "--goal-success",
        f"{goal:g}",
        "--max-in-flight",
        str(cfg.max_in_flight),
    ]


MCP_ENV_PREFIXES = (
    "PYTHON",
    "AMENT_",
    "COLCON_",
    "CMAKE_PREFIX_PATH",
    "LD_LIBRARY_PATH",
    "ROS_",
    "RMW_",
    "ENPIRE_",
    "PATH",
)


def mcp_environment(env: dict, agent_id: str) -> dict:
    """What ``enpire mcp`` needs from the host's environment (its Python path, ROS, the agent
    id). Codex starts MCP servers with a minimal environment of its own, so it is passed
    explicitly (found with the real codex-cli: the server died at its handshake without it)."""
    out = {k: v for k, v in env.items() if k.startswith(MCP_ENV_PREFIXES)}
    out["ENPIRE_AGENT_ID"] = agent_id
    return out


def _toml_table(d: dict) -> str:
    return "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(d.items())) + "}"


def build_command(
    cfg: CliAgentConfig,
    prompt: str,
    session: str,
    files: dict[str, Path],
    mcp: list[str],
    mcp_env: dict | None = None,
) -> list[str]:
    """argv of one turn. ``files``: worktree, prompt_file, mcp_config."""
    model = ["--model", cfg.model] if cfg.model else []
    if cfg.backend == "claude":
        argv = [
            *(cfg.command or ["claude"]),
            "-p",
            prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--mcp-config",
            str(files["mcp_config"]),
            "--strict-mcp-config",
            "--allowedTools",
            ",".join(CLAUDE_TOOLS),
            "--permission-mode",
            "acceptEdits",
            *model,
        ]
        if session:
            argv += ["--resume", session]
        return argv + cfg.extra_args
    if cfg.backend == "codex":
        exe = cfg.command or ["codex"]
        url = str(files.get("mcp_url") or "")
        if url:  # the host serves the lab's tools over HTTP (a confined agent), its token
            conf = [  # in the CLI's environment, not in a file other agents could read
                "-c",
                f"mcp_servers.enpire.url={json.dumps(url)}",
                "-c",
                f"mcp_servers.enpire.bearer_token_env_var={json.dumps(TOKEN_ENV)}",
            ]
        else:
            conf = [
                "-c",
                f"mcp_servers.enpire.command={json.dumps(mcp[0])}",
                "-c",
                f"mcp_servers.enpire.args={json.dumps(mcp[1:])}",
            ]
        # `codex exec` never asks: without this every lab tool call fails ("requires approval")
        conf += ["-c", 'mcp_servers.enpire.default_tools_approval_mode="approve"']
        # and the first turn waits until the lab's tools are listed (else "unsupported call")
        conf += ["-c", 'mcp_servers.enpire.startup_readiness="catalog"']
        if mcp_env and not url:
            conf += ["-c", f"mcp_servers.enpire.env={_toml_table(mcp_env)}"]
        opts = [
            "--json",
            "--skip-git-repo-check",
            *(["-m", cfg.model] if cfg.model else []),
            *conf,
            *cfg.extra_args,
        ]
        if session:  # `exec resume` has no --sandbox: the same policy as a config value
            sandbox = ["-c", 'sandbox_mode="workspace-write"']
            return [*exe, "exec", "resume", *opts, *sandbox, session, prompt]
        sandbox = ["--sandbox", "workspace-write"]
        return [*exe, "exec", *opts, *sandbox, "-C", str(files["worktree"]), prompt]
    values = {
        "worktree": str(files["worktree"]),
        "prompt": prompt,
        "prompt_file": str(files["prompt_file"]),
        "mcp_config": str(files["mcp_config"]),
        "session": session,
        "agent_id": files["agent_id"].name,
    }
    return [part.format(**values) for part in cfg.command] + cfg.extra_args


# --- the backends' event streams -------------------------------------------------------
@dataclass
class Usage:
    input: int = 0  # every prompt token, cached ones included
    cached: int = 0
    output: int = 0
    model: str = ""


class EventReader:
    """Turns one CLI's JSON lines into its session id and usage records. Claude Code reports
    per API message (``assistant``) and the run's total (``result``): the total is recorded, or,
    for a run that died before its result, the messages seen. Codex reports per turn
    (``turn.completed`` / ``turn.failed``)."""

    def __init__(self, fmt: str):
        self.fmt = fmt
        self.session = ""
        self.usages: list[Usage] = []  # to record
        self._messages: dict[str, Usage] = {}  # claude: per message id, until the result
        self.result: dict | None = None

    def feed(self, line: str) -> None:
        line = line.strip()
        if self.fmt == "none" or not line.startswith("{"):
            return
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            return
        if not isinstance(ev, dict):
            return
        kind = ev.get("type", "")
        if self.fmt == "claude":
            self.session = ev.get("session_id") or self.session
            if kind == "assistant":
                msg = ev.get("message") or {}
                u = msg.get("usage")
                if u:
                    self._messages[msg.get("id") or str(len(self._messages))] = _claude_usage(
                        u, msg.get("model", "")
                    )
            elif kind == "result":
                self.result = ev
                total = _claude_usage(ev.get("usage") or {}, "")
                total.model = next(iter(ev.get("modelUsage") or {}), "") or next(
                    (m.model for m in self._messages.values() if m.model), ""
                )
                self._messages.clear()
                self.usages.append(total)
        elif self.fmt == "codex":
            if kind == "thread.started":
                self.session = ev.get("thread_id") or self.session
            elif kind in ("turn.completed", "turn.failed") and ev.get("usage"):
                u = ev["usage"]
                self.usages.append(
                    Usage(
                        int(u.get("input_tokens") or 0),
                        int(u.get("cached_input_tokens") or 0),
                        int(u.get("output_tokens") or 0),
                    )
                )
            if kind == "turn.completed":
                self.result = ev

    def close(self) -> None:
        """The process ended: what its messages used counts even without a result."""
        self.usages.extend(self._messages.values())
        self._messages.clear()

    def take(self) -> list[Usage]:
        out, self.usages = self.usages, []
        return out


def _claude_usage(u: dict, model: str) -> Usage:
    cached = int(u.get("cache_read_input_tokens") or 0)
    created = int(u.get("cache_creation_input_tokens") or 0)
    return Usage(
        int(u.get("input_tokens") or 0) + cached + created,
        cached,
        int(u.get("output_tokens") or 0),
        model,
    )


# --- the instructions ------------------------------------------------------------------
def instructions(
    agent_id: str,
    others: list[str],
    goal: float,
    confirm_episodes: int,
    protected: list[str],
    max_in_flight: int,
) -> str:
    branches = ", ".join(others) or "none yet"
    return f"""# enpire: your task ({agent_id})

You improve a PushT policy for robots you reach through the `enpire` MCP tools. The goal: a
commit of your branch whose success rate, confirmed by the lab on {confirm_episodes} fresh
episodes nobody chose, is at least {goal:.0%}. Call `task` first.

## How to work
- The policy is `policy/pusht_policy.py` (read its docstring); `python -m pytest -q` runs its
  checks. Commit every change you want measured (`git commit -am "..."`).
- `submit_experiment(commit="HEAD", episodes=10)` queues it and answers at once with an id; you
  may have {max_in_flight} in flight. Keep thinking while the robots work, then
  `wait_experiment(id)` or `experiment_status(id)`. `kind="screen"` uses the shared seeds (0..N-1,
  comparable with everyone's); `kind="fresh"` new seeds.
- `failure_cases(id)` shows failed episodes with camera frames; `score` and `query_ledger`
  read the ledger (read-only).
- A commit whose screening reaches the goal is confirmed by the lab on fresh seeds on its own;
  `leaderboard` shows every agent's commits, screened and confirmed.

## Sharing
- Publish your branch: `git push -f origin HEAD:{agent_id}`.
- Other agents' branches: {branches}. `git fetch origin`, read `leaderboard`; adopt a better
  one with `git reset --hard origin/<branch>` (or merge / cherry-pick what helps).

## Rules
- Not yours to change (a commit touching them is refused): {", ".join(protected)}. The reset,
  the verifier, the success threshold, the evaluation seeds and the safety limits live in the
  lab, not in this repository.
- Policy code runs sandboxed: no processes, network, files outside its scratch folder.
"""


# --- the host --------------------------------------------------------------------------
@dataclass
class HostConfig:
    run_id: str = "run"
    agents: int = 2
    goal_success: float = 0.95
    confirm_episodes: int = 200
    confirm_chunk: int = 50
    wall_budget: float = 0.0  # s; 0 = none
    token_budget: int = 0  # all agents (input + output); 0 = none
    agent_token_budget: int = 0
    cli: CliAgentConfig = field(default_factory=CliAgentConfig)
    # what the instructions call protected: the list `enpire mcp` refuses commits by (one list)
    protected: list[str] = field(default_factory=lambda: list(TaskRules().protected))

    def __post_init__(self) -> None:
        if isinstance(self.cli, dict):
            self.cli = CliAgentConfig(**self.cli)
        if self.agents < 1 or not 0 < self.goal_success <= 1:
            raise ValueError("agents >= 1 and goal_success in (0, 1]")
        for name in ("wall_budget", "token_budget", "agent_token_budget"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")


@dataclass
class AgentProcessStatus:
    agent_id: str
    state: str = "starting"  # starting | running | restarting | done | failed
    turns: int = 0
    restarts: int = 0
    session: str = ""
    message: str = ""


class AgentHost:
    """Hosts the CLI agents of one run; ``run()`` blocks until the goal, a budget or stop()."""

    def __init__(self, cfg: HostConfig, data_dir: str | Path, log=print, env: dict | None = None):
        self.cfg, self.log = cfg, log
        self.data_dir = Path(data_dir).expanduser()
        self.run_dir = self.data_dir / "evolve" / cfg.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.data_dir / "ledger.sqlite")
        self.queue = ExperimentQueue(self.ledger, cfg.cli.max_in_flight)
        self.shared = SharedRepo.create(self.run_dir / "shared.git")
        self.base = self.shared.rev("main")
        self.agent_ids = [f"agent_{i}" for i in range(cfg.agents)]
        self.status = {a: AgentProcessStatus(a) for a in self.agent_ids}
        self.env = dict(os.environ if env is None else env)
        self._stop = threading.Event()
        self._procs: dict[str, subprocess.Popen] = {}
        self._servers: dict[str, subprocess.Popen] = {}  # agent -> its HTTP MCP server
        self.isolation = cfg.cli.isolation
        if self.isolation == "auto":
            from enpire_policy.isolation import probe

            self.isolation = "landlock" if probe().landlock_abi else "none"
            if self.isolation == "none":
                log("agents: no Landlock on this kernel: the CLIs run unconfined")
        self._lock = threading.Lock()
        self.outcome: dict = {}
        self.t0 = time.monotonic()
        self.ledger.open_run(cfg.run_id, asdict(cfg))

    # --- control -----------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        if not self.outcome:
            self.outcome = {"reason": reason}
        self._stop.set()
        with self._lock:
            procs = list(self._procs.values())
        for p in procs:
            _terminate(p)

    def _close_servers(self) -> None:
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for p in servers:
            _terminate(p)

    def budget_exhausted(self, agent_id: str | None = None) -> str:
        c = self.cfg
        if c.wall_budget and time.monotonic() - self.t0 >= c.wall_budget:
            return f"wall-time budget of {c.wall_budget:g} s spent"
        if c.token_budget and sum(self.ledger.tokens(c.run_id)) >= c.token_budget:
            return f"token budget of {c.token_budget} spent"
        if agent_id and c.agent_token_budget:
            if sum(self.ledger.tokens(c.run_id, agent_id)) >= c.agent_token_budget:
                return f"{agent_id}'s token budget of {c.agent_token_budget} spent"
        return ""

    def goal_reached(self) -> dict:
        """A commit confirmed on enough fresh episodes at the goal rate, or {}."""
        c = self.cfg
        for e in self.queue.leaderboard(c.run_id):
            conf = e.get("confirmed") or {}
            if (
                conf.get("episodes", 0) >= c.confirm_episodes
                and (conf.get("success_rate") or 0) >= c.goal_success
            ):
                return {
                    "reason": "goal",
                    "agent_id": e["agent_id"],
                    "commit": e["commit"],
                    "success_rate": conf["success_rate"],
                    "ci": conf["ci"],
                    "episodes": conf["episodes"],
                }
        return {}

    def run(self, poll: float = 1.0) -> dict:
        threads = [
            threading.Thread(target=self._supervise, args=(a,), name=a, daemon=True)
            for a in self.agent_ids
        ]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                goal = self.goal_reached()
                if goal:
                    self.outcome = goal
                    self.stop("goal")
                why = self.budget_exhausted()
                if why:
                    self.stop(why)
                self.ledger.update_run(self.cfg.run_id, wall_used=time.monotonic() - self.t0)
                for t in threads:
                    t.join(timeout=poll / len(threads))
        except KeyboardInterrupt:
            self.stop("interrupted")
            for t in threads:
                t.join(timeout=30)
        self._close_servers()
        if not self.outcome:
            self.outcome = self.goal_reached() or {"reason": "agents finished"}
        self.outcome["wall_seconds"] = time.monotonic() - self.t0
        self.outcome["leaderboard"] = self.queue.leaderboard(self.cfg.run_id, limit=5)
        status = "done" if self.outcome.get("reason") == "goal" else "stopped"
        self.ledger.update_run(
            self.cfg.run_id,
            status=status,
            finished=time.time(),
            wall_used=self.outcome["wall_seconds"],
            result=self.outcome,
        )
        return self.outcome

    # --- one agent ---------------------------------------------------------------------
    def _prepare(self, agent_id: str) -> tuple[AgentTree, dict[str, Path], list[str]]:
        c = self.cfg
        tree = AgentTree.open(self.shared, self.run_dir / "agents" / agent_id, agent_id)
        git(tree.path, "config", "user.name", agent_id)  # the agent's commits are its own
        git(tree.path, "config", "user.email", f"{agent_id}@enpire.invalid")
        exclude = tree.path / ".git" / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        lines = set(exclude.read_text().splitlines()) if exclude.exists() else set()
        missing = [f for f in (*INSTRUCTION_FILES, ".enpire/") if f not in lines]
        if missing:
            with exclude.open("a") as f:
                f.write("".join(m + "\n" for m in missing))
        others = [a for a in self.agent_ids if a != agent_id]
        text = instructions(
            agent_id, others, c.goal_success, c.confirm_episodes, c.protected, c.cli.max_in_flight
        )
        for name in INSTRUCTION_FILES:
            (tree.path / name).write_text(text)
        own = self.run_dir / "host" / agent_id  # the host's files, out of the agent's reach
        (own / "tmp").mkdir(parents=True, exist_ok=True)
        mcp = mcp_server_args(
            c.cli, agent_id, tree.path, self.data_dir, c.run_id, self.base, c.goal_success
        )
        url = token = ""
        if self.isolation == "landlock":
            token = secrets.token_urlsafe(32)
            url = self._serve_mcp(agent_id, mcp, token)
            # the token reaches the CLI in its environment only: the config file, which other
            # agents can read, names the variable; the other agents' processes, environments
            # included, are out of sight in the jail's pid namespace (see _jail)
            header = {"Authorization": f"Bearer ${{{TOKEN_ENV}}}"}
            server = {"type": "http", "url": url, "headers": header}
        else:
            server = {
                "command": mcp[0],
                "args": mcp[1:],
                "env": mcp_environment(self.env, agent_id),
            }
        (own / "mcp.json").write_text(json.dumps({"mcpServers": {"enpire": server}}, indent=2))
        (own / "prompt.md").write_text(text)
        files = {
            "worktree": tree.path,
            "prompt_file": own / "prompt.md",
            "mcp_config": own / "mcp.json",
            "mcp_url": url,
            "mcp_token": token,
            "agent_id": Path(agent_id),
            "tmp": own / "tmp",
        }
        return tree, files, mcp

    def _serve_mcp(self, agent_id: str, mcp: list[str], token: str, timeout: float = 60.0) -> str:
        """Start the agent's ``enpire mcp`` over HTTP, outside its confinement, answering only
        requests with ``token``; its URL."""
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = (self.run_dir / "logs" / f"{agent_id}.mcp.log").open("ab")
        env = dict(self.env, **mcp_environment(self.env, agent_id), **{TOKEN_ENV: token})
        proc = subprocess.Popen(
            [*mcp, "--transport", "http", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        with self._lock:
            self._servers[agent_id] = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"enpire mcp for {agent_id} exited with {proc.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}/mcp"
            time.sleep(0.1)
        raise RuntimeError(f"enpire mcp for {agent_id} did not listen within {timeout:g} s")

    def _jail(self, argv: list[str], files: dict) -> list[str]:
        """``argv`` confined to write its worktree, the shared repository (to push), its temp
        folder and its CLI state."""
        home = Path(self.env.get("HOME", "~")).expanduser()
        state = [home / p[2:] for p in CLI_STATE]
        if self.env.get("CODEX_HOME"):
            state.append(Path(self.env["CODEX_HOME"]))
        writes = [
            files["worktree"],
            self.shared.path,
            files["tmp"],
            Path("/dev"),
            *state,
            *map(Path, self.cfg.cli.writable),
        ]
        args = [a for w in writes if w.exists() for a in ("--write", str(w))]
        jail = [sys.executable, "-m", "enpire_evolve.agent_jail", *args, "--", *argv]
        from enpire_policy.isolation import probe

        bwrap = probe().bwrap
        if not bwrap:
            return jail
        # and a pid namespace of its own, with its own /proc: the agent sees only its own
        # processes, not the other agents' nor their MCP servers, whose environments hold
        # their tokens (one user runs them all; /proc/<pid>/environ is readable across them)
        return [bwrap, "--unshare-user", "--unshare-pid", "--dev-bind", "/", "/",
                "--proc", "/proc", "--", *jail]  # fmt: skip

    def _prompt(self, agent_id: str, turn: int) -> str:
        if turn == 0:
            return (
                f"You are {agent_id}. Read AGENTS.md (or CLAUDE.md) in this repository and "
                "work toward the goal with the enpire tools; commit, submit experiments, "
                "share and adopt through git."
            )
        best = self.queue.leaderboard(self.cfg.run_id, limit=1)
        score = (best[0].get("screened") or {}).get("success_rate") if best else None
        return (
            f"Continue ({agent_id}): the goal is not reached yet. Best screened so far: "
            f"{score if score is not None else 'none'}. Check your experiments "
            "(experiment_status), the leaderboard, and go on."
        )

    def _supervise(self, agent_id: str) -> None:
        st = self.status[agent_id]
        c = self.cfg.cli
        (self.run_dir / "logs").mkdir(exist_ok=True)
        t0 = time.time()
        try:
            _tree, files, mcp = self._prepare(agent_id)
        except Exception as e:  # noqa: BLE001 - one agent's set-up failing ends only it
            self._failed(agent_id, f"{type(e).__name__}: {e}", t0, traceback.format_exc(limit=6))
            return
        failures_in_row = 0
        log_dir = self.run_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        while not self._stop.is_set():
            why = self.budget_exhausted(agent_id)
            if why:
                st.state, st.message = "done", why
                self.log(f"agents: {agent_id} stops: {why}")
                return
            if c.max_turns and st.turns >= c.max_turns:
                st.state, st.message = "done", f"{st.turns} turns done"
                return
            prompt = self._prompt(agent_id, st.turns)
            argv = build_command(
                c, prompt, st.session, files, mcp, mcp_environment(self.env, agent_id)
            )
            if self.isolation == "landlock":
                argv = self._jail(argv, files)
            st.state = "running"
            try:
                rc, why = self._turn(agent_id, argv, files, log_dir)
            except OSError as e:  # the program is not there (or not executable): no retrying
                self._failed(agent_id, f"cannot start {argv[0]}: {e}", t0)
                return
            if self._stop.is_set():
                break
            if (rc == 0 and not why) or why == "budget":  # a budget ends it at the loop's top
                st.turns += 1
                failures_in_row = 0
                continue
            failures_in_row += 1
            st.restarts += 1
            what = why or f"exited with {rc}"
            if failures_in_row > c.max_restarts:
                self._failed(agent_id, f"{what}; {c.max_restarts} restarts in a row", t0)
                return
            wait = min(c.backoff * 2 ** (failures_in_row - 1), c.max_backoff)
            st.state, st.message = "restarting", f"{what}; restart in {wait:g} s"
            self.log(
                f"agents: {agent_id} {what}; restarting in {wait:g} s "
                f"(session {st.session or 'new'})"
            )
            self._stop.wait(wait)
        st.state = "done"

    def _failed(self, agent_id: str, why: str, t0: float, error: str = "") -> None:
        """The agent is given up: its status, the log, and an ``agent_failed`` row in the
        ledger, which the morning report shows (its queue experiments still count)."""
        st = self.status[agent_id]
        st.state, st.message = "failed", why
        self.log(f"agents: {agent_id} given up: {why}")
        try:
            details = {"error": error or why, "restarts": st.restarts}
            self.ledger.add_agent_failed(self.cfg.run_id, agent_id, why, t0, details)
        except Exception as e:  # noqa: BLE001 - the ledger's own failure is logged only
            self.log(f"agents: {agent_id}: its failure could not be recorded: {e}")

    def _turn(self, agent_id: str, argv: list[str], files: dict, log_dir: Path) -> tuple[int, str]:
        """One CLI run: (exit code, why the host ended it: "" | "hung" | "budget")."""
        st = self.status[agent_id]
        c = self.cfg.cli
        reader = EventReader(c.event_format)
        env = dict(
            self.env,
            ENPIRE_AGENT_ID=agent_id,
            ENPIRE_RUN_ID=self.cfg.run_id,
            TMPDIR=str(files["tmp"]),
        )
        if files.get("mcp_token"):
            env[TOKEN_ENV] = files["mcp_token"]
        cwd = files["worktree"]
        t_start = time.time()
        with (
            (log_dir / f"{agent_id}.stderr.log").open("ab") as err,
            (log_dir / f"{agent_id}.events.jsonl").open("a") as events,
        ):
            events.write(
                json.dumps(
                    {"host": "turn", "argv": [shlex.quote(a) for a in argv][:40], "t": t_start}
                )
                + "\n"
            )
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
            with self._lock:
                self._procs[agent_id] = proc
            lines: queue.Queue = queue.Queue()
            threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
            why = ""
            last = time.monotonic()
            while True:
                try:
                    line = lines.get(timeout=0.5)
                except queue.Empty:
                    if self._stop.is_set():
                        _terminate(proc)
                    elif time.monotonic() - last > c.hang_timeout:
                        why = "hung"
                        _terminate(proc)
                    if proc.poll() is not None and lines.empty():
                        break
                    continue
                if line is None:
                    break
                last = time.monotonic()
                events.write(line if line.endswith("\n") else line + "\n")
                reader.feed(line)
                if reader.session:
                    st.session = reader.session
                self._record(agent_id, reader.take(), t_start)
                if self.budget_exhausted(agent_id):
                    why = "budget"
                    _terminate(proc)
            rc = proc.wait()
            with self._lock:
                self._procs.pop(agent_id, None)
        reader.close()
        self._record(agent_id, reader.take(), t_start)
        if reader.session:
            st.session = reader.session
        return rc, why

    def _record(self, agent_id: str, usages: list[Usage], t_start: float) -> None:
        for u in usages:
            self.ledger.add_llm_call(
                {
                    "run_id": self.cfg.run_id,
                    "agent_id": agent_id,
                    "model": u.model or self.cfg.cli.backend,
                    "t_start": t_start,
                    "t_end": time.time(),
                    "prompt_tokens": u.input,
                    "cached_tokens": u.cached,
                    "completion_tokens": u.output,
                    "ok": 1,
                }
            )


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _terminate(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the agent's process group (the CLI and its MCP server), then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- `enpire agents` -------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="enpire agents",
        description="Host coding agents (Claude Code, Codex or a command) against a lab until a "
        "commit is confirmed at the goal rate, or a budget is spent.",
    )
    ap.add_argument("--backend", choices=BACKENDS, default="claude")
    ap.add_argument(
        "--command",
        default="",
        help="the program (claude/codex: the CLI to run; "
        "command: a template with {worktree} {prompt_file} {mcp_config} {session})",
    )
    ap.add_argument(
        "--events",
        choices=("", *EVENT_FORMATS),
        default="",
        help="the command's JSON event stream (default: the backend's)",
    )
    ap.add_argument("--model", default="")
    ap.add_argument("--agents", type=int, default=2)
    ap.add_argument("--run-id", default=time.strftime("agents-%Y%m%d-%H%M%S"))
    ap.add_argument("--data-dir", default=os.path.expanduser("~/.enpire/data"))
    ap.add_argument(
        "--lab",
        choices=("local", "ros"),
        default="local",
        help="local: simulated cells in this process serve the experiments; ros: "
        "the rollout node of `enpire launch` does",
    )
    ap.add_argument("--cells", type=int, default=4, help="--lab local")
    ap.add_argument("--time-scale", type=float, default=1.0, help="--lab local: cell clock/wall")
    ap.add_argument("--max-steps", type=int, default=300, help="--lab local: steps per episode")
    ap.add_argument("--goal-success", type=float, default=0.95)
    ap.add_argument("--confirm-episodes", type=int, default=200)
    ap.add_argument("--confirm-chunk", type=int, default=50)
    ap.add_argument("--max-in-flight", type=int, default=2)
    ap.add_argument("--wall-budget", type=float, default=0.0, help="s; 0 = none")
    ap.add_argument("--token-budget", type=int, default=0)
    ap.add_argument("--agent-token-budget", type=int, default=0)
    ap.add_argument("--hang-timeout", type=float, default=900.0)
    ap.add_argument("--max-restarts", type=int, default=5)
    ap.add_argument("--backoff", type=float, default=5.0)
    ap.add_argument("--max-turns", type=int, default=0)
    ap.add_argument(
        "--isolation",
        choices=("auto", "landlock", "none"),
        default="auto",
        help="landlock: each CLI writes only its worktree, the shared repository, "
        "its temp and state folders (the lab's tools come over HTTP)",
    )
    ap.add_argument(
        "--writable",
        action="append",
        default=[],
        help="another folder a confined agent may write (repeatable)",
    )
    args = ap.parse_args(argv)
    cli = CliAgentConfig(
        backend=args.backend,
        command=shlex.split(args.command),
        events=args.events,
        model=args.model,
        lab="shared" if args.lab == "local" else "ros",
        max_in_flight=args.max_in_flight,
        hang_timeout=args.hang_timeout,
        max_restarts=args.max_restarts,
        isolation=args.isolation,
        writable=args.writable,
        backoff=args.backoff,
        max_turns=args.max_turns,
    )
    cfg = HostConfig(
        run_id=args.run_id,
        agents=args.agents,
        goal_success=args.goal_success,
        confirm_episodes=args.confirm_episodes,
        confirm_chunk=args.confirm_chunk,
        wall_budget=args.wall_budget,
        token_budget=args.token_budget,
        agent_token_budget=args.agent_token_budget,
        cli=cli,
    )
    exe = cli.command[0] if cli.command else args.backend
    if not shutil.which(exe):
        hint = {
            "claude": "npm install -g @anthropic-ai/claude-code",
            "codex": "npm install -g @openai/codex",
        }.get(exe, "or pass --command")
        print(f"enpire agents: no {exe!r} on PATH ({hint})", file=sys.stderr)
        return 2
    host = AgentHost(cfg, args.data_dir, log=lambda m: print(m, flush=True))
    fleet = None
    if args.lab == "local":
        from enpire_evolve.mcp_server import local_fleet
        from enpire_rollout.experiments import ConfirmRule

        rule = ConfirmRule(args.goal_success, args.confirm_chunk, args.confirm_episodes)
        fleet = local_fleet(
            host.ledger,
            host.data_dir,
            args.cells,
            args.max_steps,
            args.time_scale,
            server=f"agents-{args.run_id}",
            confirm=rule,
        )
    signal.signal(signal.SIGTERM, lambda *_: host.stop("terminated"))
    print(
        f"enpire agents: {args.agents} {args.backend} agent(s), run {args.run_id}, "
        f"logs in {host.run_dir / 'logs'}",
        flush=True,
    )
    try:
        out = host.run()
    finally:
        if fleet is not None:
            fleet[1].close()
            fleet[0].close()
    print(json.dumps({k: v for k, v in out.items() if k != "leaderboard"}, default=str))
    from enpire_evolve.report import write_report

    paths = write_report(host.ledger, args.run_id, host.data_dir / "reports")
    print(f"enpire agents: report {paths['html']}", flush=True)
    return 0 if out.get("reason") == "goal" else 1
