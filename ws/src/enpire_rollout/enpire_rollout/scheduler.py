"""The fleet scheduler: many goals from many agents share the robots; ROS-free.

Whenever a robot is free and any goal has episodes left, the robot gets one (robots never wait
for agents while work is queued). Which goal: fair share first (the agent with the fewest
episodes running now), then the goal closest to finishing, then the oldest. An episode that is
interrupted (its cell died) goes back to the queue with the same seed, for another robot; the
robot leaves the rotation until it is reported up again. With nothing queued, robots may run
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

    @property
    def finished(self) -> bool:
        return (self.done >= self.spec.episodes or self.canceled) and not self.running


class FleetScheduler:
    def __init__(self, robots: list[str], background: GoalSpec | None = None):
        if not robots:
            raise ValueError("a fleet needs at least one robot")
        self._lock = threading.Lock()
        self._robots: dict[str, str] = dict.fromkeys(robots, "free")  # free | busy | down
        self._goals: dict[str, _Goal] = {}
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
            }

    def forget(self, goal_id: str) -> None:
        with self._lock:
            self._goals.pop(goal_id, None)

    # --- robots -------------------------------------------------------------------------
    def robots(self) -> dict[str, str]:
        with self._lock:
            return dict(self._robots)

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
            remaining = s.episodes - g.done
            # prefer a robot that has not failed this goal's episode before
            retry_penalty = int(robot in g.failed_robots)
            key = (share.get(s.agent_id, 0), retry_penalty, remaining, g.created)
            candidates.append((key, g))
        if candidates:
            g = min(candidates, key=lambda c: c[0])[1]
            return self._start(g, robot, g.pending.pop(0))
        if self._background is None:
            return None
        bg = self._goals.get("__background__")
        if bg is None:
            spec = GoalSpec("__background__", self._background.agent_id, 1 << 62,
                            background=True)  # fmt: skip
            bg = self._goals["__background__"] = _Goal(spec, time.monotonic())
        return self._start(bg, robot, next(self._bg_seed))

    def _start(self, g: _Goal, robot: str, seed: int) -> Assignment:
        eid = f"{g.spec.goal_id}-{next(self._ids):06d}"
        a = Assignment(eid, g.spec.goal_id, g.spec.agent_id, robot, seed, g.spec.background)
        g.running[eid] = a
        return a

    def episode_finished(self, a: Assignment, outcome: str) -> None:
        """``outcome``: "done" (success or failure of the policy: counts toward the goal),
        "interrupted" (the cell failed: the seed is retried, the robot leaves the rotation),
        "retry" (e.g. the reset failed: the seed is retried, the robot stays in rotation),
        "preempted" / "canceled" (not counted, not retried)."""
        with self._lock:
            g = self._goals.get(a.goal_id)
            if g is not None:
                g.running.pop(a.episode_id, None)
                if outcome == "done":
                    g.done += 1
                elif outcome in ("interrupted", "retry") and not g.canceled:
                    if not g.spec.background:
                        g.pending.insert(0, a.seed)
                        g.failed_robots.add(a.robot_id)
            if outcome == "interrupted":
                self._robots[a.robot_id] = "down"
            elif self._robots.get(a.robot_id) == "busy":
                self._robots[a.robot_id] = "free"

    def has_queued_goals(self) -> bool:
        with self._lock:
            return any(g.pending for g in self._goals.values() if not g.spec.background)
