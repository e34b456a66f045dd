"""Background work: an idle fleet records episodes of a background policy; a goal preempts it."""

from __future__ import annotations

import time

import pytest
from action_msgs.msg import GoalStatus

from enpire_env.testing import call_action, one_cell, rollout_node, running
from enpire_msgs.action import Rollout
from enpire_msgs.msg import PolicyRef
from enpire_rollout.ledger import Ledger

pytestmark = pytest.mark.xdist_group("rollout_background_graph")


@pytest.fixture(scope="module")
def fleet(ros_domain_module, ros_context_module, tmp_path_factory):
    data = tmp_path_factory.mktemp("bg-data")
    procs = {**one_cell(4.0), "rollout": rollout_node(data, 4.0, "background_policy:=naive")}
    with running(procs):
        yield procs, data


def test_background_fills_idle_time_and_goals_preempt_it(fleet, ros_context_module):
    _procs, data = fleet
    led = Ledger(data / "ledger.sqlite")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the idle robot starts background work by itself
        if led.query("SELECT 1 FROM robot_intervals WHERE state = 'episode'"):
            break
        time.sleep(0.2)
    else:
        pytest.fail("no background episode started")
    t_goal = time.time()
    (running_bg,) = led.query(
        "SELECT * FROM robot_intervals WHERE state = 'episode' AND t_end IS NULL"
    )
    g = Rollout.Goal(policy=PolicyRef(name="heuristic"), task="pusht", num_episodes=1, seed=3,
                     agent_id="a")  # fmt: skip
    (c,) = call_action(ros_context_module, Rollout, "/rollout", [g], timeout=200)
    assert c.status == GoalStatus.STATUS_SUCCEEDED, c.result.error_msg
    assert c.result.num_episodes == 1
    # the background episode running when the goal came was preempted, not finished
    mine = led.episodes(goal_id=None)
    goal_rows = [r for r in mine if r["id"] in set(c.result.episode_ids)]
    assert goal_rows and goal_rows[0]["background"] == 0
    assert goal_rows[0]["wall_end"] - t_goal < 120
    cut = led.query("SELECT * FROM robot_intervals WHERE id = ?", (running_bg["id"],))[0]
    assert cut["goal_id"] == "__background__" and cut["t_end"] is not None
    # preempted: it ended without a finished-episode row (a naive episode runs 300 steps)
    assert running_bg["episode_id"] not in {r["id"] for r in led.episodes()}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # background resumes and finishes episodes, recorded
        bg = [r for r in led.episodes() if r["background"] == 1]
        if bg:
            break
        time.sleep(0.5)
    assert bg and all(r["goal_id"] == "__background__" for r in bg)
    assert all(r["status"] in ("success", "failure") for r in bg)
