"""The policy interface, the shipped heuristic and the naive baseline (no ROS graph)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from enpire_env.sim_cell import PushTCell
from enpire_policy.episode import run_episode, wilson_interval
from enpire_policy.heuristic import HeuristicParams, HeuristicPushT
from enpire_policy.interface import Action, ActionError
from enpire_policy.naive import NaivePolicy


def test_action_parse():
    assert Action.parse({"tip": [1, 2]}) == Action(tip=(1.0, 2.0), lift=False)
    assert Action.parse({"joints": np.zeros(6)}).joints == (0.0,) * 6
    for bad in (
        [1, 2],
        {"tip": [1, 2], "joints": [0] * 6},
        {"tip": [1]},
        {"tip": [1, float("nan")]},
        {"tip": ["a", 2]},
        {"joints": [0] * 5},
        {"tip": [1, 2], "speed": 3},
    ):
        with pytest.raises(ActionError):
            Action.parse(bad)


def test_params_validate():
    HeuristicParams.from_dict({"push_gain": 0.7, "n_push_angles": 3})
    for bad in ({"push_gain": -1}, {"no_such": 1}, {"min_push": 50.0}, {"switch_ratio": 0.5}):
        with pytest.raises(ValueError):
            HeuristicParams.from_dict(bad)


def test_contact_model_turns_the_right_way():
    c = HeuristicPushT().contacts
    straight = np.isclose(c.push_dirs @ [0, 1], 1)  # pushing along +y on the bar's bottom
    bottom = straight & np.isclose(c.points[:, 1], 0)
    x = c.points[bottom, 0]
    w = c.twists[bottom, 2]
    near_axis = np.abs(x) < 1
    assert np.all(np.abs(w[near_axis]) < 1e-9)  # through the centre of mass: no turn
    # right of the axis turns counter-clockwise (+) in gym-pusht's frame, left clockwise
    assert np.all(w[x > 10] > 0) and np.all(w[x < -10] < 0)
    # the push moves the block forward, never backward
    assert np.all((c.twists[:, :2] * c.push_dirs).sum(axis=1) > 0)


@pytest.fixture(scope="module")
def cell():
    return PushTCell()


def test_heuristic_solves_seeded_episodes(cell):
    results = [run_episode(HeuristicPushT(), s, cell) for s in range(6)]
    assert sum(r.success for r in results) >= 5, [(r.seed, r.coverage) for r in results]
    for r in results:
        assert r.error == "" and r.unreachable == 0
        if r.success:
            assert r.coverage > 0.95 and r.steps < 300
            assert math.isclose(r.robot_seconds, r.steps * 0.1, rel_tol=1e-6)


def test_naive_baseline_pushes_but_rarely_solves(cell):
    r = run_episode(NaivePolicy(), 0, cell, max_steps=80)
    assert r.error == ""
    from enpire_env.tasks import PUSHT

    moved = np.hypot(*(np.array(r.final_pose[:2]) - PUSHT.sample_start_state(0)[:2]))
    assert moved > 20  # it does push the block


def test_policy_bug_ends_only_its_episode(cell):
    class Broken:
        def reset(self, seed):
            pass

        def act(self, obs):
            return {"tip": [float("inf"), 0]}

    r = run_episode(Broken(), 0, cell)
    assert not r.success and "non-finite" in r.error and r.steps == 0


def test_wilson_interval():
    lo, hi = wilson_interval(500, 500)
    assert 0.99 < lo < 1 and math.isclose(hi, 1)
    lo, hi = wilson_interval(50, 100)
    assert lo < 0.5 < hi and math.isclose(0.5 - lo, hi - 0.5, rel_tol=1e-9)
