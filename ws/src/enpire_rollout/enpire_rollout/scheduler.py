"""The fleet scheduler: many goals from many agents share the robots; ROS-free.

Whenever a robot is free and any goal has episodes left, the robot gets one (robots never wait
for agents while work is queued). Which goal: the highest priority, then fair share (the agent
with the fewest episodes running now), then a goal whose policy the robot's worker has loaded
(no worker to start), then the goal closest to finishing, then the oldest. An episode that is
interrupted (its cell died) goes back to the queue with the same seed, for another robot; the
robot leaves the rotation until it is reported up again. A failed reset also retries the seed;
a robot whose resets fail ``max_reset_failures`` times in a row cools down out of the rotation
(for ``cooldown`` s, doubling each time, at most ``max_cooldown``), and a seed whose reset
failed ``max_seed_retries`` times is given up (reported as skipped), so a cell that cannot
reset, or a start state no robot can set up, cannot loop. With nothing queued, robots may run
background episodes (e.g. data collection with the best policy) that any goal preempts.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field


@dataclass
class GoalSpec:
    goal_id: str
    agent_id: str
    episodes: int
    seed: int = 0  # episode k of the goal uses seed + k
    robots: frozenset[str] | None = None  # allowed robots (None: any)
    max_parallel: int = 0  # 0: as many robots as are free
    background: bool = False
    priority: int = 0  # higher first (confirmations of likely winners > experiments > fillers)
    policy_key: str = ""  # robots whose policy worker runs this policy prefer the goal


@dataclass
class Assignment:
    episode_id: str
    goal_id: str
    agent_id: str
    robot_id: str
    seed: int
    background: bool = False


@dataclass
class _Goal:
    spec: GoalSpec
    created: float
    pending: list[int] = field(default_factory=list)  # seeds not yet started
    running: dict[str, Assignment] = field(default_factory=dict)
    done: int = 0
    failed_robots: set[str] = field(default_factory=set)
    canceled: bool = False
    retries: dict[int, int] = field(default_factory=dict)  # seed -> failed resets
    failed_on: dict[int, set[str]] = field(default_factory=dict)  # seed -> robots it failed on
    skipped: list[int] = field(default_factory=list)  # seeds given up

    @property
    def finished(self) -> bool:
        settled = self.done + len(self.skipped) >= self.spec.episodes
        return (settled or self.canceled) and not self.running


class FleetScheduler:
    def __init__(
        self,
        robots: list[str],
        background: GoalSpec | None = None,
        max_reset_failures: int = 3,
        cooldown: float = 10.0,
        max_cooldown: float = 300.0,
        max_seed_retries: int = 3,
        clock=time.monotonic,
    ):
        if not robots:
            raise ValueError("a fleet needs at least one robot")
        if max_reset_failures < 1 or max_seed_retries < 0 or cooldown < 0:
            raise ValueError("max_reset_failures >= 1, max_seed_retries >= 0, cooldown >= 0")
        self._lock = threading.Lock()
        # free | busy | down (cell lost) | cooldown (resets keep failing)
        self._robots: dict[str, str] = dict.fromkeys(robots, "free")
        self._streak: dict[str, int] = dict.fromkeys(robots, 0)  # reset failures in a row
        self._cooldowns: dict[str, int] = dict.fromkeys(robots, 0)
        self._cool_until: dict[str, float] = {}
        self.max_reset_failures, self.max_seed_retries = max_reset_failures, max_seed_retries
        self.cooldown, self.max_cooldown = cooldown, max_cooldown
        self._clock = clock
        self._goals: dict[str, _Goal] = {}
        self._warm: dict[str, str] = {}  # robot -> policy key of its warm worker
        self._background = background
        self._bg_seed = itertools.count(background.seed if background else 0)
        self._ids = itertools.count()

    # --- goals --------------------------------------------------------------------------
    def add_goal(self, spec: GoalSpec) -> list[Assignment]:
        """Queue a goal; returns background episodes it preempts (cancel them)."""
        if spec.episodes <= 0:
            raise ValueError("episodes must be > 0")
        with self._lock:
            if spec.goal_id in self._goals:
                raise ValueError(f"goal {spec.goal_id} already queued")
            unknown = (spec.robots or frozenset()) - set(self._robots)
            if unknown:
                raise ValueError(f"unknown robots {sorted(unknown)}")
            g = _Goal(spec, time.monotonic(), list(range(spec.seed, spec.seed + spec.episodes)))
            self._goals[spec.goal_id] = g
            bg = self._goals.get("__background__")
            return list(bg.running.values()) if bg else []

    def cancel_goal(self, goal_id: str) -> list[Assignment]:
        """Stop starting episodes of a goal; returns its running episodes."""
        with self._lock:
            g = self._goals.get(goal_id)
            if g is None:
                return []
            g.canceled = True
            g.pending.clear()
            return list(g.running.values())

    def goal_status(self, goal_id: str) -> dict:
        with self._lock:
            g = self._goals[goal_id]
            return {
                "requested": g.spec.episodes,
                "done": g.done,
                "running": len(g.running),
                "pending": len(g.pending),
                "finished": g.finished,
                "canceled": g.canceled,
                "skipped": list(g.skipped),
            }

    def forget(self, goal_id: str) -> None:
        with self._lock:
            self._goals.pop(goal_id, None)

    # --- robots -------------------------------------------------------------------------
    def robots(self) -> dict[str, str]:
        with self._lock:
            self._end_cooldowns()
            return dict(self._robots)

    def cooldown_left(self, robot_id: str) -> float:
        with self._lock:
            return max(0.0, self._cool_until.get(robot_id, 0.0) - self._clock())

    def _end_cooldowns(self) -> None:
        now = self._clock()
        for robot, until in list(self._cool_until.items()):
            if now >= until:
                del self._cool_until[robot]
                if self._robots.get(robot) == "cooldown":
                    self._robots[robot] = "free"

    def set_warm(self, robot_id: str, policy_key: str) -> None:
        """The policy a robot's worker has loaded (starting another one costs time)."""
        with self._lock:
            self._warm[robot_id] = policy_key

    def robot_down(self, robot_id: str) -> None:
        with self._lock:
            if robot_id in self._robots:
                self._robots[robot_id] = "down"

    def robot_up(self, robot_id: str) -> None:
        with self._lock:
            if self._robots.get(robot_id) == "down":
                self._robots[robot_id] = "free"

    # --- assignment ---------------------------------------------------------------------
    def next_assignments(self) -> list[Assignment]:
        """Give every free robot an episode, if any is queued (or background work)."""
        out = []
        with self._lock:
            self._end_cooldowns()
            for robot, state in self._robots.items():
                if state != "free":
                    continue
                a = self._pick(robot)
                if a is None:
                    continue
                self._robots[robot] = "busy"
                out.append(a)
        return out

    def _running_by_agent(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for g in self._goals.values():
            if g.spec.background:
                continue
            counts[g.spec.agent_id] = counts.get(g.spec.agent_id, 0) + len(g.running)
        return counts

    def _pick(self, robot: str) -> Assignment | None:
        share = self._running_by_agent()
        candidates = []
        for g in self._goals.values():
            s = g.spec
            if s.background or not g.pending or g.canceled:
                continue
            if s.robots is not None and robot not in s.robots:
                continue
            if s.max_parallel and len(g.running) >= s.max_parallel:
                continue
            seed_i = self._seed_for(g, robot)
            if seed_i is None:
                continue
            remaining = s.episodes - g.done
            # prefer a robot that has not failed this goal's episode before
            retry_penalty = int(robot in g.failed_robots)
            cold = int(not s.policy_key or self._warm.get(robot) != s.policy_key)
            key = (
                -s.priority,
                share.get(s.agent_id, 0),
                cold,
                retry_penalty,
                remaining,
                g.created,
            )
            candidates.append((key, g, seed_i))
        if candidates:
            _, g, seed_i = min(candidates, key=lambda c: c[0])
            return self._start(g, robot, g.pending.pop(seed_i))
        if self._background is None:
            return None
        bg = self._goals.get("__background__")
        if bg is None:
            spec = GoalSpec("__background__", self._background.agent_id, 1 << 62,
                            background=True)  # fmt: skip
            bg = self._goals["__background__"] = _Goal(spec, time.monotonic())
        return self._start(bg, robot, next(self._bg_seed))

    def _seed_for(self, g: _Goal, robot: str) -> int | None:
        """Index of the pending seed ``robot`` should run: one that has not failed on it, or
        (when every robot the goal may use has failed it) the first one; None: leave the goal's
        seeds to other robots."""
        for i, seed in enumerate(g.pending):
            if robot not in g.failed_on.get(seed, ()):
                return i
        usable = set(g.spec.robots or self._robots)
        for i, seed in enumerate(g.pending):
            if usable <= g.failed_on.get(seed, set()):
                return i
        return None

    def _start(self, g: _Goal, robot: str, seed: int) -> Assignment:
        eid = f"{g.spec.goal_id}-{next(self._ids):06d}"
        a = Assignment(eid, g.spec.goal_id, g.spec.agent_id, robot, seed, g.spec.background)
        g.running[eid] = a
        return a

    def episode_finished(self, a: Assignment, outcome: str) -> None:
        """``outcome``: "done" (success or failure of the policy: counts toward the goal),
        "interrupted" (the cell failed: the seed is retried, the robot leaves the rotation),
        "retry" (the reset failed: the seed is retried up to ``max_seed_retries`` times, the
        robot stays in rotation unless its resets keep failing),
        "preempted" / "canceled" (not counted, not retried)."""
        with self._lock:
            g = self._goals.get(a.goal_id)
            if g is not None:
                g.running.pop(a.episode_id, None)
                if outcome == "done":
                    g.done += 1
                elif outcome in ("interrupted", "retry") and not g.canceled:
                    if not g.spec.background:
                        n = g.retries[a.seed] = g.retries.get(a.seed, 0) + (outcome == "retry")
                        if outcome == "retry":
                            g.failed_on.setdefault(a.seed, set()).add(a.robot_id)
                        if n > self.max_seed_retries:
                            g.skipped.append(a.seed)
                        else:
                            g.pending.insert(0, a.seed)
                        g.failed_robots.add(a.robot_id)
            robot = a.robot_id
            if outcome == "retry":
                self._streak[robot] = self._streak.get(robot, 0) + 1
            elif outcome == "done":
                self._streak[robot] = 0
                self._cooldowns[robot] = 0
            if outcome == "interrupted":
                self._robots[robot] = "down"
            elif self._robots.get(robot) == "busy":
                if self._streak.get(robot, 0) >= self.max_reset_failures:
                    k = self._cooldowns[robot] = self._cooldowns.get(robot, 0) + 1
                    wait = min(self.cooldown * 2 ** (k - 1), self.max_cooldown)
                    self._cool_until[robot] = self._clock() + wait
                    self._streak[robot] = 0
                    self._robots[robot] = "cooldown"
                else:
                    self._robots[robot] = "free"

    def has_queued_goals(self) -> bool:
        with self._lock:
            return any(g.pending for g in self._goals.values() if not g.spec.background)
