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

from enpire_env.pusht_geometry import SUCCESS_THRESHOLD
from enpire_env.tasks import PUSHT
from enpire_evolve.lab import Lab
from enpire_policy.episode import wilson_interval
from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.ledger import Ledger, LedgerReader, QueryError

MAX_EPISODES_PER_CALL = 200
QUERY_ROWS, QUERY_SECONDS = 200, 2.0


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


class LabTools:
    def __init__(self, lab: Lab, ledger: Ledger, agent_id: str, rules: TaskRules | None = None):
        self.lab, self.ledger, self.agent_id = lab, ledger, agent_id
        self.rules = rules or TaskRules()
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
        self, recipe: str, hyperparameters: dict, time_budget: float, policy: PolicyRef
    ) -> dict:
        """Improve a policy with one of PI's recipes; the artifact path comes back."""
        ref = replace(policy, agent_id=self.agent_id)

        def run() -> dict:
            t = self.lab.train(
                recipe, ref.to_dict(), dict(hyperparameters), time_budget, self.agent_id
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

    def fleet_status(self) -> dict:
        """The robots the lab has (empty for a local lab: one simulated cell in process)."""
        return self._logged("fleet_status", lambda: {"robots": self.lab.robots()})
