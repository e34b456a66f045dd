"""The fleet scheduler's rules, without ROS."""

import pytest

from enpire_rollout.scheduler import FleetScheduler, GoalSpec


def test_every_free_robot_gets_work_and_counts_are_exact():
    s = FleetScheduler(["r0", "r1", "r2", "r3"])
    s.add_goal(GoalSpec("g", "a0", episodes=6, seed=100))
    first = s.next_assignments()
    assert sorted(a.robot_id for a in first) == ["r0", "r1", "r2", "r3"]
    assert sorted(a.seed for a in first) == [100, 101, 102, 103]
    assert s.next_assignments() == []  # all busy
    for a in first[:2]:
        s.episode_finished(a, "done")
    second = s.next_assignments()
    assert sorted(a.seed for a in second) == [104, 105]
    for a in first[2:] + second:
        s.episode_finished(a, "done")
    st = s.goal_status("g")
    assert st["done"] == 6 and st["finished"] and s.next_assignments() == []


def test_fair_share_between_agents_then_near_finished_first():
    s = FleetScheduler(["r0", "r1", "r2", "r3"])
    s.add_goal(GoalSpec("big", "a0", episodes=100))
    s.add_goal(GoalSpec("small", "a1", episodes=100))
    got = s.next_assignments()
    agents = [a.agent_id for a in got]
    assert agents.count("a0") == 2 and agents.count("a1") == 2
    s2 = FleetScheduler(["r0"])
    s2.add_goal(GoalSpec("long", "a0", episodes=50))
    s2.add_goal(GoalSpec("short", "a0", episodes=2))
    (a,) = s2.next_assignments()
    assert a.goal_id == "short"  # same agent: the goal closest to done goes first


def test_interrupted_episode_is_retried_elsewhere_and_robot_leaves_rotation():
    s = FleetScheduler(["r0", "r1"])
    s.add_goal(GoalSpec("g", "a", episodes=2, seed=7))
    a0, a1 = s.next_assignments()
    s.episode_finished(a0, "interrupted")
    assert s.robots()[a0.robot_id] == "down"
    assert s.next_assignments() == []  # the other robot is still busy
    s.episode_finished(a1, "done")
    (retry,) = s.next_assignments()
    assert retry.seed == a0.seed and retry.robot_id == a1.robot_id
    s.episode_finished(retry, "done")
    assert s.goal_status("g")["finished"]
    s.robot_up(a0.robot_id)
    assert s.robots()[a0.robot_id] == "free"


def test_background_work_fills_idle_robots_and_goals_preempt_it():
    s = FleetScheduler(["r0", "r1"], background=GoalSpec("bg", "best", 1, seed=9000))
    bg = s.next_assignments()
    assert len(bg) == 2 and all(a.background for a in bg)
    preempted = s.add_goal(GoalSpec("g", "a", episodes=1))
    assert sorted(a.episode_id for a in preempted) == sorted(a.episode_id for a in bg)
    for a in preempted:
        s.episode_finished(a, "preempted")
    got = s.next_assignments()
    assert [a.goal_id for a in got].count("g") == 1  # the goal first, background after


def test_cancel_and_bad_goals():
    s = FleetScheduler(["r0"])
    with pytest.raises(ValueError):
        s.add_goal(GoalSpec("g", "a", episodes=0))
    with pytest.raises(ValueError):
        s.add_goal(GoalSpec("g", "a", episodes=1, robots=frozenset({"r9"})))
    with pytest.raises(ValueError):
        FleetScheduler([])
    s.add_goal(GoalSpec("g", "a", episodes=5))
    (a,) = s.next_assignments()
    assert s.cancel_goal("g") == [a]
    s.episode_finished(a, "canceled")
    assert s.next_assignments() == [] and s.goal_status("g")["finished"]


def test_robot_set_restricts_assignment():
    s = FleetScheduler(["r0", "r1", "r2"])
    s.add_goal(GoalSpec("g", "a", episodes=5, robots=frozenset({"r2"})))
    (a,) = s.next_assignments()
    assert a.robot_id == "r2"
