"""The experiment queue, ROS-free: agents submit and go on thinking; the fleet takes the work.

An experiment is a policy (a commit of an agent's branch, maybe an artifact) to run for N
seeded episodes. Submitting writes a ``queued`` row into the ledger's ``experiments`` table and
returns its id at once, from any process (the MCP server of each agent); a fleet's
:class:`ExperimentFeeder` (beside the rollout service: in the rollout node, or an in-process lab)
claims queued rows and hands them to the service as goals, all at once, so the scheduler keeps
every robot busy while anything is queued: fair share between agents, confirmations first.
The row is the experiment's state (queued, running, done, failed, canceled) and its result;
rows survive a crash of any process, and a restarted fleet re-queues what it left running.

Kinds: ``screen`` (the agent's seeds, by default the shared screening set 0..N-1), ``fresh``
(random seeds nobody chose) and ``confirm`` (fresh seeds, drawn by the fleet, never by an
agent; priority over experiments). A finished experiment whose success rate reaches
``goal_success`` is confirmed at once; with nothing queued, idle robots confirm the best
candidate not yet confirmed (useful work instead of waiting). An agent may have up to
``max_in_flight`` experiments queued or running.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from enpire_policy.episode import wilson_interval
from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.ledger import Ledger
from enpire_rollout.rollout_core import RolloutError, RolloutRequest

KINDS = ("screen", "fresh", "confirm")
PRIORITY = {"confirm": 2, "screen": 1, "fresh": 1, "filler": 0}
ACTIVE = ("queued", "running")
FRESH_SEEDS = (1 << 20, 1 << 31)  # fresh seeds are drawn from here (screening seeds are small)


def allowed_failures(goal_success: float, total: int) -> int:
    """How many of ``total`` fresh episodes a commit may fail and still be confirmed at
    ``goal_success``."""
    return math.floor((1 - goal_success) * total + 1e-9)


class QueueError(ValueError):
    """A refused submission; the message says why."""


@dataclass
class Experiment:
    id: str
    agent_id: str
    kind: str
    policy: PolicyRef
    episodes: int
    seed: int
    status: str = "queued"
    run_id: str = ""
    priority: int = 1
    note: str = ""
    submitted: float = 0.0
    started: float | None = None
    finished: float | None = None
    goal_id: str = ""
    episodes_done: int = 0
    successes: int | None = None
    success_rate: float | None = None
    result: dict = field(default_factory=dict)
    error: str = ""

    @property
    def commit(self) -> str:
        return self.policy.commit

    @property
    def done(self) -> bool:
        return self.status not in ACTIVE

    @classmethod
    def from_row(cls, r: dict) -> Experiment:
        return cls(
            id=r["id"],
            agent_id=r["agent_id"],
            kind=r["kind"],
            policy=PolicyRef.from_any(json.loads(r["policy"])),
            episodes=int(r["episodes"]),
            seed=int(r["seed"] or 0),
            status=r["status"],
            run_id=r["run_id"] or "",
            priority=int(r["priority"] or 0),
            note=r["note"] or "",
            submitted=r["submitted"],
            started=r["started"],
            finished=r["finished"],
            goal_id=r["goal_id"] or "",
            episodes_done=int(r["episodes_done"] or 0),
            successes=r["successes"],
            success_rate=r["success_rate"],
            result=json.loads(r["result"] or "{}"),
            error=r["error"] or "",
        )

    def summary(self) -> dict:
        """What an agent reads about it."""
        out = {
            "id": self.id,
            "agent_id": self.agent_id,
            "kind": self.kind,
            "commit": self.policy.commit,
            "artifact": self.policy.artifact,
            "episodes": self.episodes,
            "status": self.status,
            "episodes_done": self.episodes_done,
            "note": self.note,
            "queued_seconds": round((self.started or time.time()) - self.submitted, 1),
        }
        if self.kind == "screen":
            out["seeds"] = [self.seed, self.seed + self.episodes - 1]
        if self.done:
            out.update(
                successes=self.successes,
                success_rate=self.success_rate,
                ci=self.result.get("ci"),
                outcomes=self.result.get("outcomes"),
                failures=self.result.get("failures", []),
                error=self.error,
            )
        return out


class ExperimentQueue:
    """The queue over a ledger: the submit side (agents' tools) and the take side (fleets)."""

    def __init__(self, ledger: Ledger, max_in_flight: int = 2, max_episodes: int = 200):
        if max_in_flight < 1 or max_episodes < 1:
            raise ValueError("max_in_flight and max_episodes must be >= 1")
        self.ledger, self.max_in_flight, self.max_episodes = ledger, max_in_flight, max_episodes

    # --- agents' side -------------------------------------------------------------------
    def submit(
        self,
        agent_id: str,
        policy: PolicyRef,
        episodes: int,
        kind: str = "screen",
        seed: int = 0,
        run_id: str = "",
        note: str = "",
        priority: int | None = None,
    ) -> Experiment:
        if kind not in KINDS:
            raise QueueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not 0 < episodes <= self.max_episodes:
            raise QueueError(f"episodes must be 1 .. {self.max_episodes}, got {episodes}")
        if kind == "screen" and not 0 <= seed < FRESH_SEEDS[0]:
            raise QueueError(f"screening seeds are 0 .. {FRESH_SEEDS[0] - 1}, got {seed}")
        if kind != "confirm":  # the fleet's own confirmations do not count against an agent
            busy = self.in_flight(agent_id)
            if busy >= self.max_in_flight:
                raise QueueError(
                    f"{agent_id} has {busy} experiments queued or running (at most "
                    f"{self.max_in_flight}); wait for one (wait_experiment) and submit again"
                )
        if kind != "screen":
            seed = secrets.randbelow(FRESH_SEEDS[1] - FRESH_SEEDS[0] - episodes) + FRESH_SEEDS[0]
        exp = Experiment(
            id=uuid.uuid4().hex[:10],
            agent_id=agent_id,
            kind=kind,
            policy=policy,
            episodes=episodes,
            seed=seed,
            run_id=run_id,
            priority=PRIORITY[kind] if priority is None else priority,
            note=note[:500],
            submitted=time.time(),
        )
        self.ledger.add_experiment(
            {
                "id": exp.id,
                "run_id": run_id,
                "agent_id": agent_id,
                "kind": kind,
                "policy": policy.to_dict(),
                "commit_sha": policy.commit,
                "episodes": episodes,
                "seed": seed,
                "priority": exp.priority,
                "status": "queued",
                "note": exp.note,
                "submitted": exp.submitted,
            }
        )
        return exp

    def get(self, exp_id: str) -> Experiment | None:
        rows = self.ledger.query("SELECT * FROM experiments WHERE id = ?", (exp_id,))
        return Experiment.from_row(rows[0]) if rows else None

    def in_flight(self, agent_id: str) -> int:
        rows = self.ledger.query(
            "SELECT COUNT(*) AS n FROM experiments WHERE agent_id = ? AND kind != 'confirm'"
            " AND status IN ('queued', 'running')",
            (agent_id,),
        )
        return int(rows[0]["n"])

    def wait(
        self,
        exp_id: str,
        timeout: float,
        progress: Callable[[Experiment], None] | None = None,
        poll: float = 0.5,
    ) -> Experiment:
        """Until the experiment is done or ``timeout`` s passed (then it is still running);
        ``progress`` whenever its episode count moves."""
        deadline = time.monotonic() + timeout
        last = -1
        while True:
            exp = self.get(exp_id)
            if exp is None:
                raise QueueError(f"no experiment {exp_id}")
            if progress is not None and exp.episodes_done != last:
                last = exp.episodes_done
                progress(exp)
            if exp.done or time.monotonic() >= deadline:
                return exp
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.01)))

    def cancel(self, exp_id: str, agent_id: str) -> Experiment:
        """A queued experiment is dropped; a running one stops after its current episodes."""
        exp = self.get(exp_id)
        if exp is None or exp.agent_id != agent_id:
            raise QueueError(f"no experiment {exp_id} of {agent_id}")
        if not exp.done:
            self.ledger.update_experiment(exp_id, status="canceled", finished=time.time())
        return self.get(exp_id)

    def leaderboard(self, run_id: str | None = None, limit: int = 20) -> list[dict]:
        """Every agent's evaluated commits, best first: screening and confirmation results."""
        cond, args = "", []
        if run_id is not None:
            cond, args = " AND run_id = ?", [run_id]
        rows = self.ledger.query(
            "SELECT agent_id, commit_sha, kind, SUM(episodes_done) AS n, SUM(successes) AS k,"
            " MAX(json_extract(policy, '$.artifact')) AS artifact, MAX(finished) AS t"
            " FROM experiments WHERE status = 'done'" + cond + " GROUP BY agent_id, commit_sha,"
            " kind",
            args,
        )
        board: dict[tuple, dict] = {}
        for r in rows:
            e = board.setdefault(
                (r["agent_id"], r["commit_sha"]),
                {"agent_id": r["agent_id"], "commit": r["commit_sha"], "artifact": r["artifact"]},
            )
            n, k = int(r["n"] or 0), int(r["k"] or 0)
            part = "confirmed" if r["kind"] == "confirm" else "screened"
            old = e.get(part, {"episodes": 0, "successes": 0})
            n, k = n + old["episodes"], k + old["successes"]
            lo, hi = wilson_interval(k, n)
            e[part] = {
                "episodes": n,
                "successes": k,
                "success_rate": round(k / n, 4) if n else None,
                "ci": [round(lo, 4), round(hi, 4)],
            }

        def rank(e: dict) -> tuple:
            c, s = e.get("confirmed", {}), e.get("screened", {})
            return (c.get("success_rate") or 0.0, s.get("success_rate") or 0.0)

        return sorted(board.values(), key=rank, reverse=True)[:limit]

    def confirmation_pending(self, commit: str) -> bool:
        """Whether a confirmation chunk of ``commit`` is queued or running."""
        rows = self.ledger.query(
            "SELECT COUNT(*) AS n FROM experiments WHERE kind = 'confirm' AND commit_sha = ?"
            " AND status IN ('queued', 'running')",
            (commit,),
        )
        return bool(rows[0]["n"])

    def confirmation(self, commit: str, artifact: str = "") -> tuple[int, int]:
        """(episodes, successes) of the finished confirmations of a commit."""
        rows = self.ledger.query(
            "SELECT COALESCE(SUM(episodes_done), 0) AS n, COALESCE(SUM(successes), 0) AS k FROM"
            " experiments WHERE kind = 'confirm' AND status = 'done' AND commit_sha = ? AND"
            " COALESCE(json_extract(policy, '$.artifact'), '') = ?",
            (commit, artifact),
        )
        return int(rows[0]["n"]), int(rows[0]["k"])

    # --- fleets' side -------------------------------------------------------------------
    def queued(self) -> list[Experiment]:
        rows = self.ledger.query(
            "SELECT * FROM experiments WHERE status = 'queued' ORDER BY priority DESC, submitted"
        )
        return [Experiment.from_row(r) for r in rows]


@dataclass
class ConfirmRule:
    """When the fleet confirms on its own: a finished experiment at ``goal_success`` or better
    (first), and, with nothing queued, the best candidate with at least ``min_rate``."""

    goal_success: float = 0.95
    episodes: int = 50  # per confirmation chunk
    total: int = 200  # a commit is confirmed over this many fresh episodes
    min_rate: float = 0.5
    when_idle: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.goal_success <= 1 or self.episodes < 1 or self.total < self.episodes:
            raise ValueError("goal_success in (0, 1], episodes >= 1, total >= episodes")


class ExperimentFeeder:
    """Feeds a :class:`~enpire_rollout.rollout_service.RolloutService` from the queue."""

    def __init__(
        self,
        service,
        queue: ExperimentQueue,
        server: str = "fleet",
        confirm: ConfirmRule | None = None,
        poll: float = 0.5,
        log: Callable[[str, str], None] | None = None,
    ):
        self.service, self.queue, self.server = service, queue, server
        self.confirm, self.poll = confirm, poll
        self._log = log or (lambda _level, _msg: None)
        self._stop = threading.Event()
        self._running: dict[str, object] = {}  # experiment id -> GoalRun
        # the research runs this feeder has served: idle robots confirm their candidates only
        # (a ledger shared with earlier runs, as the default data dir, holds theirs too)
        self._runs: set[str] = set()
        self._lock = threading.Lock()
        n = queue.ledger.requeue_experiments(server)
        if n:
            self._log("warning", f"{n} experiment(s) left running by a previous {server}: queued")
        self._thread = threading.Thread(target=self._loop, name="experiments", daemon=True)
        self._followers: list[threading.Thread] = []

    def start(self) -> ExperimentFeeder:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            runs = list(self._running.values())
        for run in runs:
            self.service.cancel(run)
        self._thread.join(timeout=5)
        for t in self._followers:  # their goals end once the running episodes stop
            t.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                took = self._take()
                self._watch_cancels()
                if not took and self.confirm and self.confirm.when_idle:
                    self._confirm_when_idle()
            except Exception as e:  # noqa: BLE001 - the queue outlives one bad row
                self._log("error", f"experiment queue: {type(e).__name__}: {e}")
            self._stop.wait(self.poll)

    def _take(self) -> int:
        n = 0
        for exp in self.queue.queued():
            if not self.queue.ledger.claim_experiment(exp.id, self.server):
                continue  # another fleet took it
            n += 1
            self._runs.add(exp.run_id or "")
            req = RolloutRequest(
                exp.policy,
                "pusht",
                exp.episodes,
                [],
                0,
                0.0,
                exp.seed,
                exp.agent_id,
                priority=exp.priority,
            )
            try:
                run = self.service.submit(req)
            except RolloutError as e:
                self._finish(exp, "failed", error=f"{e.code.name}: {e.msg}")
                continue
            self.queue.ledger.update_experiment(exp.id, goal_id=run.goal_id)
            with self._lock:
                self._running[exp.id] = run
            t = threading.Thread(target=self._follow, args=(exp, run), daemon=True)
            self._followers.append(t)
            t.start()
        return n

    def _watch_cancels(self) -> None:
        with self._lock:
            ids = list(self._running)
        if not ids:
            return
        marks = ",".join("?" for _ in ids)
        rows = self.queue.ledger.query(
            f"SELECT id FROM experiments WHERE status = 'canceled' AND id IN ({marks})", ids
        )
        for r in rows:
            with self._lock:
                run = self._running.get(r["id"])
            if run is not None:
                self.service.cancel(run)

    def _follow(self, exp: Experiment, run) -> None:
        hopeless = self._cannot_pass(exp)

        def feedback(p) -> None:
            self.queue.ledger.update_experiment(
                exp.id, episodes_done=p.episodes_done, successes=p.successes
            )
            if hopeless(p.episodes_done, p.successes):
                self.service.cancel(run)  # a confirmation that can no longer pass stops here

        try:
            out = self.service.wait(run, feedback)
        finally:
            with self._lock:
                self._running.pop(exp.id, None)
        n, k = len(out.episodes), out.num_successes
        lo, hi = out.interval
        outcomes: dict[str, int] = {}
        for r in out.episodes:
            outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        failures = [
            {
                "episode_id": r.episode_id,
                "seed": r.seed if exp.kind == "screen" else None,
                "outcome": r.outcome,
                "steps": r.steps,
                "error": r.error[-600:],
                "recording": r.recording_path,
            }
            for r in out.episodes
            if not r.success
        ][:10]
        result = {
            "ci": [round(lo, 4), round(hi, 4)],
            "outcomes": outcomes,
            "failures": failures,
            "robot_seconds": round(out.robot_seconds, 2),
            "wall_seconds": round(out.wall_seconds, 2),
            "episode_ids": [r.episode_id for r in out.episodes],
        }
        canceled = (self.queue.get(exp.id) or exp).status == "canceled"
        status = "canceled" if canceled else ("done" if n else "failed")
        self._finish(exp, status, n, k, result, out.error_msg)
        self._log("info", f"experiment {exp.id} ({exp.agent_id}, {exp.kind}): {k}/{n}")
        if status == "done" and self.confirm and n:
            if exp.kind == "confirm":  # the next chunk, until settled
                self._queue_confirmation(exp, self.confirm.episodes, exp.priority)
            elif k / n >= self.confirm.goal_success:
                self._queue_confirmation(exp, self.confirm.episodes)

    def _cannot_pass(self, exp: Experiment):
        """For a confirmation chunk: whether, after ``done`` episodes with ``ok`` successes, the
        commit has failed more fresh episodes than the rule allows (no more are worth running)."""
        if exp.kind != "confirm" or self.confirm is None:
            return lambda done, ok: False
        allowed = allowed_failures(self.confirm.goal_success, self.confirm.total)
        n0, k0 = self.queue.confirmation(exp.commit, exp.policy.artifact)
        return lambda done, ok: (n0 - k0) + (done - ok) > allowed

    def _finish(self, exp, status, n=0, k=0, result=None, error="") -> None:
        self.queue.ledger.update_experiment(
            exp.id,
            status=status,
            finished=time.time(),
            episodes_done=n,
            successes=k,
            success_rate=(k / n) if n else None,
            result=result or {},
            error=error[:2000],
        )

    def _queue_confirmation(self, exp: Experiment, episodes: int, priority=None) -> bool:
        c = self.confirm
        done, ok = self.queue.confirmation(exp.commit, exp.policy.artifact)
        pending = self.queue.confirmation_pending(exp.commit)
        allowed = allowed_failures(c.goal_success, c.total)
        if pending or done >= c.total or done - ok > allowed:
            return False  # confirmed (or failed its confirmation) already, or under way
        self.queue.submit(
            exp.agent_id,
            exp.policy,
            min(episodes, c.total - done),
            kind="confirm",
            run_id=exp.run_id,
            note=f"confirmation of {exp.id}",
            priority=priority,
        )
        return True

    def _confirm_when_idle(self) -> None:
        svc = self.service
        if svc.sched.has_queued_goals() or svc.busy >= len(svc.fleet):
            return
        c = self.confirm
        runs = sorted(self._runs)
        if not runs:
            return
        rows = self.queue.ledger.query(
            "SELECT * FROM experiments WHERE status = 'done' AND kind != 'confirm' AND"
            f" success_rate >= ? AND COALESCE(run_id, '') IN ({','.join('?' * len(runs))})"
            " ORDER BY success_rate DESC, finished DESC LIMIT 20",
            (c.min_rate, *runs),
        )
        for r in rows:
            if self._queue_confirmation(Experiment.from_row(r), c.episodes, PRIORITY["filler"]):
                return
