"""The experiment queue over a real ledger and an in-process fleet (RolloutService with
simulated cells, sandboxed policy workers): submit returns at once, the feeder keeps robots
busy, limits per agent, confirmations on fresh seeds, crash recovery."""

from __future__ import annotations

import time

import pytest

from enpire_policy.policy_ref import PolicyRef
from enpire_rollout.experiments import (
    FRESH_SEEDS,
    ConfirmRule,
    ExperimentFeeder,
    ExperimentQueue,
    QueueError,
)
from enpire_rollout.ledger import Ledger
from enpire_rollout.rollout_service import RolloutService, ServiceConfig, SimRobot
from enpire_rollout.scheduler import FleetScheduler, GoalSpec

HEURISTIC = PolicyRef(name="heuristic", commit="c0ffee")


@pytest.fixture
def fleet(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    robots = {r: SimRobot(r) for r in ("robot_0", "robot_1")}
    cfg = ServiceConfig(max_steps=300, video_size=0, min_episode_wall=0.0)
    svc = RolloutService(robots, ledger, tmp_path, cfg)
    yield svc, ledger
    svc.close()


def test_submit_returns_at_once_and_the_fleet_runs_it(fleet):
    svc, ledger = fleet
    q = ExperimentQueue(ledger, max_in_flight=1)
    t0 = time.monotonic()
    exp = q.submit("agent_0", HEURISTIC, 4, seed=3, note="baseline")
    assert time.monotonic() - t0 < 1.0 and exp.status == "queued"
    with pytest.raises(QueueError, match="at most 1"):
        q.submit("agent_0", HEURISTIC, 4)
    other = q.submit("agent_1", PolicyRef(name="naive", commit="bad"), 2)  # its own limit
    feeder = ExperimentFeeder(svc, q, server="fleet_a", poll=0.1).start()
    try:
        seen = []
        done = q.wait(exp.id, timeout=120, progress=lambda e: seen.append(e.episodes_done))
        assert done.status == "done", done
        assert done.episodes_done == 4 and 0 <= done.successes <= 4
        assert seen[0] == 0 and seen[-1] == 4
        rows = ledger.episodes(goal_id=done.goal_id)
        assert sorted(r["seed"] for r in rows) == [3, 4, 5, 6]
        summary = done.summary()
        assert summary["seeds"] == [3, 6] and len(summary["ci"]) == 2
        assert q.wait(other.id, timeout=120).status == "done"
        board = q.leaderboard()
        assert {(e["agent_id"], e["commit"]) for e in board} == {
            ("agent_0", "c0ffee"),
            ("agent_1", "bad"),
        }
        assert board[0]["commit"] == "c0ffee"  # the heuristic beats the naive policy
        q.submit("agent_0", HEURISTIC, 1)  # no longer in flight: may submit again
    finally:
        feeder.close()


def test_refusals_say_why(fleet):
    _svc, ledger = fleet
    q = ExperimentQueue(ledger, max_in_flight=2, max_episodes=50)
    with pytest.raises(QueueError, match="1 .. 50"):
        q.submit("a", HEURISTIC, 51)
    with pytest.raises(QueueError, match="kind"):
        q.submit("a", HEURISTIC, 5, kind="final")
    with pytest.raises(QueueError, match="screening seeds"):
        q.submit("a", HEURISTIC, 5, seed=FRESH_SEEDS[0])
    with pytest.raises(QueueError, match="no experiment"):
        q.cancel("nope", "a")


def test_fresh_and_confirmation_seeds_are_drawn_by_the_queue(fleet):
    _svc, ledger = fleet
    q = ExperimentQueue(ledger, max_in_flight=5)
    a = q.submit("a", HEURISTIC, 5, kind="fresh", seed=7)
    b = q.submit("a", HEURISTIC, 5, kind="fresh", seed=7)
    assert a.seed != 7 and a.seed >= FRESH_SEEDS[0] and a.seed != b.seed
    assert "seeds" not in a.summary()  # fresh seeds are not shown to the agent


def test_a_winner_is_confirmed_on_fresh_seeds_first(fleet):
    svc, ledger = fleet
    q = ExperimentQueue(ledger, max_in_flight=3)
    rule = ConfirmRule(goal_success=0.5, episodes=3, total=6, when_idle=False)
    feeder = ExperimentFeeder(svc, q, poll=0.1, confirm=rule).start()
    try:
        exp = q.wait(q.submit("agent_0", HEURISTIC, 2, seed=0).id, timeout=120)
        assert exp.status == "done"
        if exp.success_rate < 0.5:
            pytest.skip("the heuristic failed its two screening seeds")  # not expected
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            n, k = q.confirmation("c0ffee")
            if n >= 6 or n - k > 3:
                break
            time.sleep(0.2)
        confirms = ledger.query("SELECT * FROM experiments WHERE kind = 'confirm'")
        assert len(confirms) >= 1 and all(c["priority"] == 2 for c in confirms)
        assert all(c["seed"] >= FRESH_SEEDS[0] for c in confirms)
        seeds = {r["seed"] for c in confirms for r in ledger.episodes(goal_id=c["goal_id"])}
        assert seeds and min(seeds) >= FRESH_SEEDS[0]
        n, _k = q.confirmation("c0ffee")
        assert n >= 3
    finally:
        feeder.close()


def test_idle_robots_confirm_the_best_candidate(fleet):
    svc, ledger = fleet
    q = ExperimentQueue(ledger)
    rule = ConfirmRule(goal_success=1.0, episodes=2, total=4, min_rate=0.0, when_idle=True)
    feeder = ExperimentFeeder(svc, q, poll=0.1, confirm=rule).start()
    try:
        naive = PolicyRef(name="naive", commit="n0")  # never at the goal: no priority confirm
        assert q.wait(q.submit("agent_0", naive, 2).id, timeout=120).status == "done"
        deadline = time.monotonic() + 60
        rows = []
        while time.monotonic() < deadline and not rows:
            rows = ledger.query("SELECT * FROM experiments WHERE kind = 'confirm'")
            time.sleep(0.1)
        assert rows and rows[0]["priority"] == 0  # a filler: any submission goes first
    finally:
        feeder.close()


def test_idle_robots_leave_earlier_runs_candidates_alone(fleet):
    """A ledger shared with earlier runs (the default data dir) holds their candidates: a fleet
    confirms, when idle, only those of the runs whose experiments it has run itself."""
    svc, ledger = fleet
    q = ExperimentQueue(ledger)
    first = ExperimentFeeder(svc, q, server="last_night", poll=0.1).start()
    try:
        old = q.submit("agent_0", PolicyRef(name="naive", commit="n0"), 2, run_id="old")
        assert q.wait(old.id, timeout=120).status == "done"
    finally:
        first.close()
    rule = ConfirmRule(goal_success=1.0, episodes=2, total=4, min_rate=0.0, when_idle=True)
    feeder = ExperimentFeeder(svc, q, server="today", poll=0.1, confirm=rule).start()
    try:
        time.sleep(2.0)  # idle: ~20 looks at the ledger
        assert not ledger.query("SELECT * FROM experiments WHERE kind = 'confirm'")
        new = q.submit("agent_0", PolicyRef(name="naive", commit="n1"), 2, run_id="new")
        assert q.wait(new.id, timeout=120).status == "done"
        deadline = time.monotonic() + 60
        rows = []
        while time.monotonic() < deadline and not rows:
            rows = ledger.query("SELECT * FROM experiments WHERE kind = 'confirm'")
            time.sleep(0.1)
        assert {(r["run_id"], r["commit_sha"]) for r in rows} == {("new", "n1")}
    finally:
        feeder.close()


def test_a_restarted_fleet_requeues_what_it_left_running(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    q = ExperimentQueue(ledger)
    exp = q.submit("a", HEURISTIC, 2)
    assert ledger.claim_experiment(exp.id, "fleet_x")
    assert not ledger.claim_experiment(exp.id, "fleet_y")  # one fleet takes it
    assert q.get(exp.id).status == "running"
    robots = {"robot_0": SimRobot("robot_0")}
    svc = RolloutService(robots, ledger, tmp_path, ServiceConfig(video_size=0))
    feeder = ExperimentFeeder(svc, q, server="fleet_x", poll=0.1).start()  # the same fleet
    try:
        assert q.wait(exp.id, timeout=120).status == "done"
    finally:
        feeder.close()
        svc.close()


def test_higher_priority_goals_get_the_next_free_robot():
    s = FleetScheduler(["r0"])
    s.add_goal(GoalSpec("exp", "a", 3))
    s.add_goal(GoalSpec("confirm", "b", 3, priority=2))
    (a,) = s.next_assignments()
    assert a.goal_id == "confirm"


def test_a_free_robot_keeps_to_the_policy_its_worker_has_loaded():
    s = FleetScheduler(["r0"])
    s.add_goal(GoalSpec("older", "a", 3, policy_key="p1"))
    s.add_goal(GoalSpec("warm", "a", 3, policy_key="p2"))
    s.set_warm("r0", "p2")
    (a,) = s.next_assignments()
    assert a.goal_id == "warm"  # same agent, same priority: no new worker to start
