"""The lab as tools, ROS-free: everything an agent may do, over a :class:`enpire_evolve.lab.Lab`
(the fleet over ROS, or simulated cells in this process). The MCP server
(:mod:`enpire_evolve.mcp_server`) exposes these to Claude Code, Codex or any MCP client; every
call is a row in the ledger's ``tool_calls`` (agent, tool, duration, outcome).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from enpire_env.pusht_geometry import SUCCESS_THRESHOLD
from enpire_env.tasks import PUSHT
from enpire_evolve.lab import Lab
from enpire_evolve.repo import POLICY_MODULE, GitError, git
from enpire_policy.episode import wilson_interval
from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.experiments import ExperimentQueue, QueueError
from enpire_rollout.ledger import Ledger, LedgerReader, QueryError

MAX_EPISODES_PER_CALL = 200
QUERY_ROWS, QUERY_SECONDS = 200, 2.0
MAX_WAIT = 600.0  # s one wait_experiment call may block
FRAMES_PER_CASE = 2  # first and last camera frame of a failed episode

# the environment variable carrying an agent's token for its HTTP MCP server (enpire agents)
TOKEN_ENV = "ENPIRE_MCP_TOKEN"


class ToolError(ValueError):
    """A refused or failed tool call; the message says why (the agent reads it)."""


@dataclass
class TaskRules:
    """What the agents work on and what is not theirs to change."""

    task: str = "pusht"
    goal_success: float = 0.95
    protected: list[str] = field(
        default_factory=lambda: ["tests/", "AGENTS.md", "CLAUDE.md", ".enpire/"]
    )
    score_to_beat: float = 0.0
    base: str = ""  # commit the protected paths are compared with ("" = the repo's origin/main)
    run_id: str = ""

    def touched(self, repo: str | Path, commit: str) -> list[str]:
        """Protected paths that ``commit`` changes relative to the base."""
        base = self.base or git(repo, "rev-parse", "--verify", "refs/remotes/origin/main")
        changed = git(repo, "diff", "--name-only", "--no-renames", base, commit).splitlines()
        return sorted(
            f
            for f in changed
            if any(f == p or (p.endswith("/") and f.startswith(p)) for p in self.protected)
        )


class LabTools:
    def __init__(
        self,
        lab: Lab,
        ledger: Ledger,
        agent_id: str,
        rules: TaskRules | None = None,
        queue: ExperimentQueue | None = None,
        repo: str | Path = "",
    ):
        self.lab, self.ledger, self.agent_id = lab, ledger, agent_id
        self.rules = rules or TaskRules()
        self.queue = queue or ExperimentQueue(ledger)
        self.repo = Path(repo) if repo else None
        self._reader = LedgerReader(ledger.path)

    def _logged(self, tool: str, fn: Callable[[], dict], detail: str = "") -> dict:
        t0 = time.time()
        outcome = "ok"
        try:
            out = fn()
            if isinstance(out, dict) and out.get("error_code"):
                outcome = f"error {out['error_code']}"
            return out
        except Exception as e:
            outcome = f"{type(e).__name__}: {e}"[:300]
            raise
        finally:
            self.ledger.add_tool_call(
                {
                    "agent_id": self.agent_id,
                    "tool": tool,
                    "t_start": t0,
                    "duration": time.time() - t0,
                    "outcome": outcome,
                    "detail": detail[:500],
                }
            )

    # --- the tools ----------------------------------------------------------------------
    def task(self) -> dict:
        """The task, how success is judged, what is protected, the score to beat."""
        r = self.rules

        def run() -> dict:
            return {
                "task": r.task,
                "goal": "push the T-shaped block onto the goal region (gym-pusht's PushT)",
                "success": f"coverage of the goal region >= {SUCCESS_THRESHOLD:g} "
                f"within {PUSHT.max_steps} control steps at {PUSHT.control_hz:g} Hz",
                "goal_success_rate": r.goal_success,
                "score_to_beat": r.score_to_beat,
                "protected_paths": r.protected,
                "policy_interface": "enpire_policy.interface: class Policy with reset(seed), "
                "act(obs) -> {'tip': [u, v], 'lift': bool} or {'joints': [...]}, metadata()",
                "max_episodes_per_rollout": MAX_EPISODES_PER_CALL,
            }

        return self._logged("task", run)

    def rollout(
        self,
        episodes: int,
        seed: int,
        policy: PolicyRef,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> dict:
        """Run a policy for seeded episodes; blocks until done."""
        ref = replace(policy, agent_id=self.agent_id)
        detail = json.dumps({"episodes": episodes, "seed": seed, "policy": ref.label})

        def run() -> dict:
            if not 0 < episodes <= MAX_EPISODES_PER_CALL:
                raise ToolError(f"episodes must be 1 .. {MAX_EPISODES_PER_CALL}, got {episodes}")
            out = self.lab.rollout(ref.to_dict(), episodes, seed, self.agent_id, progress)
            res = out.failure_summary()
            res.update(
                error_code=out.error_code,
                ci=[round(out.ci_low, 4), round(out.ci_high, 4)],
                robot_seconds=round(out.robot_seconds, 2),
            )
            return res

        return self._logged("rollout", run, detail)

    def train(
        self,
        recipe: str,
        hyperparameters: dict,
        time_budget: float,
        policy: PolicyRef,
        progress: Callable[[float, str], None] | None = None,
    ) -> dict:
        """Improve a policy with one of PI's recipes; the artifact path comes back.
        ``progress(fraction, stage)`` as the recipe reports it."""
        ref = replace(policy, agent_id=self.agent_id)

        def run() -> dict:
            t = self.lab.train(
                recipe, ref.to_dict(), dict(hyperparameters), time_budget, self.agent_id, progress
            )
            return {
                "error_code": t.error_code,
                "error_msg": t.error_msg,
                "artifact": t.artifact,
                "metrics": t.metrics,
            }

        return self._logged("train", run, json.dumps({"recipe": recipe}))

    def score(self, window: int = 50) -> dict:
        """This agent's success rate over its last ``window`` counted episodes, with a 95%
        interval (as ENPIRE's ``score --window``)."""

        def run() -> dict:
            rows = self._reader.query(
                "SELECT success FROM episodes WHERE agent_id = ? AND status IN "
                "('success', 'failure', 'policy_error') ORDER BY wall_end DESC LIMIT ?",
                (self.agent_id, int(window)),
                max_rows=max(int(window), 1),
            )
            n, k = len(rows), sum(int(r["success"]) for r in rows)
            lo, hi = wilson_interval(k, n)
            return {
                "episodes": n,
                "successes": k,
                "success_rate": k / n if n else 0.0,
                "ci": [round(lo, 4), round(hi, 4)],
                "window": window,
            }

        return self._logged("score", run)

    def query_ledger(self, sql: str) -> dict:
        """A read-only SQL query of the experiment ledger (SELECT only; at most 200 rows and
        2 s)."""

        def run() -> dict:
            try:
                rows = self._reader.query(sql, max_rows=QUERY_ROWS, timeout=QUERY_SECONDS)
            except QueryError as e:
                raise ToolError(f"query refused: {e}") from None
            return {"rows": rows, "count": len(rows)}

        return self._logged("query_ledger", run, sql)

    # --- asynchronous experiments -------------------------------------------------------
    def submit_experiment(
        self,
        commit: str = "HEAD",
        episodes: int = 10,
        kind: str = "screen",
        seed: int = 0,
        artifact: str = "",
        module: str = POLICY_MODULE,
        note: str = "",
    ) -> dict:
        """Queue a commit of the agent's repository; returns the experiment id at once."""
        detail = json.dumps({"commit": commit, "episodes": episodes, "kind": kind})

        def run() -> dict:
            if self.repo is None:
                raise ToolError("this server has no agent repository (start it with --repo)")
            try:
                sha = git(self.repo, "rev-parse", "--verify", f"{commit}^{{commit}}")
            except GitError:
                raise ToolError(f"no commit {commit!r} in {self.repo}") from None
            touched = self.rules.touched(self.repo, sha)
            if touched:
                raise ToolError(
                    f"refused: commit {sha[:10]} changes protected paths {touched}; the task's "
                    "evaluation is not the agents' to change (revert those files and commit)"
                )
            ref = PolicyRef(
                f"{self.agent_id}@{sha[:8]}", self.agent_id, str(self.repo), sha, module, artifact
            )
            try:
                exp = self.queue.submit(
                    self.agent_id, ref, episodes, kind, seed, self.rules.run_id, note
                )
            except QueueError as e:
                raise ToolError(str(e)) from None
            return exp.summary()

        return self._logged("submit_experiment", run, detail)

    def _own(self, experiment_id: str):
        exp = self.queue.get(experiment_id)
        if exp is None:
            raise ToolError(f"no experiment {experiment_id}")
        return exp

    def experiment_status(self, experiment_id: str = "") -> dict:
        """One experiment, or (no id) this agent's last 20."""

        def run() -> dict:
            if experiment_id:
                return self._own(experiment_id).summary()
            rows = self._reader.query(
                "SELECT id FROM experiments WHERE agent_id = ? ORDER BY submitted DESC LIMIT 20",
                (self.agent_id,),
            )
            return {"experiments": [self.queue.get(r["id"]).summary() for r in rows]}

        return self._logged("experiment_status", run, experiment_id)

    def wait_experiment(
        self,
        experiment_id: str,
        timeout: float = 300.0,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> dict:
        """Until the experiment is done or ``timeout`` s (at most 600) passed."""

        def run() -> dict:
            self._own(experiment_id)

            def moved(e) -> None:
                if progress is not None:
                    progress(e.episodes_done, e.episodes, 0)

            exp = self.queue.wait(experiment_id, min(max(timeout, 0.0), MAX_WAIT), moved)
            return exp.summary()

        return self._logged("wait_experiment", run, experiment_id)

    def cancel_experiment(self, experiment_id: str) -> dict:
        def run() -> dict:
            try:
                return self.queue.cancel(experiment_id, self.agent_id).summary()
            except QueueError as e:
                raise ToolError(str(e)) from None

        return self._logged("cancel_experiment", run, experiment_id)

    def leaderboard(self) -> dict:
        """Every agent's evaluated commits (screening and confirmation), best first."""

        def run() -> dict:
            run_id = self.rules.run_id or None
            return {"entries": self.queue.leaderboard(run_id), "goal": self.rules.goal_success}

        return self._logged("leaderboard", run)

    def failure_cases(self, experiment_id: str, limit: int = 3) -> tuple[dict, list]:
        """The failed episodes of an experiment and, where they were recorded with video, their
        first and last camera frames as PNG: ``(summary, [(episode_id, which, png), ...])``."""
        frames: list = []

        def run() -> dict:
            exp = self._own(experiment_id)
            if not exp.goal_id:
                raise ToolError(f"experiment {experiment_id} has not started")
            rows = self._reader.query(
                "SELECT id, seed, status, steps, error, dataset, dataset_index, mcap FROM"
                " episodes WHERE goal_id = ? AND success = 0 ORDER BY wall_start LIMIT ?",
                (exp.goal_id, max(1, min(int(limit), 10))),
            )
            cases = []
            for r in rows:
                case = {k: r[k] for k in ("id", "status", "steps", "mcap")}
                case["error"] = (r["error"] or "")[-600:]
                if exp.kind == "screen":
                    case["seed"] = r["seed"]
                for which, png in _episode_pngs(r["dataset"], r["dataset_index"]):
                    frames.append((r["id"], which, png))
                    case.setdefault("frames", []).append(which)
                cases.append(case)
            return {"experiment": experiment_id, "failures": cases}

        return self._logged("failure_cases", run, experiment_id), frames

    def fleet_status(self) -> dict:
        """The robots the lab has (empty for a local lab: one simulated cell in process)."""
        return self._logged("fleet_status", lambda: {"robots": self.lab.robots()})


def _episode_pngs(dataset: str | None, index: int | None) -> list[tuple[str, bytes]]:
    """First and last frame of a recorded episode as PNG (none without a video)."""
    if not dataset or index is None or index < 0:
        return []
    import cv2

    from enpire_policy.lerobot_dataset import read_episode_frames

    try:
        video = read_episode_frames(dataset, int(index))
    except (OSError, ValueError):
        return []
    if len(video) == 0:
        return []
    out = []
    for which, frame in (("first", video[0]), ("last", video[-1]))[:FRAMES_PER_CASE]:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if ok:
            out.append((which, buf.tobytes()))
    return out
