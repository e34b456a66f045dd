"""The agents' loop, ROS-free: N agents, each in its own git tree, share a lab and a ledger.

Each agent step: adopt a better branch of another agent if there is one → the agent edits its
tree (offline rules or an LLM with tools) → commit → the tree's own tests → Rollout on the
screening set (the same seeds for every candidate) → keep the commit if it beats its parent,
else discard it (it stays under ``refs/experiments/``) → one ``agent_steps`` row in the ledger.
A kept candidate that reaches the goal rate is confirmed on fresh seeds by a separate Rollout;
a confirmed one ends the run. Budgets (wall time, robot seconds, tokens; total and per agent)
end it too. Everything the loop knows is in the ledger and in git, so a killed host resumes
where it stopped: each agent goes back to its last kept commit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from enpire_evolve.agents.base import Agent, AgentContext, AgentPausedError, Proposal
from enpire_evolve.lab import Lab, QueueLab, RolloutSummary
from enpire_evolve.repo import POLICY_MODULE, AgentTree, GitError, SharedRepo
from enpire_evolve.selfcheck import run_selfcheck
from enpire_rollout.experiments import allowed_failures

NOTES_DIR = Path(__file__).resolve().parent / "notes"
EXPERIMENT_OUTCOMES = ("kept", "discarded", "tests_failed")


@dataclass
class LlmConfig:
    base_url: str = ""  # "" = the openai client's default / OPENAI_BASE_URL
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0  # s per request
    retries: int = 4  # attempts per request, with exponential backoff
    backoff: float = 2.0  # s before the first retry
    max_turns: int = 30  # tool calls per experiment
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.retries < 1 or self.backoff < 0 or self.max_turns < 1:
            raise ValueError("llm: timeout > 0, retries >= 1, backoff >= 0, max_turns >= 1")


@dataclass
class EvolveConfig:
    run_id: str = "run"
    agents: int = 2
    backend: str = "offline"  # offline | openai
    screen_episodes: int = 10  # episodes per candidate (same seeds for all)
    screen_seed: int = 0
    goal_success: float = 0.99
    confirm_episodes: int = 200  # fresh episodes that confirm the goal
    confirm_seed: int = 1_000_000
    confirm_chunk: int = 50  # confirmation runs in chunks and stops once it cannot pass
    wall_budget: float = 900.0  # s; 0 = none
    robot_seconds_budget: float = 0.0  # robot-s of experiments, all agents; 0 = none
    agent_robot_seconds_budget: float = 0.0  # robot-s per agent; 0 = none
    token_budget: int = 0  # LLM tokens, all agents; 0 = none
    agent_token_budget: int = 0  # LLM tokens per agent; 0 = none
    max_experiments: int = 0  # per agent; 0 = none
    adopt_margin: float = 0.05  # adopt a branch this much better than one's own
    test_timeout: float = 120.0
    train_every: int = 4  # offline agent: every n-th experiment is a Train goal; 0 = never
    train_budget: float = 60.0
    pause_seconds: float = 30.0  # an agent whose backend fails waits this long
    seed: int = 0
    llm: LlmConfig = field(default_factory=LlmConfig)

    def __post_init__(self) -> None:
        if isinstance(self.llm, dict):
            self.llm = LlmConfig(**self.llm)
        if not self.run_id or not all(c.isalnum() or c in "-_." for c in self.run_id):
            raise ValueError(f"run_id must be letters, digits, '-', '_' or '.': {self.run_id!r}")
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents}")
        if self.backend not in ("offline", "openai"):
            raise ValueError(f"backend must be 'offline' or 'openai', got {self.backend!r}")
        if self.screen_episodes < 1 or self.confirm_episodes < 1 or self.confirm_chunk < 1:
            raise ValueError("screen_episodes and confirm_episodes must be >= 1")
        if not 0 < self.goal_success <= 1:
            raise ValueError(f"goal_success must be in (0, 1], got {self.goal_success}")
        for name in ("wall_budget", "robot_seconds_budget", "agent_robot_seconds_budget",
                     "token_budget", "agent_token_budget",
                     "max_experiments", "adopt_margin", "test_timeout", "pause_seconds",
                     "train_budget", "train_every"):  # fmt: skip
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if abs(self.confirm_seed - self.screen_seed) < self.screen_episodes:
            raise ValueError("confirm_seed must be away from the screening seeds (fresh episodes)")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AgentStatus:
    agent_id: str
    state: str = "starting"  # starting | thinking | testing | training | rollout | paused | done
    experiments: int = 0
    best_rate: float = 0.0
    parent: str = ""
    message: str = ""


class Evolution:
    """Hosts the agents of one run; ``run()`` blocks until the goal, a budget or ``stop()``."""

    def __init__(self, cfg: EvolveConfig, lab: Lab, data_dir: str | Path, ledger=None,
                 make_agent=None, log=print):  # fmt: skip
        from enpire_rollout.ledger import Ledger

        self.cfg, self.lab, self.log = cfg, lab, log
        self.run_dir = Path(data_dir).expanduser() / "evolve" / cfg.run_id
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = ledger or Ledger(Path(data_dir).expanduser() / "ledger.sqlite")
        self.shared = SharedRepo.create(self.run_dir / "shared.git")
        self.make_agent = make_agent or self._default_agent
        self.agent_ids = [f"agent_{i}" for i in range(cfg.agents)]
        self.status = {a: AgentStatus(a) for a in self.agent_ids}
        self._stop = threading.Event()
        self._lock = threading.Lock()  # ledger reads that decide, confirmations, eval cache
        self._confirm_lock = threading.Lock()
        self._no_confirmation = threading.Event()  # clear while a confirmation runs
        self._no_confirmation.set()
        self._eval_cache: dict[str, RolloutSummary | threading.Event] = {}
        self.outcome: dict = {}
        self.t_start = time.monotonic()
        run = self.ledger.open_run(cfg.run_id, cfg.to_dict())
        self.wall_before = float(run.get("wall_used") or 0.0)  # from earlier (resumed) runs
        prior = json.loads(run.get("result") or "{}")
        if prior.get("reason") == "goal":
            self.outcome = prior  # already solved: nothing more to do

    # --- control -----------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        if not self.outcome:
            self.outcome = {"reason": reason}
        self._stop.set()
        self.lab.cancel_all()  # robots stop with the run, not after their current goals

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wall_used(self) -> float:
        return self.wall_before + time.monotonic() - self.t_start

    def budget_exhausted(self, agent_id: str | None = None) -> str:
        """Why the run (or this agent) must stop, or ''."""
        c = self.cfg
        if c.wall_budget and self.wall_used() >= c.wall_budget:
            return f"wall-time budget of {c.wall_budget:g} s spent"
        if (
            c.robot_seconds_budget
            and self.ledger.robot_seconds(c.run_id) >= c.robot_seconds_budget
        ):
            return f"robot-time budget of {c.robot_seconds_budget:g} robot-s spent"
        if c.token_budget and sum(self.ledger.tokens(c.run_id)) >= c.token_budget:
            return f"token budget of {c.token_budget} spent"
        if agent_id and c.agent_robot_seconds_budget:
            if self.ledger.robot_seconds(c.run_id, agent_id) >= c.agent_robot_seconds_budget:
                return (
                    f"{agent_id}'s robot-time budget of {c.agent_robot_seconds_budget:g} s spent"
                )
        if agent_id and c.agent_token_budget:
            if sum(self.ledger.tokens(c.run_id, agent_id)) >= c.agent_token_budget:
                return f"{agent_id}'s token budget of {c.agent_token_budget} spent"
        return ""

    def run(self, poll: float = 1.0) -> dict:
        """Run every agent until the goal or a budget; returns the outcome."""
        if self.outcome.get("reason") == "goal":
            self.log(f"evolve: run {self.cfg.run_id} already reached its goal")
            return self.outcome
        threads = [threading.Thread(target=self._agent_main, args=(a,), name=a, daemon=True)
                   for a in self.agent_ids]  # fmt: skip
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                why = self.budget_exhausted()
                if why:
                    self.stop(why)
                self._goal_from_fleet()
                self.ledger.update_run(self.cfg.run_id, wall_used=self.wall_used())
                for t in threads:
                    t.join(timeout=poll / len(threads))
        except KeyboardInterrupt:
            self.stop("interrupted")
            for t in threads:
                t.join(timeout=60)
        if not self.outcome:
            self.outcome = {"reason": "agents finished"}
        self.outcome.setdefault("best", self.best())
        self.outcome["wall_seconds"] = self.wall_used()
        status = "done" if self.outcome.get("reason") == "goal" else "stopped"
        self.ledger.update_run(self.cfg.run_id, status=status, wall_used=self.wall_used(),
                               finished=time.time(), result=self.outcome)  # fmt: skip
        return self.outcome

    def _goal_from_fleet(self) -> None:
        """The fleet confirms candidates on its own (idle robots): one that passed ends the run
        as if its agent had asked."""
        if not isinstance(self.lab, QueueLab) or self.stopped:
            return
        c = self.cfg
        for row in self.lab.confirmed_commits():
            n, k = int(row["n"] or 0), int(row["k"] or 0)
            if n < c.confirm_episodes or k / n < c.goal_success:
                continue
            step = self.ledger.query(
                "SELECT agent_id, commit_sha FROM agent_steps WHERE run_id = ? AND kept = 1 AND"
                " (commit_sha = ? OR json_extract(details, '$.evaluated_sha') = ?)"
                " ORDER BY id LIMIT 1",
                (c.run_id, row["commit_sha"], row["commit_sha"]),
            )
            agent = step[0]["agent_id"] if step else row["agent_id"]
            if agent not in self.status:
                continue
            res = RolloutSummary().count(n, k)
            sha = step[0]["commit_sha"] if step else row["commit_sha"]
            rate = self.status[agent].best_rate
            if self._confirmed(agent, sha, res, time.time(), rate):
                return

    def best(self) -> dict:
        rows = self.ledger.query(
            "SELECT agent_id, commit_sha, success_rate, hypothesis, branch FROM agent_steps"
            " WHERE run_id = ? AND kept = 1 AND outcome IN ('kept', 'baseline', 'adopted')"
            " ORDER BY success_rate DESC, id ASC LIMIT 1",
            (self.cfg.run_id,),
        )
        return rows[0] if rows else {}

    # --- one agent ---------------------------------------------------------------------
    def _default_agent(self, agent_id: str, index: int) -> Agent:
        if self.cfg.backend == "openai":
            from enpire_evolve.agents.llm import LlmAgent

            return LlmAgent(agent_id, self.cfg.llm, self.ledger, self.cfg.run_id)
        from enpire_evolve.agents.offline import OfflineAgent

        return OfflineAgent(agent_id, seed=self.cfg.seed + index,
                            train_every=int(self.cfg.train_every),
                            train_budget=self.cfg.train_budget)  # fmt: skip

    def add_step(self, agent_id: str, row: dict) -> None:
        """One agent_steps row of this run for ``agent_id`` (on its own branch; tokens 0
        unless the row says otherwise)."""
        base = {"run_id": self.cfg.run_id, "agent_id": agent_id, "branch": agent_id,
                "prompt_tokens": 0, "completion_tokens": 0}  # fmt: skip
        self.ledger.add_agent_step({**base, **row})

    def _agent_main(self, agent_id: str) -> None:
        st, t0 = self.status[agent_id], time.time()
        try:
            _AgentRunner(self, agent_id).loop()
        except Exception as e:  # a broken agent ends itself, never the others
            st.state, st.message = "failed", f"{type(e).__name__}: {e}"
            tb = traceback.format_exc(limit=6)
            self.log(f"evolve: {agent_id} failed: {e}\n{tb}")
            try:  # the morning report is built from the ledger: say there why it stopped
                details = {"error": tb}
                self.ledger.add_agent_failed(self.cfg.run_id, agent_id, st.message, t0, details)
            except Exception as le:  # noqa: BLE001 - the ledger's own failure is logged only
                self.log(f"evolve: {agent_id}: its failure could not be recorded: {le}")
        else:
            if st.state != "failed":
                st.state = "done"

    def evaluate(self, tree: AgentTree, sha: str, agent_id: str, episodes: int, seed: int,
                 artifact: str = "", cache: bool = True,
                 stop_when=None) -> RolloutSummary:  # fmt: skip
        """A Rollout of ``sha``; identical code on the same seeds is evaluated once."""
        key = f"{tree.tree_hash(sha)}:{artifact}:{episodes}:{seed}"
        if cache:  # screening waits while a confirmation has the fleet: it may end the run
            st = self.status.get(agent_id)
            while not self._no_confirmation.wait(0.5) and not self.stopped:
                if st is not None:
                    st.state = "waiting"
            if st is not None:
                st.state = "rollout"
            while True:
                with self._lock:
                    hit = self._eval_cache.get(key)
                    if hit is None:  # nobody has it: this call evaluates it
                        self._eval_cache[key] = threading.Event()
                        break
                if isinstance(hit, RolloutSummary):
                    return dataclasses.replace(hit, cached=True, robot_seconds=0.0)
                hit.wait()  # another agent is evaluating the same code on the same seeds
        ref = {"name": f"{agent_id}@{sha[:8]}", "agent_id": agent_id, "repo_path": str(tree.path),
               "commit": sha, "module": POLICY_MODULE, "artifact": artifact}  # fmt: skip
        res = None
        try:
            res = self.lab.rollout(ref, episodes, seed, agent_id, stop_when=stop_when)
            return res
        finally:
            if cache:
                with self._lock:
                    pending = self._eval_cache.pop(key)
                    if res is not None and not res.error_code:
                        self._eval_cache[key] = res
                pending.set()

    def _confirmation(self, runner: _AgentRunner, sha: str) -> RolloutSummary:
        """Fresh episodes in chunks; stops early once more episodes failed than the goal
        allows over the whole confirmation."""
        c = self.cfg
        allowed = allowed_failures(c.goal_success, c.confirm_episodes)
        total = RolloutSummary()
        while total.num_episodes < c.confirm_episodes and not self.stopped:
            n = min(c.confirm_chunk, c.confirm_episodes - total.num_episodes)
            failed_before = total.num_episodes - total.successes

            def cannot_pass(done: int, _total: int, successes: int, before=failed_before) -> bool:
                return before + done - successes > allowed

            r = self.evaluate(runner.tree, sha, runner.agent_id, n,
                              c.confirm_seed + total.num_episodes, cache=False,
                              stop_when=cannot_pass)  # fmt: skip
            total.episodes += r.episodes
            total.num_episodes += r.num_episodes
            total.successes += r.successes
            total.robot_seconds += r.robot_seconds
            total.wall_seconds += r.wall_seconds
            if total.num_episodes - total.successes > allowed:
                total.error_msg = (f"stopped early: {total.num_episodes - total.successes} "
                                   f"failures > {allowed} allowed")  # fmt: skip
                break
            if r.error_code:
                total.error_code, total.error_msg = r.error_code, r.error_msg
                break
        return total.count(total.num_episodes, total.successes)

    def _queued_confirmation(self, runner: _AgentRunner, sha: str, evaluated: str):
        """The fleet's confirmation of ``evaluated`` (fresh seeds the queue draws, in chunks the
        feeder queues until it passes or cannot); one chunk is queued here if the feeder has not
        queued any."""
        c, lab = self.cfg, self.lab
        allowed = allowed_failures(c.goal_success, c.confirm_episodes)
        ref = {"name": f"{runner.agent_id}@{evaluated[:8]}", "agent_id": runner.agent_id,
               "repo_path": str(runner.tree.path), "commit": evaluated,
               "module": POLICY_MODULE}  # fmt: skip
        idle_since = time.monotonic()
        total = RolloutSummary()
        while not self.stopped:
            n, k = lab.confirmation(evaluated)
            total.num_episodes, total.successes = n, k
            if n - k > allowed:
                total.error_msg = f"stopped early: {n - k} failures > {allowed} allowed"
                break
            if n >= c.confirm_episodes:
                break
            if lab.confirmation_pending(evaluated):
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > 2.0:  # the feeder did not take it up
                lab.confirm(ref, min(c.confirm_chunk, c.confirm_episodes - n), runner.agent_id)
                idle_since = time.monotonic()
            self._stop.wait(0.5)
        return total.count(total.num_episodes, total.successes)

    def confirm(self, runner: _AgentRunner, sha: str, evaluated: str = "") -> bool:
        """The separate evaluation on fresh seeds; True ends the run with this commit."""
        if isinstance(self.lab, QueueLab):  # the fleet confirms: no fleet-wide lock
            runner.st.state = "confirming"
            t0 = time.time()
            res = self._queued_confirmation(runner, sha, evaluated or sha)
            if self.stopped and self.outcome.get("reason") != "goal":
                return False  # the run ended first: no verdict
            return self._confirmed(runner.agent_id, sha, res, t0, runner.parent_rate)
        with self._confirm_lock:
            if self.stopped:
                return False
            runner.st.state = "confirming"
            t0 = time.time()
            self._no_confirmation.clear()
            try:
                res = self._confirmation(runner, sha)
            finally:
                self._no_confirmation.set()
            return self._confirmed(runner.agent_id, sha, res, t0, runner.parent_rate)

    def _confirmed(self, agent_id: str, sha: str, res: RolloutSummary, t0: float,
                   parent_rate: float) -> bool:  # fmt: skip
        """Record a confirmation's verdict; True (and the run's goal) when it passed."""
        c = self.cfg
        with self._lock:
            if self.outcome.get("reason") == "goal":
                return False  # another confirmation ended the run first
            ok = (not res.error_code and res.num_episodes >= c.confirm_episodes
                  and res.success_rate >= c.goal_success and not self.stopped)  # fmt: skip
            self.add_step(agent_id, {
                "commit_sha": sha, "parent_sha": sha,
                "hypothesis": f"confirm on {c.confirm_episodes} fresh episodes",
                "parent_rate": parent_rate,
                "outcome": "confirmed" if ok else "not_confirmed",
                "success_rate": res.success_rate, "episodes": res.num_episodes,
                "successes": res.successes, "robot_seconds": res.robot_seconds,
                "wall_start": t0, "wall_end": time.time(), "kept": 0,
                "details": {"ci": [res.ci_low, res.ci_high], "error": res.error_msg,
                            "failures": res.failure_summary(),
                            "episode_ids": [e.episode_id for e in res.episodes]},
            })  # fmt: skip
            self.log(f"evolve: {agent_id} {sha[:8]} confirmation: {res.successes}/"
                     f"{res.num_episodes} = {res.success_rate:.1%} "
                     f"(95% CI {res.ci_low:.1%}-{res.ci_high:.1%})")  # fmt: skip
            if ok:
                self.outcome = {
                    "reason": "goal", "agent_id": agent_id, "commit": sha,
                    "success_rate": res.success_rate, "ci": [res.ci_low, res.ci_high],
                    "episodes": res.num_episodes, "wall_seconds": self.wall_used(),
                    "shared_repo": str(self.shared.path), "branch": agent_id,
                }  # fmt: skip
                self._stop.set()
            return ok


class _AgentRunner:
    def __init__(self, evo: Evolution, agent_id: str):
        self.evo, self.agent_id = evo, agent_id
        self.cfg = evo.cfg
        self.st = evo.status[agent_id]
        self.tree = AgentTree.open(evo.shared, evo.run_dir / "agents" / agent_id, agent_id)
        self.agent = evo.make_agent(agent_id, evo.agent_ids.index(agent_id))
        self.parent, self.parent_rate, self.last_failures = "", 0.0, {}
        self.parent_score = -math.inf
        self.idle = self.errors = 0

    def _log(self, msg: str) -> None:
        self.st.message = msg
        self.evo.log(f"evolve: {self.agent_id}: {msg}")

    def _history(self) -> list[dict]:
        return self.evo.ledger.agent_steps(self.cfg.run_id, self.agent_id)

    def _record(self, row: dict) -> None:
        self.evo.add_step(self.agent_id, row)

    def _resume_or_baseline(self) -> None:
        kept = [r for r in self._history() if r["kept"]]
        if kept:
            last = kept[-1]
            self.tree.fetch()
            if self.tree.has_commit(last["commit_sha"]):
                self.tree.reset_to(last["commit_sha"])
                self.parent, self.parent_rate = last["commit_sha"], last["success_rate"] or 0.0
                details = json.loads(last.get("details") or "{}")
                self.last_failures = details.get("failures", {})
                self.parent_score = details.get("score", self.parent_rate)
                self._log(f"resumed at {self.parent[:8]} ({self.parent_rate:.0%})")
                return
        self.st.state = "rollout"
        sha = self.tree.head()
        t0 = time.time()
        res = self.evo.evaluate(self.tree, sha, self.agent_id, self.cfg.screen_episodes,
                                self.cfg.screen_seed)  # fmt: skip
        self.parent, self.parent_rate = sha, res.success_rate
        self.parent_score = res.score()
        self.last_failures = res.failure_summary()
        self._record({"commit_sha": sha, "parent_sha": "", "outcome": "baseline",
                      "hypothesis": "baseline: the start point as it is",
                      "success_rate": res.success_rate, "episodes": res.num_episodes,
                      "successes": res.successes, "robot_seconds": res.robot_seconds,
                      "wall_start": t0, "wall_end": time.time(), "kept": 1,
                      "details": {"failures": self.last_failures,
                                  "score": self.parent_score,
                                  "episode_ids": [e.episode_id for e in res.episodes]},
                      })  # fmt: skip
        self.tree.publish()
        self._log(f"baseline {sha[:8]}: {res.successes}/{res.num_episodes}")

    def _maybe_adopt(self) -> None:
        rows = self.evo.ledger.query(
            "SELECT agent_id, commit_sha, success_rate, details FROM agent_steps"
            " WHERE run_id = ? AND kept = 1 AND agent_id != ? AND outcome IN ('kept', 'adopted')"
            " ORDER BY success_rate DESC, id ASC LIMIT 1",
            (self.cfg.run_id, self.agent_id),
        )
        if not rows or rows[0]["success_rate"] < self.parent_rate + self.cfg.adopt_margin:
            return
        other = rows[0]
        t0 = time.time()
        try:
            self.tree.adopt(other["commit_sha"])
        except GitError as e:
            self._log(f"could not adopt {other['agent_id']}'s {other['commit_sha'][:8]}: {e}")
            return
        prev, prev_rate = self.parent, self.parent_rate
        self.parent, self.parent_rate = other["commit_sha"], other["success_rate"]
        self.st.best_rate, self.st.parent = self.parent_rate, self.parent
        theirs = json.loads(other.get("details") or "{}")
        self.last_failures = theirs.get("failures", {})
        self.parent_score = theirs.get("score", self.parent_rate)
        self.tree.publish()
        self._record({"commit_sha": self.parent, "parent_sha": prev, "outcome": "adopted",
                      "hypothesis": f"adopt {other['agent_id']}'s branch ({self.parent_rate:.0%}"
                                    f" vs my {prev_rate:.0%})",
                      "success_rate": self.parent_rate, "parent_rate": prev_rate, "episodes": 0,
                      "successes": 0, "robot_seconds": 0.0, "wall_start": t0,
                      "wall_end": time.time(), "kept": 1,
                      "details": {"from_agent": other["agent_id"], "score": self.parent_score,
                                  "failures": self.last_failures}})  # fmt: skip
        self._log(f"adopted {other['agent_id']}'s {self.parent[:8]} ({self.parent_rate:.0%})")

    def _context(self) -> AgentContext:
        return AgentContext(
            agent_id=self.agent_id, tree=self.tree, lab=self.evo.lab, parent=self.parent,
            parent_rate=self.parent_rate, last_failures=self.last_failures,
            history=self._history(),
            others=self.evo.ledger.query(
                "SELECT agent_id, commit_sha, success_rate, hypothesis FROM agent_steps"
                " WHERE run_id = ? AND agent_id != ? AND kept = 1 ORDER BY id",
                (self.cfg.run_id, self.agent_id)),
            screen={"episodes": self.cfg.screen_episodes, "seed": self.cfg.screen_seed},
            goal_success=self.cfg.goal_success, notes_dir=str(NOTES_DIR),
            ledger=self.evo.ledger, run_id=self.cfg.run_id,
        )  # fmt: skip

    def loop(self) -> None:
        self._resume_or_baseline()
        self.st.best_rate, self.st.parent = self.parent_rate, self.parent
        while not self.evo.stopped:
            why = self.evo.budget_exhausted(self.agent_id)
            if why:
                self._log(f"stops: {why}")
                return
            done = sum(1 for r in self._history() if r["outcome"] in EXPERIMENT_OUTCOMES)
            self.st.experiments = done
            if self.cfg.max_experiments and done >= self.cfg.max_experiments:
                self._log(f"stops: {done} experiments done")
                return
            self._maybe_adopt()
            self.tree.reset_to(self.parent)
            self.st.state = "thinking"
            t0 = time.time()
            calls_before = self._tokens()
            try:
                proposal = self.agent.propose(self._context())
            except AgentPausedError as e:
                self.st.state = "paused"
                self._log(f"paused: {e}")
                self._record({"commit_sha": self.parent, "parent_sha": self.parent,
                              "outcome": "paused", "hypothesis": str(e)[:500],
                              "wall_start": t0, "wall_end": time.time(), "kept": 0,
                              **self._token_delta(calls_before)})  # fmt: skip
                self.evo._stop.wait(self.cfg.pause_seconds)
                continue
            if proposal is None:
                self.idle += 1
                if self.idle >= 3:
                    self._log("stops: nothing left to try")
                    return
                continue
            self.idle = 0
            try:
                self._experiment(proposal, t0, calls_before)
                self.errors = 0
            except Exception as e:  # a host-side failure (git, lab): log, back off, go on
                self.errors += 1
                self._log(f"experiment failed: {type(e).__name__}: {e}")
                self._record({"commit_sha": self.parent, "parent_sha": self.parent,
                              "outcome": "error", "hypothesis": proposal.hypothesis[:500],
                              "wall_start": t0, "wall_end": time.time(), "kept": 0,
                              "details": {"error": traceback.format_exc(limit=8)},
                              **self._token_delta(calls_before)})  # fmt: skip
                if self.errors >= 5:
                    raise
                self.evo._stop.wait(min(self.cfg.pause_seconds, 5.0 * self.errors))

    def _tokens(self) -> tuple[int, int]:
        return self.evo.ledger.tokens(self.cfg.run_id, self.agent_id)

    def _token_delta(self, before: tuple[int, int]) -> dict:
        p, c = self._tokens()
        return {"prompt_tokens": p - before[0], "completion_tokens": c - before[1]}

    def _experiment(self, proposal: Proposal, t0: float, calls_before) -> None:
        n = len(self._history()) + 1
        exp_ref = f"refs/experiments/{self.agent_id}/{n:04d}"
        sha = self.tree.commit(f"{self.agent_id}: {proposal.hypothesis}"[:2000])
        row = {"parent_sha": self.parent, "hypothesis": proposal.hypothesis[:2000],
               "parent_rate": self.parent_rate, "wall_start": t0}  # fmt: skip
        details = {"move": proposal.move, "diff": self.tree.diff(self.parent)[:20000]}
        self.st.state = "testing"
        ok, out = run_selfcheck(self.tree.path, self.cfg.test_timeout)
        if not ok:
            self._log(f"{sha[:8]} fails its tests; discarded")
            self.tree.discard(self.parent, exp_ref)
            self._record({**row, "commit_sha": sha, "outcome": "tests_failed", "kept": 0,
                          "success_rate": None, "wall_end": time.time(),
                          "details": {**details, "tests": out[-3000:]},
                          **self._token_delta(calls_before)})  # fmt: skip
            return
        self.st.state = "rollout"
        n_screen, bar = self.cfg.screen_episodes, self.parent_rate

        def hopeless(done: int, total: int, successes: int) -> bool:
            # even if every remaining episode succeeded it could not reach its parent's rate
            return (successes + total - done) / total < bar - 1e-9

        res = self.evo.evaluate(self.tree, sha, self.agent_id, n_screen, self.cfg.screen_seed,
                                proposal.artifact, stop_when=hopeless)  # fmt: skip
        fs = res.failure_summary()
        score = res.score()
        early = bool(res.error_code) and res.num_episodes < n_screen and not self.evo.stopped
        kept = not res.error_code and score > self.parent_score + 1e-9
        verdict = "kept" if kept else "discarded"
        if early:
            fs["stopped_early"] = (f"after {res.num_episodes} of {n_screen} episodes: it could "
                                   f"no longer reach its parent's {bar:.0%}")  # fmt: skip
        if res.error_code and self.evo.stopped:
            verdict = "canceled"  # the run ended during the evaluation: no verdict
        message = (f"{self.agent_id}: {proposal.hypothesis}\n\nresult: {res.successes}/"
                   f"{res.num_episodes} = {res.success_rate:.0%} on the screening set (parent "
                   f"{self.parent_rate:.0%}) -> {verdict}")  # fmt: skip
        if early:
            message += f"\n{fs['stopped_early']}"
        elif res.error_code:
            message += f"\nerror {res.error_code}: {res.error_msg[:500]}"
        final = self._amend(message)
        if kept:
            self.tree.publish()
            self.parent, self.parent_rate, self.last_failures = final, res.success_rate, fs
            self.parent_score = score
            self.st.best_rate, self.st.parent = res.success_rate, final
        else:
            self.tree.discard(self.parent, exp_ref)
        self._record({**row, "commit_sha": final, "outcome": verdict, "kept": int(kept),
                      "success_rate": res.success_rate, "episodes": res.num_episodes,
                      "successes": res.successes, "robot_seconds": res.robot_seconds,
                      "wall_end": time.time(),
                      "details": {**details, "failures": fs, "evaluated_sha": sha, "score": score,
                                  "artifact": proposal.artifact, "error": res.error_msg,
                                  "episode_ids": [e.episode_id for e in res.episodes]},
                      **self._token_delta(calls_before)})  # fmt: skip
        self._log(
            f"{final[:8]} {res.successes}/{res.num_episodes} "
            f"(parent {row['parent_rate']:.0%}) {verdict}: {proposal.hypothesis[:100]}"
        )
        if kept and res.success_rate >= self.cfg.goal_success:
            self.evo.confirm(self, final, evaluated=sha)

    def _amend(self, message: str) -> str:
        from enpire_evolve.repo import git

        git(self.tree.path, "commit", "-q", "--amend", "--allow-empty", "-m", message)
        return self.tree.head()
