import threading

import pytest

from enpire_env.reset_core import (
    ResetError,
    ResetErrorCode,
    ResetRequest,
    RobotLocks,
    validate,
)

ROBOTS = ["robot_0", "robot_1"]


def _validate(**kw):
    req = ResetRequest(**{"robot_id": "robot_0", "task": "pusht", **kw})
    return validate(req, ROBOTS, "pick_place", 3)


def test_valid_goal_gets_defaults_filled_in():
    plan = _validate(seed=5)
    assert plan.mode == "pick_place"
    assert plan.max_attempts == 3
    assert plan.seed == 5
    assert plan.start_state.shape == (3,)


def test_negative_seed_draws_one():
    assert _validate(seed=-1).seed >= 0


def test_explicit_start_state_is_used():
    plan = _validate(start_state=[150.0, 250.0, 0.25], mode="teleport", max_attempts=1)
    assert plan.start_state.tolist() == [150.0, 250.0, 0.25]
    assert (plan.mode, plan.max_attempts) == ("teleport", 1)


@pytest.mark.parametrize(
    "kw, code, text",
    [
        ({"robot_id": "robot_9"}, ResetErrorCode.UNKNOWN_ROBOT, "robot_0, robot_1"),
        ({"task": "stack_cups"}, ResetErrorCode.UNKNOWN_TASK, "pusht"),
        ({"mode": "magic"}, ResetErrorCode.INVALID_GOAL, "pick_place"),
        ({"start_state": [1.0]}, ResetErrorCode.INVALID_GOAL, "needs 3 values"),
        ({"start_state": [1e9, 1.0, 0.0]}, ResetErrorCode.INVALID_GOAL, "outside"),
        ({"max_attempts": -2}, ResetErrorCode.INVALID_GOAL, "max_attempts"),
    ],
)
def test_bad_goals_raise_code_and_message(kw, code, text):
    with pytest.raises(ResetError) as exc:
        _validate(**kw)
    assert exc.value.code == code
    assert text in exc.value.msg


def _req(robot="a", seed=1):
    return ResetRequest(robot_id=robot, task="pusht", seed=seed)


def test_robot_locks_allow_one_reset_per_robot():
    locks = RobotLocks()
    run, owner = locks.claim(_req("a"))
    assert owner
    assert locks.claim(_req("a", seed=2)) == (None, False)  # another request: busy
    assert locks.claim(_req("b"))[1]
    locks.release("a", "done")
    assert run.wait(0) and run.outcome == "done"
    assert locks.claim(_req("a", seed=2))[1]
    assert locks.busy() == {"a", "b"}


def test_the_same_request_joins_the_running_reset():
    locks = RobotLocks()
    run, _ = locks.claim(_req("a", seed=3))
    joined, owner = locks.claim(_req("a", seed=3))
    assert joined is run and not owner
    assert not joined.wait(0)
    threading.Timer(0.05, locks.release, ("a", "result")).start()
    assert joined.wait(2) and joined.outcome == "result"


def test_robot_locks_under_contention():
    locks, wins = RobotLocks(), []
    barrier = threading.Barrier(8)

    def grab():
        barrier.wait()
        if locks.claim(_req("r", seed=len(wins)))[1]:
            wins.append(1)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
