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


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_robot_whose_resets_keep_failing_cools_down_with_backoff():
    clock = _Clock()
    s = FleetScheduler(["r0", "r1"], max_reset_failures=2, cooldown=10, max_cooldown=15,
                       max_seed_retries=100, clock=clock)  # fmt: skip
    s.add_goal(GoalSpec("g", "a", episodes=50))

    def fail_on_r0(times, first=None):
        for _ in range(times):
            (a,) = [first] if first else s.next_assignments()
            first = None
            assert a.robot_id == "r0", s.robots()
            s.episode_finished(a, "retry")

    a0, keep_r1 = sorted(s.next_assignments(), key=lambda a: a.robot_id)  # r1 stays busy
    fail_on_r0(1, a0)
    assert s.robots()["r0"] == "free"
    fail_on_r0(1)
    assert s.robots()["r0"] == "cooldown" and s.cooldown_left("r0") == pytest.approx(10)
    assert s.next_assignments() == []  # nothing for a cooling robot
    clock.t = 10.0
    assert s.robots()["r0"] == "free"
    fail_on_r0(2)
    assert s.cooldown_left("r0") == pytest.approx(15)  # doubled, capped at max_cooldown
    clock.t = 25.0
    (a,) = s.next_assignments()
    s.episode_finished(a, "done")  # a good episode resets the streak and the backoff
    fail_on_r0(2)
    assert s.cooldown_left("r0") == pytest.approx(10)
    s.episode_finished(keep_r1, "done")


def test_a_seed_no_robot_can_reset_is_given_up():
    s = FleetScheduler(["r0", "r1"], max_reset_failures=100, max_seed_retries=2)
    s.add_goal(GoalSpec("g", "a", episodes=2, seed=40))
    tries = {40: 0, 41: 0}
    while not s.goal_status("g")["finished"]:
        for a in s.next_assignments():
            tries[a.seed] += 1
            s.episode_finished(a, "retry" if a.seed == 40 else "done")
    st = s.goal_status("g")
    assert tries == {40: 3, 41: 1}  # the first try and two retries
    assert st["done"] == 1 and st["skipped"] == [40]


def test_a_robot_that_failed_a_seed_leaves_it_to_the_others():
    s = FleetScheduler(["r0", "r1"], max_reset_failures=100, max_seed_retries=1)
    s.add_goal(GoalSpec("g", "a", episodes=3, seed=10))
    a0, a1 = sorted(s.next_assignments(), key=lambda a: a.robot_id)
    s.episode_finished(a1, "retry")  # r1 cannot reset seed 11
    (b,) = s.next_assignments()
    assert (b.robot_id, b.seed) == ("r1", 12)  # r1 takes a seed it has not failed
    s.episode_finished(a0, "done")
    (c,) = s.next_assignments()
    assert (c.robot_id, c.seed) == ("r0", 11)  # r0 runs the seed r1 failed
    for x in (b, c):
        s.episode_finished(x, "done")
    st = s.goal_status("g")
    assert st["finished"] and st["done"] == 3 and st["skipped"] == []
