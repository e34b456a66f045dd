"""What an agent can ask of the robots and trainers: ``rollout`` and ``train``.

The evolve node's lab sends Rollout and Train goals over ROS (``evolve_node.RosLab``);
:class:`LocalLab` runs the same requests in this process on simulated PushT cells (gym-pusht
through enpire's episode runner, agent code in the sandbox), for laptops without a fleet and
for testing the agents' logic without a ROS graph.
"""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTCOMES = (
    "success",
    "failure",
    "policy_error",
    "reset_failed",
    "interrupted",
    "safety_stop",
    "canceled",
)  # fmt: skip  (EpisodeResult.OUTCOME_* order)


@dataclass
class EpisodeSummary:
    seed: int
    success: bool
    outcome: str
    steps: int
    final_reward: float = 0.0
    robot_seconds: float = 0.0
    error: str = ""
    episode_id: str = ""
    recording: str = ""


@dataclass
class RolloutSummary:
    num_episodes: int = 0
    successes: int = 0
    success_rate: float = 0.0
    ci_low: float = 0.0
    ci_high: float = 1.0
    robot_seconds: float = 0.0
    wall_seconds: float = 0.0
    episodes: list[EpisodeSummary] = field(default_factory=list)
    error_code: int = 0
    error_msg: str = ""
    cached: bool = False  # an earlier evaluation of the same code and seeds, no robot time

    def to_dict(self) -> dict:
        return asdict(self)

    def count(self, episodes: int, successes: int) -> RolloutSummary:
        """Set the counts, the success rate and its 95% Wilson interval."""
        from enpire_policy.episode import wilson_interval

        self.num_episodes, self.successes = episodes, successes
        self.success_rate = successes / max(episodes, 1)
        self.ci_low, self.ci_high = wilson_interval(successes, episodes)
        return self

    def score(self, max_steps: int = 300) -> float:
        """Success rate, ties broken by speed (mean steps, failures counting the limit)."""
        if not self.episodes:
            return self.success_rate
        steps = [e.steps if e.success else max_steps for e in self.episodes]
        return self.success_rate - 1e-4 * sum(steps) / len(steps)

    def failure_summary(self, limit: int = 8) -> dict:
        """What went wrong, in a form an agent (or a person) reads quickly."""
        by_outcome: dict[str, int] = {}
        for e in self.episodes:
            by_outcome[e.outcome] = by_outcome.get(e.outcome, 0) + 1
        failed = [e for e in self.episodes if not e.success]
        steps_ok = [e.steps for e in self.episodes if e.success]
        return {
            "episodes": self.num_episodes,
            "success_rate": round(self.success_rate, 4),
            "outcomes": by_outcome,
            "mean_steps_of_successes": round(sum(steps_ok) / len(steps_ok), 1)
            if steps_ok
            else None,
            "mean_final_reward_of_failures": round(
                sum(e.final_reward for e in failed) / len(failed), 3
            )
            if failed
            else None,
            "failures": [
                {
                    "seed": e.seed,
                    "outcome": e.outcome,
                    "steps": e.steps,
                    "final_reward": round(e.final_reward, 3),
                    "error": e.error[:300],
                    "recording": e.recording,
                }  # fmt: skip
                for e in failed[:limit]
            ],
            "error": self.error_msg,
        }


@dataclass
class TrainSummary:
    error_code: int = 0
    error_msg: str = ""
    artifact: str = ""
    metrics: dict = field(default_factory=dict)
    wall_seconds: float = 0.0


class Lab(abc.ABC):
    """The robots and trainers as an agent sees them."""

    @abc.abstractmethod
    def rollout(self, policy: dict, episodes: int, seed: int, agent_id: str,
                progress=None, stop_when=None) -> RolloutSummary:  # fmt: skip
        """Run ``policy`` (PolicyRef fields) for seeded episodes ``seed .. seed+episodes-1``.
        ``stop_when(done, total, successes)`` returning True cancels the rest (the summary
        then holds the episodes done, with error_code CANCELED)."""

    @abc.abstractmethod
    def train(self, recipe: str, policy: dict, hyperparameters: dict, time_budget: float,
              agent_id: str, progress=None) -> TrainSummary:  # fmt: skip
        """Run a training recipe on ``policy``; the artifact path comes back.
        ``progress(fraction, stage)`` as the recipe reports it."""

    def robots(self) -> list[str]:
        return []

    def cancel_all(self) -> None:  # noqa: B027 (optional)
        """Cancel every goal in flight (the run is over)."""

    def close(self) -> None:  # noqa: B027 (optional)
        pass


class LocalLab(Lab):
    """In-process simulated cells (one at a time) and in-process training."""

    def __init__(self, artifacts_dir: str | Path, max_steps: int = 300, step_timeout: float = 2.0):
        self.artifacts_dir = Path(artifacts_dir)
        self.max_steps, self.step_timeout = max_steps, step_timeout
        self._cell_lock = threading.Lock()  # one simulated cell, one request at a time

    def rollout(self, policy, episodes, seed, agent_id, progress=None,
                stop_when=None) -> RolloutSummary:  # fmt: skip
        with self._cell_lock:
            return self._rollout(policy, episodes, seed, agent_id, progress, stop_when)

    def _rollout(self, policy, episodes, seed, agent_id, progress, stop_when) -> RolloutSummary:
        from enpire_env.pusht_geometry import reward_from_coverage
        from enpire_env.sim_cell import PushTCell
        from enpire_policy.episode import run_episode
        from enpire_policy.sandbox import PolicyError, SandboxedPolicy
        from enpire_rollout.rollout_core import RolloutError, policy_source

        t0 = time.monotonic()
        out = RolloutSummary(num_episodes=episodes)
        try:
            src = policy_source(policy)
        except RolloutError as e:
            out.error_code, out.error_msg = int(e.code), e.msg
            return out
        cell = PushTCell()
        sandbox = None
        for k in range(episodes):
            s = seed + k
            try:
                if sandbox is None:
                    sandbox = SandboxedPolicy(src, step_timeout=self.step_timeout).start()
                r = run_episode(sandbox, s, cell, max_steps=self.max_steps)
                err = r.error
            except PolicyError as e:
                r, err = None, str(e)
            if err:
                if sandbox is not None:
                    sandbox.close()
                sandbox = None
                out.episodes.append(EpisodeSummary(s, False, "policy_error", 0, 0.0, 0.0, err))
            else:
                outcome = "success" if r.success else "failure"
                out.episodes.append(EpisodeSummary(
                    s, r.success, outcome, r.steps, reward_from_coverage(r.coverage),
                    r.robot_seconds))  # fmt: skip
                out.robot_seconds += r.robot_seconds
            ok = sum(e.success for e in out.episodes)
            if progress:
                progress(k + 1, episodes, ok)
            if stop_when and k + 1 < episodes and stop_when(k + 1, episodes, ok):
                out.error_code, out.error_msg = 209, "rollout canceled"
                break
        if sandbox is not None:
            sandbox.close()
        out.count(len(out.episodes), sum(e.success for e in out.episodes))
        out.wall_seconds = time.monotonic() - t0
        if all(e.outcome == "policy_error" for e in out.episodes) and out.episodes:
            out.error_code, out.error_msg = 208, out.episodes[0].error
        return out

    def train(
        self, recipe, policy, hyperparameters, time_budget, agent_id, progress=None
    ) -> TrainSummary:
        from enpire_policy.recipes.base import TrainRequest
        from enpire_policy.train_core import run_training

        req = TrainRequest(recipe=recipe, policy=dict(policy, agent_id=agent_id),
                           hyperparameters=dict(hyperparameters),
                           time_budget=time_budget)  # fmt: skip

        def report(**kw) -> None:
            if progress is not None:
                progress(float(kw.get("progress", 0.0)), str(kw.get("stage", "")))

        with self._cell_lock:
            r = run_training(req, self.artifacts_dir, report)
        return TrainSummary(int(r.error_code), r.error_msg, r.artifact_path, r.metrics,
                            r.wall_seconds)  # fmt: skip


class QueueLab(Lab):
    """Rollouts through the fleet's experiment queue — the path CLI agents' ``submit_experiment``
    takes: a screening is a queue row the rollout node's feeder runs (fair share, confirmations
    first); the feeder also confirms candidates on fresh seeds it draws, and keeps idle robots
    confirming the best one. Training goes to ``trainer``."""

    CANCELED = 209  # RolloutErrorCode.CANCELED

    def __init__(self, ledger, run_id: str, trainer: Lab, poll: float = 0.25):
        from enpire_rollout.experiments import ExperimentQueue

        self.ledger, self.run_id, self.trainer, self.poll = ledger, run_id, trainer, poll
        self.queue = ExperimentQueue(ledger, max_in_flight=2)
        self._stop = threading.Event()
        # screenings a previous host of this run left behind (it died): nobody waits for them
        self._cancel_unfinished(kinds=("screen",))

    def _cancel_unfinished(self, kinds: tuple[str, ...] = ("screen", "fresh", "confirm")):
        marks = ",".join("?" * len(kinds))
        for r in self.ledger.query(
            "SELECT id, agent_id FROM experiments WHERE run_id = ? AND status IN"
            f" ('queued', 'running') AND kind IN ({marks})",
            (self.run_id, *kinds),
        ):
            self.queue.cancel(r["id"], r["agent_id"])

    def rollout(self, policy, episodes, seed, agent_id, progress=None,
                stop_when=None) -> RolloutSummary:  # fmt: skip
        from enpire_policy.policy_ref import PolicyRef
        from enpire_rollout.experiments import QueueError

        t0 = time.monotonic()
        out = RolloutSummary(num_episodes=0)
        try:
            exp = self.queue.submit(agent_id, PolicyRef.from_any(policy), int(episodes),
                                    kind="screen", seed=int(seed), run_id=self.run_id)  # fmt: skip
        except QueueError as e:
            out.error_code, out.error_msg = 200, str(e)
            return out
        canceled = False
        while not exp.done:
            exp = self.queue.wait(exp.id, self.poll)
            done, ok = exp.episodes_done or 0, exp.successes or 0
            if progress and not exp.done:
                progress(done, episodes, ok)
            if not canceled and not exp.done and (
                self._stop.is_set() or (stop_when and done < episodes and stop_when(
                    done, episodes, ok))):  # fmt: skip
                self.queue.cancel(exp.id, agent_id)
                canceled = True
        result = exp.result or {}
        out.episodes = self._episodes(result.get("episode_ids") or [])
        out.count(len(out.episodes), sum(e.success for e in out.episodes))
        out.robot_seconds = float(result.get("robot_seconds") or 0.0)
        out.wall_seconds = time.monotonic() - t0
        if canceled or exp.status == "canceled":
            out.error_code, out.error_msg = self.CANCELED, "rollout canceled"
        elif exp.status != "done":
            out.error_code, out.error_msg = 200, exp.error or f"experiment {exp.status}"
        elif out.episodes and all(e.outcome == "policy_error" for e in out.episodes):
            out.error_code, out.error_msg = 208, out.episodes[0].error
        return out

    def _episodes(self, ids: list[str]) -> list[EpisodeSummary]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = {r["id"]: r for r in self.ledger.query(
            f"SELECT * FROM episodes WHERE id IN ({marks})", tuple(ids))}  # fmt: skip
        out = []
        for i in ids:
            r = rows.get(i)
            if r is None:
                continue
            out.append(EpisodeSummary(
                int(r["seed"] or 0), bool(r["success"]), r["status"], int(r["steps"] or 0), 0.0,
                float(r["robot_seconds"] or 0.0), r["error"] or "", i,
                r["mcap"] or r["dataset"] or ""))  # fmt: skip
        return out

    # --- confirmations (the feeder's, on fresh seeds) ----------------------------------------
    def confirmation(self, commit: str) -> tuple[int, int]:
        """(episodes, successes) of the finished confirmations of ``commit``."""
        return self.queue.confirmation(commit)

    def confirmation_pending(self, commit: str) -> bool:
        return self.queue.confirmation_pending(commit)

    def confirm(self, policy: dict, episodes: int, agent_id: str) -> None:
        """Queue a chunk of fresh episodes of ``policy`` (the feeder queues the next ones)."""
        from enpire_policy.policy_ref import PolicyRef

        self.queue.submit(agent_id, PolicyRef.from_any(policy), int(episodes), kind="confirm",
                          run_id=self.run_id, note="confirmation for the evolve run")  # fmt: skip

    def confirmed_commits(self) -> list[dict]:
        """Per commit of this run: confirmation episodes and successes so far."""
        return self.ledger.query(
            "SELECT commit_sha, agent_id, SUM(episodes_done) AS n, SUM(successes) AS k FROM"
            " experiments WHERE run_id = ? AND kind = 'confirm' AND status = 'done'"
            " GROUP BY commit_sha",
            (self.run_id,),
        )

    def train(
        self, recipe, policy, hyperparameters, time_budget, agent_id, progress=None
    ) -> TrainSummary:
        return self.trainer.train(recipe, policy, hyperparameters, time_budget, agent_id, progress)

    def robots(self) -> list[str]:
        return self.trainer.robots()

    def wait_for_servers(self, timeout: float) -> bool:
        return self.trainer.wait_for_servers(timeout)

    def cancel_all(self) -> None:
        self._stop.set()
        self._cancel_unfinished()
        self.trainer.cancel_all()
