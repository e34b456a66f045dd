"""R's rollout service, ROS-free: goals, the fleet scheduler, policy workers, episodes and their
recording, over robots that each offer a :class:`FleetRobot` (a RobotPort that also resets).

Two kinds of robot plug in: the ROS robot (``enpire_rollout.robot_link.RobotLink``: topics and
the Reset action, used by the rollout node) and the in-process simulated cell
(:class:`SimRobot`: local labs, benches, tests). Policies run in sandboxed worker processes,
one per robot and policy, kept warm across episodes. A robot that switches to another policy
should not wait for its worker to start (0.4-1.4 s on a loaded 2-core machine, longer than a
simulated reset): when a goal arrives, spare workers for its policy start in the background (as
many as robots may run it at once, at most two per robot in all: experiments arrive in pairs
when agents keep two in flight), and a robot switching to that policy takes a spare; otherwise
its worker starts while the robot resets.

Everything is event-driven: the dispatcher wakes when a goal arrives, an episode ends or a goal
is canceled (and once a second for cool-downs and robots that are down); a goal's loop wakes
when one of its episodes ends.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from enpire_env.sim_cell import PushTCell
from enpire_env.tasks import PUSHT
from enpire_policy.episode import (
    CellLostError,
    EpisodeOutcome,
    RobotPort,
    SimRobotPort,
    run_on_port,
    wilson_interval,
)
from enpire_policy.lerobot_dataset import LeRobotDatasetWriter
from enpire_policy.policy_ref import PolicyRef
from enpire_policy.sandbox import PolicyError, SandboxedPolicy
from enpire_rollout.ledger import Ledger
from enpire_rollout.rollout_core import (
    RolloutError,
    RolloutErrorCode,
    RolloutRequest,
    policy_source,
    validate,
)
from enpire_rollout.scheduler import Assignment, FleetScheduler, GoalSpec

BACKGROUND = "__background__"


@dataclass
class ResetReport:
    ok: bool
    error: str = ""
    robot_seconds: float = 0.0
    cell_unavailable: bool = False  # the cell (or EN) is gone: not the seed's fault


class Recorder(AbstractContextManager):
    """A robot's own log of one episode (e.g. MCAP of its ROS topics), open while it runs."""

    def finish(self, metadata: dict) -> str:
        """Close the log; return its path."""

    def abort(self) -> None:
        """Drop the log (the episode was canceled)."""


class FleetRobot(RobotPort, Protocol):
    """A robot of the fleet: the episode runner's port, plus what R needs around episodes."""

    robot_id: str

    def open(self) -> None:
        """Start receiving the robot's state (an idle robot may cost nothing)."""

    def close(self) -> None:
        """Stop receiving it."""

    def wait_alive(self, timeout: float) -> bool:
        """Whether the (open) robot publishes its state within ``timeout`` s."""

    def alive(self, timeout: float) -> bool:
        """Whether it published within the last ``timeout`` s."""

    def reset(self, seed: int) -> ResetReport:
        """Put the task's start state for ``seed`` in place and verify it (EN)."""

    def recorder(self, path: Path) -> Recorder | None:
        """A log of the episode at ``path`` (None: nothing beyond the dataset)."""


class SimRobot(SimRobotPort):
    """An in-process simulated cell as a fleet robot: resets teleport the block. With
    ``time_scale`` > 0 it keeps to the cell clock (a control period takes 1 / (control rate x
    time_scale) wall s, as a sim cell node does); 0 runs as fast as it computes."""

    def __init__(
        self,
        robot_id: str,
        cell: PushTCell | None = None,
        observe: str = "state",
        time_scale: float = 0.0,
    ):
        super().__init__(cell or PushTCell(), observe)
        self.robot_id = robot_id
        self._period = 1.0 / (PUSHT.control_hz * time_scale) if time_scale > 0 else 0.0
        self._next = 0.0

    def advance(self) -> float:
        if self._period:
            now = time.monotonic()
            self._next = max(self._next + self._period, now)
            time.sleep(max(0.0, self._next - now))
        return super().advance()

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def wait_alive(self, timeout: float) -> bool:
        return True

    def alive(self, timeout: float) -> bool:
        return True

    def reset(self, seed: int) -> ResetReport:
        self.cell.teleport(PUSHT.sample_start_state(seed))
        return ResetReport(True)

    def recorder(self, path: Path) -> Recorder | None:
        return None


def _param(default, doc: str):
    """A field that is also a node parameter: the rollout node declares it with this doc."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class ServiceConfig:
    """The service's settings; fields with a ``doc`` are the rollout node's parameters."""

    max_steps: int = _param(300, "Control steps per episode.")
    step_timeout: float = _param(1.0, "Policy deadline per step [s].")
    cell_timeout: float = _param(3.0, "Wall seconds without joint states = cell lost.")
    video_size: int = _param(96, "Recorded frame side; 0 = no video.")
    control_hz: float = _param(10.0, "Cell control rate [Hz].")
    min_episode_wall: float = 1.0  # shortest wall time of reset + episode (budget checks)
    background_policy: PolicyRef | None = None  # run while nothing is queued (recorded)
    max_reset_failures: int = _param(
        3, "Failed resets in a row after which a robot cools down out of the rotation."
    )
    reset_cooldown: float = _param(
        10.0, "First cool-down [wall s] of a robot whose resets keep failing (doubles)."
    )
    max_reset_cooldown: float = _param(300.0, "Longest cool-down [s].")
    max_seed_retries: int = _param(
        3, "Retries of a seed whose reset failed before the seed is given up (skipped)."
    )
    worker_keep: float = _param(
        60.0,
        "Wall s the policy workers of a finished goal stay warm for a next goal of the same "
        "policy (built-ins and code at a full commit sha; never a working tree, which may "
        "change between goals); 0 = close them when the last goal ends.",
    )

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.step_timeout <= 0 or self.cell_timeout <= 0:
            raise ValueError("max_steps >= 1, step_timeout > 0 and cell_timeout > 0")
        if not 0 <= self.worker_keep < float("inf"):
            raise ValueError("worker_keep must be >= 0 and finite")
        if self.video_size < 0 or self.control_hz <= 0:
            raise ValueError("video_size >= 0 and control_hz > 0")


@dataclass
class EpisodeRecord:
    """One episode of a goal, from its assignment to its recording."""

    episode_id: str
    robot_id: str
    seed: int
    task: str = "pusht"
    outcome: str = "interrupted"  # EpisodeOutcome's, or reset_failed
    run: EpisodeOutcome | None = None  # the policy part (None: it never started)
    reset_seconds: float = 0.0
    wall_start: float = 0.0
    wall_end: float = 0.0
    error: str = ""
    dataset: str = ""
    dataset_index: int = -1
    mcap: str = ""

    @property
    def success(self) -> bool:
        return bool(self.run and self.run.success)

    @property
    def steps(self) -> int:
        return self.run.steps if self.run else 0

    @property
    def robot_seconds(self) -> float:
        return self.run.robot_seconds if self.run else 0.0

    @property
    def recording_path(self) -> str:
        """Where the episode can be replayed: its MCAP log, else its dataset episode."""
        if self.mcap:
            return self.mcap
        return f"{self.dataset}#episode={self.dataset_index}" if self.dataset else ""


@dataclass
class RobotState:
    robot_id: str
    state: str  # free | busy | down | cooldown (the scheduler's)
    phase: str  # idle | resetting | running
    goal_id: str = ""
    episode_id: str = ""


@dataclass
class GoalProgress:
    episodes_done: int
    episodes_total: int
    successes: int


@dataclass
class RolloutOutcome:
    """A goal's result: the counted episodes (success, failure, policy error)."""

    goal_id: str
    error_code: RolloutErrorCode = RolloutErrorCode.NONE
    error_msg: str = ""
    episodes: list[EpisodeRecord] = field(default_factory=list)
    robot_seconds: float = 0.0
    wall_seconds: float = 0.0
    skipped_seeds: list[int] = field(default_factory=list)

    @property
    def num_successes(self) -> int:
        return sum(r.success for r in self.episodes)

    @property
    def success_rate(self) -> float:
        return self.num_successes / len(self.episodes) if self.episodes else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.num_successes, len(self.episodes))


class GoalRun:
    def __init__(self, goal_id: str, req: RolloutRequest, robots: list[str]):
        self.goal_id, self.req, self.robots = goal_id, req, robots
        self.records: list[EpisodeRecord] = []
        self.stop = threading.Event()
        self.changed = threading.Event()  # an episode ended, or a cancel came
        self.lock = threading.Lock()
        self.t0 = time.monotonic()


def _close_spare(fut: Future) -> None:
    if fut.exception() is None:
        fut.result().close()


def _keeps(ref: PolicyRef) -> bool:
    """Whether a worker of ``ref`` may serve a later goal: its code cannot have changed (a
    built-in policy, or a repository at a full commit sha; not a working tree or a ref such as
    a branch, nor an artifact directory, which a training run may rewrite)."""
    if ref.artifact:
        return False
    if not ref.repo_path:
        return True
    return re.fullmatch(r"[0-9a-f]{40}", ref.commit) is not None


class RolloutService:
    def __init__(
        self,
        robots: dict[str, FleetRobot],
        ledger: Ledger,
        data_dir: str | Path,
        config: ServiceConfig | None = None,
        log: Callable[[str, str], None] | None = None,
        running: Callable[[], bool] = lambda: True,
    ):
        """``running()`` turns False when the process is shutting down (the rollout node: its
        ROS context ended): episodes cut short by that end quietly, not as lost cells."""
        self.robots, self.ledger = robots, ledger
        self.fleet = list(robots)
        self.data_dir = Path(data_dir)
        self.cfg = config or ServiceConfig()
        self._log = log or (lambda _level, _msg: None)
        self._running = running
        self._bg_run = None
        background = None
        if self.cfg.background_policy is not None:
            ref = self.cfg.background_policy
            policy_source(ref)  # fail at start-up on an unknown policy
            req = RolloutRequest(ref, "pusht", 1, [], 0, 0.0, 0, "background")
            self._bg_run = GoalRun(BACKGROUND, req, list(self.fleet))
            background = GoalSpec(BACKGROUND, "background", 1, seed=1_000_000)
        c = self.cfg
        self.sched = FleetScheduler(
            self.fleet,
            background=background,
            max_reset_failures=c.max_reset_failures,
            cooldown=c.reset_cooldown,
            max_cooldown=c.max_reset_cooldown,
            max_seed_retries=c.max_seed_retries,
        )
        self._goals: dict[str, GoalRun] = {}
        self._episode_stops: dict[str, threading.Event] = {}
        self._phase = dict.fromkeys(self.fleet, "idle")
        self._current: dict[str, Assignment | None] = dict.fromkeys(self.fleet)
        self._workers: dict[str, tuple[tuple, SandboxedPolicy]] = {}
        self._spares: dict[tuple, list[Future]] = {}  # policy key -> workers starting/ready
        self._starting: dict[str, tuple] = {}  # robot -> policy key of the worker it awaits
        self._keep_until: float | None = None  # idle workers close then (no goal since)
        self._spare_lock = threading.Lock()
        self._writers: dict[str, LeRobotDatasetWriter] = {}
        self._writers_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()  # the dispatcher has something to do
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)
        self._dispatcher.start()

    # --- goals --------------------------------------------------------------------------
    def submit(self, req: RolloutRequest) -> GoalRun:
        """Queue a goal (its episodes start as robots free up); raises RolloutError."""
        robots = validate(req, self.fleet, self.cfg.min_episode_wall)
        goal_id = uuid.uuid4().hex[:12]
        seed = req.seed if req.seed >= 0 else int(np.random.default_rng().integers(1 << 31))
        run = GoalRun(goal_id, req, robots)
        with self._spare_lock:
            self._goals[goal_id] = run
            self._keep_until = None
        self.ledger.add_goal(
            goal_id, "rollout", req.agent_id, req.policy.to_dict(), req.task, req.num_episodes
        )
        spec = GoalSpec(
            goal_id,
            req.agent_id or "anonymous",
            req.num_episodes,
            seed,
            frozenset(robots),
            req.num_robots,
            priority=req.priority,
            policy_key=repr(req.policy.key()),
        )
        for pre in self.sched.add_goal(spec):  # background episodes make way
            self._stop_episode(pre.episode_id)
        self._wake.set()
        self._prefetch()
        self._log("info", f"rollout {goal_id}: {req.num_episodes} episodes of {req.policy.label}")
        return run

    def wait(
        self,
        run: GoalRun,
        feedback: Callable[[GoalProgress], None] | None = None,
        canceled: Callable[[], bool] = lambda: False,
    ) -> RolloutOutcome:
        """Until the goal's episodes are done, its budget is spent or ``canceled()``;
        ``feedback`` at least twice a second."""
        req, out = run.req, RolloutOutcome(run.goal_id)
        while True:
            st = self.sched.goal_status(run.goal_id)
            if st["finished"]:
                break
            if canceled() and not run.stop.is_set():
                out.error_code, out.error_msg = RolloutErrorCode.CANCELED, "rollout canceled"
                self.cancel(run)
            if (
                req.time_budget
                and time.monotonic() - run.t0 > req.time_budget
                and not run.stop.is_set()
            ):
                out.error_code = RolloutErrorCode.BUDGET_EXHAUSTED
                out.error_msg = (
                    f"time budget of {req.time_budget:g} s ran out after {st['done']} episodes"
                )
                self.cancel(run)
            if feedback is not None:
                with run.lock:
                    ok = sum(r.success for r in run.records)
                feedback(GoalProgress(st["done"], req.num_episodes, ok))
            run.changed.wait(0.5)  # woken by episodes ending and cancels
            run.changed.clear()
        self.sched.forget(run.goal_id)
        self._goals.pop(run.goal_id, None)
        self._park_workers(run.req.policy)
        self._drop_spares()
        self._finish(run, out, st["skipped"])
        return out

    def wake(self, run: GoalRun | None = None) -> None:
        """Make a goal's loop look at its state now (a cancel request came)."""
        for r in [run] if run else list(self._goals.values()):
            r.changed.set()

    def cancel(self, run: GoalRun) -> None:
        run.stop.set()
        for a in self.sched.cancel_goal(run.goal_id):
            self._stop_episode(a.episode_id)
        self._wake.set()

    def _finish(self, run: GoalRun, out: RolloutOutcome, skipped: list[int]) -> None:
        with run.lock:
            out.episodes = [
                r for r in run.records if r.outcome in ("success", "failure", "policy_error")
            ]
            out.robot_seconds = float(sum(r.robot_seconds + r.reset_seconds for r in run.records))
        out.skipped_seeds = list(skipped)
        n = len(out.episodes)
        if out.error_code == RolloutErrorCode.NONE and n:
            if all(r.outcome == "policy_error" for r in out.episodes):
                out.error_code = RolloutErrorCode.POLICY_ERROR
                out.error_msg = (
                    f"every episode ended in a policy error; first: {out.episodes[0].error}"
                )
        if skipped:
            why = f"{len(skipped)} seed(s) skipped, their reset kept failing: {skipped[:10]}"
            if out.error_code == RolloutErrorCode.NONE and not n:
                out.error_code, out.error_msg = RolloutErrorCode.RESET_FAILED, why
            elif out.error_code == RolloutErrorCode.NONE:
                out.error_msg = (
                    why  # the goal succeeds on the episodes that ran; say what is missing
                )
        out.wall_seconds = time.monotonic() - run.t0
        summary = {
            "num_episodes": n,
            "successes": out.num_successes,
            "success_rate": out.success_rate,
            "error_code": int(out.error_code),
            "error_msg": out.error_msg,
            "skipped_seeds": out.skipped_seeds,
        }
        status = "succeeded" if out.error_code == RolloutErrorCode.NONE else "aborted"
        self.ledger.finish_goal(run.goal_id, status, summary)

    def _stop_episode(self, episode_id: str) -> None:
        stop = self._episode_stops.get(episode_id)
        if stop is not None:
            stop.set()

    # --- dispatch -----------------------------------------------------------------------
    def _stopping(self) -> bool:
        """The service is closing, or its process is shutting down."""
        return self._stop.is_set() or not self._running()

    def _dispatch(self) -> None:
        """Wakes on new goals, ended episodes and cancels, and once a second for cool-downs
        and robots that are down (listened to until they publish again)."""
        while not self._stopping():
            self._wake.clear()
            try:
                for robot_id, state in self.sched.robots().items():
                    robot = self.robots[robot_id]
                    if state == "down":
                        robot.open()
                        if robot.alive(self.cfg.cell_timeout):
                            self._log("info", f"{robot_id} is back: rejoins the rotation")
                            robot.close()
                            self.sched.robot_up(robot_id)
                for a in self.sched.next_assignments():
                    threading.Thread(target=self._run_assignment, args=(a,), daemon=True).start()
                self._expire_workers()
            except Exception as e:  # noqa: BLE001 - the dispatcher must outlive any one error
                if self._stopping():
                    return
                self._log("error", f"dispatcher: {type(e).__name__}: {e}")
            self._wake.wait(1.0)

    def _run_assignment(self, a: Assignment) -> None:
        run = self._bg_run if a.background else self._goals.get(a.goal_id)
        stop = threading.Event()
        self._episode_stops[a.episode_id] = stop
        if run is not None and run.stop.is_set():
            stop.set()
        rec = EpisodeRecord(a.episode_id, a.robot_id, a.seed, wall_start=time.time())
        outcome = "interrupted"
        self._current[a.robot_id] = a
        try:
            if run is None:
                outcome = rec.outcome = "canceled"
                return
            rec.task = run.req.task
            outcome = self._episode(a, run, rec, stop)
        except Exception as e:  # noqa: BLE001 - keep the dispatcher alive, record why
            rec.outcome, rec.error = "interrupted", f"{type(e).__name__}: {e}"
            if self._stopping():
                rec.error = f"the rollout service stopped ({rec.error})"
            else:
                self._log("error", f"episode {a.episode_id} on {a.robot_id}: {rec.error}")
            outcome = "interrupted"
        finally:
            self._phase[a.robot_id] = "idle"
            self._current[a.robot_id] = None
            if run is not None and rec.outcome != "canceled" and not a.background:
                with run.lock:
                    run.records.append(rec)
            self._episode_stops.pop(a.episode_id, None)
            self.robots[a.robot_id].close()
            self.sched.episode_finished(a, outcome)
            self._wake.set()
            if run is not None:
                run.changed.set()
            if outcome == "retry" and self.sched.robots().get(a.robot_id) == "cooldown":
                self._log(
                    "warning",
                    f"{a.robot_id}: resets keep failing ({rec.error}); out of the rotation for "
                    f"{self.sched.cooldown_left(a.robot_id):.0f} s",
                )

    def _episode(
        self, a: Assignment, run: GoalRun, rec: EpisodeRecord, stop: threading.Event
    ) -> str:
        robot = self.robots[a.robot_id]
        # start (or reuse) the policy worker while the robot resets
        worker_box: dict = {}
        starter = threading.Thread(target=self._worker_for, args=(a, run, worker_box))
        starter.start()
        self._phase[a.robot_id] = "resetting"
        iv = self.ledger.open_interval(a.robot_id, "reset", a.goal_id, a.episode_id)
        try:
            reset = robot.reset(a.seed)
        finally:
            self.ledger.close_interval(iv)
        rec.reset_seconds = reset.robot_seconds
        starter.join()
        if not reset.ok:
            rec.outcome = "interrupted" if reset.cell_unavailable else "reset_failed"
            rec.error = reset.error
            self._ledger_episode(a, run, rec)
            return "interrupted" if reset.cell_unavailable else "retry"
        if stop.is_set():
            rec.outcome = "canceled"
            return "canceled"
        policy = worker_box.get("policy")
        robot.open()  # no episode starts before its cell publishes
        if not robot.wait_alive(self.cfg.cell_timeout):
            raise CellLostError(f"{a.robot_id} is not publishing joint states")
        self._phase[a.robot_id] = "running"
        iv = self.ledger.open_interval(a.robot_id, "episode", a.goal_id, a.episode_id)
        log = robot.recorder(self.data_dir / "mcap" / a.goal_id / f"{a.episode_id}.mcap")
        try:
            with log if log is not None else nullcontext():
                if policy is None:
                    err = worker_box.get("error") or PolicyError("crash", "no policy worker")
                    rec.run = EpisodeOutcome(a.seed).policy_failed(err)
                else:
                    policy.reset(a.seed)
                    rec.run = run_on_port(
                        robot, policy, a.seed, self.cfg.max_steps, stop, True, self.cfg.video_size
                    )
        except PolicyError as e:  # reset() failed in the worker
            rec.run = EpisodeOutcome(a.seed).policy_failed(e)
        finally:
            robot.hold()
            self.ledger.close_interval(iv)
        rec.outcome, rec.error = rec.run.outcome, rec.run.error
        if rec.outcome == "policy_error":
            held = self._workers.pop(a.robot_id, None)
            if held:
                held[1].close()
        rec.wall_end = time.time()
        if rec.outcome == "canceled":
            if log is not None:
                log.abort()
            return "canceled"
        if log is not None:
            meta = {"episode_id": a.episode_id, "goal_id": a.goal_id, "seed": a.seed}
            rec.mcap = log.finish(dict(meta, outcome=rec.outcome))
        self._record_dataset(a, run, rec)
        self._ledger_episode(a, run, rec)
        return "interrupted" if rec.outcome == "interrupted" else "done"

    def _worker_for(self, a: Assignment, run: GoalRun, box: dict) -> None:
        key = run.req.policy.key()
        held = self._workers.get(a.robot_id)
        if held and held[0] == key and held[1].proc is not None and held[1].proc.poll() is None:
            box["policy"] = held[1]  # warm across episodes (and goals: _park_workers)
            return
        self.sched.set_warm(a.robot_id, repr(key))
        if held:
            held[1].close()
        with self._spare_lock:
            spares = self._spares.get(key)
            spare = spares.pop(0) if spares else None
            self._starting[a.robot_id] = key  # counted as warm by _prefetch from now on
        try:
            if spare is not None:
                pol = spare.result()
            else:
                pol = self._start_worker(run.req.policy, f"{a.robot_id}-policy.log")
            self._workers[a.robot_id] = (key, pol)
            box["policy"] = pol
        except (PolicyError, RolloutError) as e:
            self._workers.pop(a.robot_id, None)
            box["error"] = e if isinstance(e, PolicyError) else PolicyError("source", e.msg)
        finally:
            with self._spare_lock:
                self._starting.pop(a.robot_id, None)
        if spare is not None:
            self._prefetch()  # its slot may serve a goal waiting behind

    def _start_worker(self, ref: PolicyRef, log_name: str) -> SandboxedPolicy:
        src = policy_source(ref)
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        pol = SandboxedPolicy(
            src,
            cache_dir=self.data_dir / "code-cache",
            step_timeout=self.cfg.step_timeout,
            log_path=self.data_dir / "logs" / log_name,
        )
        pol.start()
        return pol

    def _prefetch(self) -> None:
        """Start spare workers for the goals' policies, oldest goal first: for each, as many
        as robots may run it at once less those warm or spare already; at most two spares per
        robot in all (one per robot left robots waiting for the second of two experiments
        submitted together: MRU 95.7 % vs 98.4 % in bench/agents_mru.py). Called when a goal
        arrives and when a robot takes a spare."""
        starts = []
        with self._spare_lock:
            room = 2 * len(self.fleet) - sum(len(v) for v in self._spares.values())
            warm = [k for r, (k, _p) in list(self._workers.items()) if r not in self._starting]
            warm += self._starting.values()
            for run in list(self._goals.values()):
                if room <= 0:
                    break
                if run.stop.is_set():
                    continue
                key = run.req.policy.key()
                want = min(run.req.num_episodes, len(run.robots))
                n = min(want - warm.count(key) - len(self._spares.get(key, [])), room)
                if n > 0:
                    futures = [Future() for _ in range(n)]
                    self._spares.setdefault(key, []).extend(futures)
                    starts.append((run.req.policy, futures))
                    room -= n
        for ref, futures in starts:
            label = re.sub(r"[^\w.-]+", "_", ref.label)[:60]
            threading.Thread(
                target=self._start_spares, args=(ref, label, futures), daemon=True
            ).start()

    def _start_spares(self, ref: PolicyRef, label: str, futures: list[Future]) -> None:
        for fut in futures:  # one after another: robots run meanwhile
            if self._stop.is_set():
                fut.set_exception(PolicyError("crash", "the rollout service stopped"))
                continue
            try:
                # one log per policy (its spares append to it): a night of experiments leaves
                # one file per commit, not one per worker
                fut.set_result(self._start_worker(ref, f"{label}-policy.log"))
            except (PolicyError, RolloutError) as e:
                fut.set_exception(e)
            except Exception as e:  # noqa: BLE001 - whoever waits on it must not hang
                fut.set_exception(PolicyError("crash", f"{type(e).__name__}: {e}"))

    def _drop_spares(self, keys: set | None = None) -> None:
        """Close spare workers no goal needs any more (their policy's goals ended): those
        whose policy key is not in ``keys`` (default: the goals' policies)."""
        if keys is None:
            keys = {r.req.policy.key() for r in list(self._goals.values())}
        with self._spare_lock:
            stale = [f for k, fs in self._spares.items() if k not in keys for f in fs]
            self._spares = {k: fs for k, fs in self._spares.items() if k in keys}
        for fut in stale:
            fut.add_done_callback(_close_spare)

    def _park_workers(self, ref: PolicyRef) -> None:
        """The last goal ended: its policy's workers stay warm for ``worker_keep`` s when their
        code cannot change (:func:`_keeps`), so a next goal of the same policy does not start
        them again (a worker's start costs ~0.5 s of CPU); any others close now."""
        closing = []
        with self._spare_lock:
            if self._goals or self._bg_run is not None:
                return  # other goals may use them; they are replaced when the policy changes
            keep = self.cfg.worker_keep > 0 and _keeps(ref)
            for robot, (key, pol) in list(self._workers.items()):
                if not (keep and key == ref.key()):
                    closing.append(pol)
                    self._workers.pop(robot, None)
            if self._workers:
                self._keep_until = time.monotonic() + self.cfg.worker_keep
        for pol in closing:
            pol.close()

    def _expire_workers(self) -> None:
        """Close the workers kept after the last goal once no goal came for worker_keep s."""
        with self._spare_lock:
            if self._keep_until is None or time.monotonic() < self._keep_until or self._goals:
                return
            self._keep_until = None
            closing = [pol for _k, pol in self._workers.values()]
            self._workers.clear()
        for pol in closing:
            pol.close()

    # --- recording ----------------------------------------------------------------------
    def _record_dataset(self, a: Assignment, run: GoalRun, rec: EpisodeRecord) -> None:
        if rec.run is None or not rec.run.states:
            return
        root = self.data_dir / "datasets" / a.goal_id
        with self._writers_lock:
            w = self._writers.get(a.goal_id)
            if w is None:
                w = self._writers[a.goal_id] = LeRobotDatasetWriter(
                    root, fps=int(self.cfg.control_hz), image_size=self.cfg.video_size or None
                )
        ep = rec.run.to_episode_data(
            {
                "episode_id": a.episode_id,
                "robot_id": a.robot_id,
                "policy": run.req.policy.to_dict(),
                "outcome": rec.outcome,
            }
        )
        rec.dataset, rec.dataset_index = str(root), w.add_episode(ep)

    def _ledger_episode(self, a: Assignment, run: GoalRun, rec: EpisodeRecord) -> None:
        self.ledger.add_episode(
            {
                "id": a.episode_id,
                "goal_id": a.goal_id,
                "agent_id": a.agent_id,
                "robot_id": a.robot_id,
                "policy": run.req.policy.to_dict(),
                "task": run.req.task,
                "seed": a.seed,
                "status": rec.outcome,
                "success": int(rec.success),
                "steps": rec.steps,
                "robot_seconds": rec.robot_seconds,
                "reset_seconds": rec.reset_seconds,
                "wall_start": rec.wall_start,
                "wall_end": rec.wall_end or time.time(),
                "dataset": rec.dataset,
                "dataset_index": rec.dataset_index,
                "mcap": rec.mcap,
                "error": rec.error,
                "background": int(a.background),
            }
        )

    # --- status -------------------------------------------------------------------------
    def robot_states(self) -> list[RobotState]:
        states = self.sched.robots()
        out = []
        for r in self.fleet:
            a = self._current.get(r)
            out.append(
                RobotState(
                    r,
                    states[r],
                    self._phase[r],
                    a.goal_id if a else "",
                    a.episode_id if a else "",
                )
            )
        return out

    @property
    def busy(self) -> int:
        return sum(1 for p in self._phase.values() if p != "idle")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for _k, pol in list(self._workers.values()):
            pol.close()
        self._drop_spares(keys=set())
