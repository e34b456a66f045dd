"""R node: serves the ``Rollout`` action on a fleet of robots and publishes fleet metrics.

A thin ROS wrapper over :mod:`enpire_rollout.scheduler` (which robot runs what),
:mod:`enpire_rollout.robot_link` (one episode on one robot), the ledger, the LeRobotDataset
writer and the per-episode MCAP log. Policies run in sandboxed worker processes
(:mod:`enpire_policy.sandbox`), one per robot and policy, started while the robot resets.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from enpire_env.goal_liveness import Liveness, ServerGoneError, send_goal, wait_result
from enpire_env.kinematics import So101Kinematics
from enpire_env.node_utils import StreamNode, declare, run_node
from enpire_env.ros_conversions import stamp_from_seconds
from enpire_env.sim_cell import CellConfig
from enpire_msgs.action import Reset, Rollout
from enpire_msgs.msg import EpisodeResult, FleetMetrics, RobotStatus
from enpire_policy import isolation
from enpire_policy.episode import wilson_interval
from enpire_policy.lerobot_dataset import EpisodeData, LeRobotDatasetWriter
from enpire_policy.sandbox import PolicyError, SandboxedPolicy
from enpire_rollout.ledger import Ledger
from enpire_rollout.mcap_log import McapEpisodeLog
from enpire_rollout.metrics import fleet_usage
from enpire_rollout.robot_link import CellLostError, EpisodeRecord, RobotLink
from enpire_rollout.rollout_core import (
    RolloutError,
    RolloutErrorCode,
    RolloutRequest,
    policy_source,
    validate,
)
from enpire_rollout.scheduler import Assignment, FleetScheduler, GoalSpec

OUTCOME = {
    "success": EpisodeResult.OUTCOME_SUCCESS,
    "failure": EpisodeResult.OUTCOME_FAILURE,
    "policy_error": EpisodeResult.OUTCOME_POLICY_ERROR,
    "reset_failed": EpisodeResult.OUTCOME_RESET_FAILED,
    "interrupted": EpisodeResult.OUTCOME_INTERRUPTED,
    "canceled": EpisodeResult.OUTCOME_CANCELED,
}
RESET_CELL_UNAVAILABLE = Reset.Result.CELL_UNAVAILABLE


def _policy_dict(msg) -> dict:
    return {
        k: getattr(msg, k)
        for k in ("name", "agent_id", "repo_path", "commit", "module", "artifact")
    }


class _GoalRun:
    def __init__(self, goal_id: str, req: RolloutRequest, robots: list[str]):
        self.goal_id, self.req, self.robots = goal_id, req, robots
        self.records: list[EpisodeRecord] = []
        self.stop = threading.Event()
        self.changed = threading.Event()  # an episode ended, or a cancel came
        self.lock = threading.Lock()


class RolloutNode(Node):
    def __init__(self) -> None:
        super().__init__("rollout_node")
        self.fleet = list(declare(self, "robots", ["robot_0"], "Robot ids of the fleet."))
        data = os.path.expanduser(
            declare(
                self, "data_dir", "~/.enpire/data", "Datasets, MCAP logs and the ledger go here."
            )
        )
        ledger_path = declare(self, "ledger_path", "", "SQLite ledger (empty: data_dir/...).")
        self.max_steps = declare(self, "max_steps", 300, "Control steps per episode.")
        self.control_hz = declare(self, "control_hz", 10.0, "Cell control rate [Hz].")
        self.cell_timeout = declare(
            self, "cell_timeout", 3.0, "Wall seconds without joint states = cell lost."
        )
        self.step_timeout = declare(self, "step_timeout", 1.0, "Policy deadline per step [s].")
        self.reset_timeout = declare(self, "reset_timeout", 120.0, "Wall seconds per reset.")
        self.reset_mode = declare(self, "reset_mode", "", "Reset mode ('' = EN's default).")
        self.video_size = declare(self, "video_size", 96, "Recorded frame side; 0 = no video.")
        self.mcap_image_every = declare(
            self, "mcap_image_every", 5, "Camera frames in MCAP: every n-th (0 = none)."
        )
        time_scale = declare(self, "time_scale", 1.0, "The cells' time scale (for budgets).")
        bg_policy = declare(
            self, "background_policy", "",
            "While no goal is queued, robots run this policy (built-in name or artifact "
            "directory) and record the episodes; any goal preempts it. '' = idle.",
        )  # fmt: skip
        self.min_episode_wall = 5.0 / max(time_scale, 1e-6)
        self.get_logger().info(
            isolation.start_up(
                declare(self, "isolation", "auto", isolation.PARAM_DOC),
                declare(self, "min_isolation", "rlimits", isolation.MIN_PARAM_DOC),
                [Path(data) / "code-cache"],
            )
        )
        self.data_dir = Path(data)
        self.ledger = Ledger(ledger_path or self.data_dir / "ledger.sqlite")
        closed = self.ledger.close_open_intervals()
        if closed:
            self.get_logger().warning(f"closed {closed} interval(s) left open by a crash")
        aborted = self.ledger.abort_running_goals(
            "rollout", "the rollout node stopped while the goal ran (restarted)"
        )
        if aborted:
            self.get_logger().warning(f"aborted {len(aborted)} goal(s) left running: {aborted}")
        self._bg_run = None
        background = None
        if bg_policy:
            ref = {"artifact": bg_policy} if "/" in bg_policy else {"name": bg_policy}
            policy_source(ref)  # fail at start-up on an unknown policy
            req = RolloutRequest(ref, "pusht", 1, [], 0, 0.0, 0, "background")
            self._bg_run = _GoalRun("__background__", req, list(self.fleet))
            background = GoalSpec("__background__", "background", 1, seed=1_000_000)
        self.sched = FleetScheduler(
            self.fleet,
            background=background,
            max_reset_failures=declare(
                self, "max_reset_failures", 3,
                "Failed resets in a row after which a robot cools down out of the rotation.",
            ),
            cooldown=declare(
                self, "reset_cooldown", 10.0,
                "First cool-down [wall s] of a robot whose resets keep failing (doubles).",
            ),
            max_cooldown=declare(self, "max_reset_cooldown", 300.0, "Longest cool-down [s]."),
            max_seed_retries=declare(
                self, "max_seed_retries", 3,
                "Retries of a seed whose reset failed before the seed is given up (skipped).",
            ),
        )  # fmt: skip
        self._episode_stops: dict[str, tuple[str, threading.Event]] = {}
        self.group = ReentrantCallbackGroup()
        kin, cell_cfg = So101Kinematics(), CellConfig()
        self._streams = StreamNode(self)
        video = self.video_size > 0 or self.mcap_image_every > 0
        self.links = {
            r: RobotLink(self, r, self.group, kin, cell_cfg, video, self._streams.node)
            for r in self.fleet
        }
        self._goals: dict[str, _GoalRun] = {}
        self._phase = dict.fromkeys(self.fleet, "idle")
        self._current: dict[str, Assignment | None] = dict.fromkeys(self.fleet)
        self._workers: dict[str, tuple[str, SandboxedPolicy]] = {}
        self._writers: dict[str, LeRobotDatasetWriter] = {}
        self._writers_lock = threading.Lock()
        self._t_start = time.time()
        self.metrics_pub = self.create_publisher(FleetMetrics, "/fleet/metrics", 10)
        self.create_timer(1.0, self._publish_metrics, callback_group=self.group)
        self._stop = threading.Event()
        self._wake = threading.Event()  # the dispatcher has something to do
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)
        self._dispatcher.start()
        self._server = ActionServer(
            self,
            Rollout,
            "rollout",
            execute_callback=self._execute,
            goal_callback=lambda _g: GoalResponse.ACCEPT,
            cancel_callback=self._on_cancel,
            callback_group=self.group,
        )
        self.get_logger().info(f"rollout server ready for robots {self.fleet}; data in {data}")

    # --- goals --------------------------------------------------------------------------
    def _on_cancel(self, _gh) -> CancelResponse:
        for run in list(self._goals.values()):
            run.changed.set()  # its goal loop looks at once
        return CancelResponse.ACCEPT

    def _execute(self, gh) -> Rollout.Result:
        t0 = time.monotonic()
        g = gh.request
        req = RolloutRequest(
            _policy_dict(g.policy),
            g.task or "pusht",
            int(g.num_episodes),
            list(g.robot_ids),
            int(g.num_robots),
            float(g.time_budget),
            int(g.seed),
            g.agent_id,
        )
        result = Rollout.Result()
        try:
            robots = validate(req, self.fleet, self.min_episode_wall)
        except RolloutError as e:
            return self._abort(gh, result, e.code, e.msg, t0)
        goal_id = uuid.uuid4().hex[:12]
        seed = req.seed if req.seed >= 0 else int(np.random.default_rng().integers(1 << 31))
        run = _GoalRun(goal_id, req, robots)
        self._goals[goal_id] = run
        self.ledger.add_goal(
            goal_id, "rollout", req.agent_id, req.policy, req.task, req.num_episodes
        )
        spec = GoalSpec(
            goal_id,
            req.agent_id or "anonymous",
            req.num_episodes,
            seed,
            frozenset(robots),
            req.num_robots,
        )
        for pre in self.sched.add_goal(spec):  # background episodes make way
            self._stop_episode(pre.episode_id)
        self._wake.set()
        self.get_logger().info(
            f"rollout {goal_id}: {req.num_episodes} episodes of "
            f"{req.policy.get('name') or req.policy.get('repo_path')}"
        )
        code, msg = RolloutErrorCode.NONE, ""
        fb = Rollout.Feedback(episodes_total=req.num_episodes)
        last_fb = 0.0
        while True:
            st = self.sched.goal_status(goal_id)
            if st["finished"]:
                break
            if gh.is_cancel_requested and not run.stop.is_set():
                code, msg = RolloutErrorCode.CANCELED, "rollout canceled"
                self._stop_goal(run)
            if (
                req.time_budget
                and time.monotonic() - t0 > req.time_budget
                and not run.stop.is_set()
            ):
                code = RolloutErrorCode.BUDGET_EXHAUSTED
                msg = f"time budget of {req.time_budget:g} s ran out after {st['done']} episodes"
                self._stop_goal(run)
            if time.monotonic() - last_fb > 0.5:
                with run.lock:
                    fb.episodes_done = st["done"]
                    fb.successes = sum(
                        r.success for r in run.records if r.outcome in ("success", "failure")
                    )
                fb.robots = self._robot_status()
                gh.publish_feedback(fb)
                last_fb = time.monotonic()
            run.changed.wait(0.5)  # woken by episodes ending and cancels; feedback >= 2 Hz
            run.changed.clear()
        self.sched.forget(goal_id)
        self._goals.pop(goal_id, None)
        self._close_workers(goal_id)
        with run.lock:
            counted = [
                r for r in run.records if r.outcome in ("success", "failure", "policy_error")
            ]
        n, k = len(counted), sum(r.success for r in counted)
        skipped = st["skipped"]
        result.num_episodes, result.num_successes = n, k
        result.success_rate = k / n if n else 0.0
        result.ci_low, result.ci_high = wilson_interval(k, n)
        result.episode_ids = [r.episode_id for r in counted]
        result.episodes = [self._episode_msg(r, req.task) for r in counted]
        result.robot_seconds = float(sum(r.robot_seconds + r.reset_seconds for r in run.records))
        if (
            code == RolloutErrorCode.NONE
            and n
            and all(r.outcome == "policy_error" for r in counted)
        ):
            code = RolloutErrorCode.POLICY_ERROR
            msg = f"every episode ended in a policy error; first: {counted[0].error}"
        if skipped:
            why = f"{len(skipped)} seed(s) skipped, their reset kept failing: {skipped[:10]}"
            if code == RolloutErrorCode.NONE and not n:
                code, msg = RolloutErrorCode.RESET_FAILED, why
            elif code == RolloutErrorCode.NONE:
                msg = why  # the goal succeeds on the episodes that ran; say what is missing
        summary = {
            "num_episodes": n,
            "successes": k,
            "success_rate": result.success_rate,
            "error_code": int(code),
            "error_msg": msg,
            "skipped_seeds": skipped,
        }
        self.ledger.finish_goal(goal_id, "succeeded" if code == 0 else "aborted", summary)
        if code == RolloutErrorCode.CANCELED and gh.is_cancel_requested:
            result.error_code, result.error_msg = int(code), msg
            result.wall_seconds = time.monotonic() - t0
            gh.canceled()
            return result
        if code != RolloutErrorCode.NONE:
            return self._abort(gh, result, code, msg, t0)
        result.error_msg = msg
        result.wall_seconds = time.monotonic() - t0
        gh.succeed()
        return result

    def _stop_goal(self, run: _GoalRun) -> None:
        run.stop.set()
        for a in self.sched.cancel_goal(run.goal_id):
            self._stop_episode(a.episode_id)
        self._wake.set()

    def _stop_episode(self, episode_id: str) -> None:
        entry = self._episode_stops.get(episode_id)
        if entry is not None:
            entry[1].set()

    def _abort(self, gh, result, code, msg, t0):
        self.get_logger().warning(f"rollout failed ({RolloutErrorCode(code).name}): {msg}")
        result.error_code, result.error_msg = int(code), msg
        result.wall_seconds = time.monotonic() - t0
        gh.abort()
        return result

    # --- dispatch -----------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Event-driven: wakes on new goals, ended episodes and cancels, and once a second for
        cool-downs and robots that are down (listened to until they publish again)."""
        while not self._stop.is_set():
            self._wake.clear()
            for robot, state in self.sched.robots().items():
                link = self.links[robot]
                if state == "down":
                    link.open()
                    if link.alive(self.cell_timeout):
                        self.get_logger().info(f"{robot} is back: rejoins the rotation")
                        link.close()
                        self.sched.robot_up(robot)
            for a in self.sched.next_assignments():
                threading.Thread(target=self._run_assignment, args=(a,), daemon=True).start()
            self._wake.wait(1.0)

    def _run_assignment(self, a: Assignment) -> None:
        run = self._bg_run if a.background else self._goals.get(a.goal_id)
        stop = threading.Event()
        self._episode_stops[a.episode_id] = (a.goal_id, stop)
        if run is not None and run.stop.is_set():
            stop.set()
        rec = EpisodeRecord(
            a.episode_id, a.robot_id, a.seed, "interrupted", wall_start=time.time()
        )
        outcome = "interrupted"
        self._current[a.robot_id] = a
        try:
            if run is None:
                outcome = "canceled"
                return
            outcome = self._episode(a, run, rec, stop)
        except Exception as e:  # noqa: BLE001 - keep the dispatcher alive, record why
            rec.outcome, rec.error = "interrupted", f"{type(e).__name__}: {e}"
            self.get_logger().error(f"episode {a.episode_id} on {a.robot_id}: {rec.error}")
            outcome = "interrupted"
        finally:
            self._phase[a.robot_id] = "idle"
            self._current[a.robot_id] = None
            if run is not None and rec.outcome != "canceled" and not a.background:
                with run.lock:
                    run.records.append(rec)
            self._episode_stops.pop(a.episode_id, None)
            self.links[a.robot_id].close()
            self.sched.episode_finished(a, outcome)
            self._wake.set()
            if run is not None:
                run.changed.set()
            if outcome == "retry" and self.sched.robots().get(a.robot_id) == "cooldown":
                self.get_logger().warning(
                    f"{a.robot_id}: resets keep failing ({rec.error}); out of the rotation for "
                    f"{self.sched.cooldown_left(a.robot_id):.0f} s"
                )

    def _episode(
        self, a: Assignment, run: _GoalRun, rec: EpisodeRecord, stop: threading.Event
    ) -> str:
        link = self.links[a.robot_id]
        # start (or reuse) the policy worker while the robot resets
        worker_box: dict = {}
        starter = threading.Thread(target=self._worker_for, args=(a, run, worker_box))
        starter.start()
        self._phase[a.robot_id] = "resetting"
        iv = self.ledger.open_interval(a.robot_id, "reset", a.goal_id, a.episode_id)
        try:
            ok, code, msg, reset_s = self._reset(a, link)
        finally:
            self.ledger.close_interval(iv)
        rec.reset_seconds = reset_s
        starter.join()
        if not ok:
            rec.outcome, rec.error = (
                ("interrupted" if code == RESET_CELL_UNAVAILABLE else "reset_failed"),
                msg,
            )
            self._ledger_episode(a, run, rec, None, None)
            return "interrupted" if rec.outcome == "interrupted" else "retry"
        if stop.is_set():
            rec.outcome = "canceled"
            return "canceled"
        policy = worker_box.get("policy")
        link.open()  # no episode starts before its cell publishes
        if not link.wait_alive(self.cell_timeout):
            raise CellLostError(f"{a.robot_id} is not publishing joint states")
        self._phase[a.robot_id] = "running"
        iv = self.ledger.open_interval(a.robot_id, "episode", a.goal_id, a.episode_id)
        mcap = McapEpisodeLog(self.data_dir / "mcap" / a.goal_id / f"{a.episode_id}.mcap")
        images = {"n": 0}

        def log(topic, msg):
            if topic == "camera/image_raw":
                images["n"] += 1
                if not self.mcap_image_every or images["n"] % self.mcap_image_every:
                    return
            stamp = getattr(getattr(msg, "header", None), "stamp", None)
            t_ns = int(stamp.sec * 1e9 + stamp.nanosec) if stamp else time.time_ns()
            mcap.write(f"/{a.robot_id}/{topic}", msg, t_ns)

        link.listeners.append(log)
        try:
            if policy is None:
                raise worker_box.get("error") or PolicyError("crash", "no policy worker")
            policy.reset(a.seed)
            link.run_policy(
                rec,
                policy,
                self.max_steps,
                1.0 / self.control_hz,
                self.cell_timeout,
                stop,
                self.video_size,
            )
            rec.outcome = "success" if rec.success else "failure"
            if stop.is_set() and not rec.success:
                rec.outcome = "canceled"
        except PolicyError as e:
            rec.outcome, rec.error = "policy_error", str(e)
            if e.traceback:
                rec.error += "\n" + e.traceback
            self._workers.pop(a.robot_id, None)
        except CellLostError as e:
            rec.outcome, rec.error = "interrupted", str(e)
        finally:
            link.listeners.remove(log)
            link.hold(1.0 / self.control_hz)
            self.ledger.close_interval(iv)
        rec.wall_end = time.time()
        if rec.outcome == "canceled":
            mcap.abort()
            return "canceled"
        mcap.metadata(
            "episode",
            {
                "episode_id": a.episode_id,
                "goal_id": a.goal_id,
                "seed": a.seed,
                "outcome": rec.outcome,
            },
        )
        mcap_path = mcap.close()
        dataset, index = self._record_dataset(a, run, rec)
        self._ledger_episode(a, run, rec, mcap_path, (dataset, index))
        if rec.outcome == "interrupted":
            return "interrupted"
        return "done"

    def _reset(self, a: Assignment, link: RobotLink):
        t0 = time.monotonic()
        if not link.reset_client.wait_for_server(timeout_sec=10.0):
            return False, RESET_CELL_UNAVAILABLE, "no /reset server", 0.0
        goal = Reset.Goal(
            robot_id=a.robot_id, task="pusht", seed=int(a.seed), mode=self.reset_mode
        )
        life = Liveness("the Reset server")
        try:
            handle = send_goal(link.reset_client, goal, life)
            if handle is None or not handle.accepted:
                return False, RESET_CELL_UNAVAILABLE, "reset goal refused", 0.0
            got = wait_result(handle.get_result_async(), life, self.reset_timeout, handle)
        except (ServerGoneError, TimeoutError) as e:  # env_node died: the cell is not at fault
            return False, RESET_CELL_UNAVAILABLE, str(e), time.monotonic() - t0
        r = got.result
        return r.success, int(r.error_code), r.error_msg, float(r.robot_seconds)

    def _worker_for(self, a: Assignment, run: _GoalRun, box: dict) -> None:
        key = json.dumps(run.req.policy, sort_keys=True)
        held = self._workers.get(a.robot_id)
        if held and held[0] == key and held[1].proc is not None:
            box["policy"] = held[1]
            return
        if held:
            held[1].close()
        try:
            src = policy_source(run.req.policy)
            pol = SandboxedPolicy(
                src,
                cache_dir=self.data_dir / "code-cache",
                step_timeout=self.step_timeout,
                log_path=self.data_dir / "logs" / f"{a.robot_id}-policy.log",
            )
            (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
            pol.start()
            self._workers[a.robot_id] = (key, pol)
            box["policy"] = pol
        except (PolicyError, RolloutError) as e:
            box["error"] = e if isinstance(e, PolicyError) else PolicyError("source", e.msg)

    def _close_workers(self, goal_id: str) -> None:
        if any(self._goals.values()) or self._bg_run is not None:
            return  # other goals may use them; they are replaced when the policy changes
        for robot, (_k, pol) in list(self._workers.items()):
            pol.close()
            self._workers.pop(robot, None)

    # --- recording ----------------------------------------------------------------------
    def _record_dataset(self, a: Assignment, run: _GoalRun, rec: EpisodeRecord):
        if not rec.states:
            return "", -1
        root = self.data_dir / "datasets" / a.goal_id
        with self._writers_lock:
            w = self._writers.get(a.goal_id)
            if w is None:
                w = self._writers[a.goal_id] = LeRobotDatasetWriter(
                    root, fps=int(self.control_hz), image_size=self.video_size or None
                )
        ep = EpisodeData(
            np.nan_to_num(np.array(rec.states, float)),
            np.array(rec.actions, float),
            np.array(rec.rewards, float),
            rec.success,
            frames=np.stack(rec.frames) if rec.frames else None,
            info={
                "episode_id": a.episode_id,
                "robot_id": a.robot_id,
                "seed": a.seed,
                "policy": run.req.policy,
                "outcome": rec.outcome,
            },
        )
        return str(root), w.add_episode(ep)

    def _ledger_episode(self, a, run, rec: EpisodeRecord, mcap_path, ds) -> None:
        self.ledger.add_episode(
            {
                "id": a.episode_id,
                "goal_id": a.goal_id,
                "agent_id": a.agent_id,
                "robot_id": a.robot_id,
                "policy": run.req.policy,
                "task": run.req.task,
                "seed": a.seed,
                "status": rec.outcome,
                "success": int(rec.success),
                "steps": rec.steps,
                "robot_seconds": rec.robot_seconds,
                "reset_seconds": rec.reset_seconds,
                "wall_start": rec.wall_start,
                "wall_end": rec.wall_end or time.time(),
                "dataset": ds[0] if ds else "",
                "dataset_index": ds[1] if ds else -1,
                "mcap": str(mcap_path or ""),
                "error": rec.error,
                "background": int(a.background),
            }
        )

    def _episode_msg(self, r: EpisodeRecord, task: str) -> EpisodeResult:
        m = EpisodeResult(
            episode_id=r.episode_id,
            robot_id=r.robot_id,
            task=task,
            seed=int(r.seed),
            outcome=OUTCOME.get(r.outcome, 1),
            success=r.success,
            steps=int(r.steps),
            final_reward=float(r.final_reward),
            max_reward=float(r.max_reward),
            robot_seconds=float(r.robot_seconds),
        )
        return m

    # --- status -------------------------------------------------------------------------
    def _robot_status(self) -> list[RobotStatus]:
        states = self.sched.robots()
        out = []
        for r in self.fleet:
            a = self._current.get(r)
            if states[r] == "down":
                st = RobotStatus.STATE_OFFLINE
            elif states[r] == "cooldown":
                st = RobotStatus.STATE_FAULT
            elif self._phase[r] == "resetting":
                st = RobotStatus.STATE_RESETTING
            elif self._phase[r] == "running":
                st = RobotStatus.STATE_RUNNING
            else:
                st = RobotStatus.STATE_IDLE
            out.append(
                RobotStatus(
                    robot_id=r,
                    state=st,
                    phase=self._phase[r],
                    goal_id=a.goal_id if a else "",
                    episode_id=a.episode_id if a else "",
                )
            )
        return out

    def _publish_metrics(self) -> None:
        if not self.metrics_pub.get_subscription_count():
            return  # the ledger queries below cost more than nobody listening is worth
        now = time.time()
        total = fleet_usage(self.ledger, self._t_start, now, self.fleet)
        window = fleet_usage(self.ledger, max(self._t_start, now - 60.0), now, self.fleet)
        m = FleetMetrics(
            num_robots=len(self.fleet),
            mru=total.mru,
            mru_window=window.mru,
            window_seconds=60.0,
            episodes_per_hour=total.episodes_per_hour,
            episodes_total=total.episodes,
            robot_ids=list(self.fleet),
            robot_utilisation=[total.per_robot.get(r, 0.0) for r in self.fleet],
        )
        m.num_busy = sum(1 for p in self._phase.values() if p != "idle")
        m.header.stamp = stamp_from_seconds(now)
        self.metrics_pub.publish(m)

    def destroy_node(self) -> None:
        self._stop.set()
        self._wake.set()
        for _k, pol in list(self._workers.values()):
            pol.close()
        self._streams.close()
        super().destroy_node()


def main(args=None) -> None:
    # threads: goals' execute callbacks, robot topic callbacks, reset clients, timers
    run_node(RolloutNode, lambda node: 4 * len(node.fleet) + 8, args)


if __name__ == "__main__":
    main()
