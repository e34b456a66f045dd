import math

import numpy as np
import pytest

from enpire_env.kinematics import So101Kinematics
from enpire_env.reset_core import ResetErrorCode, ResetPlan
from enpire_env.reset_routine import DirectCellPort, PickPlaceReset
from enpire_env.sim_cell import PushTCell
from enpire_env.tasks import PUSHT


@pytest.fixture(scope="module")
def setup():
    kin = So101Kinematics()
    cell = PushTCell(kin)
    return cell, DirectCellPort(cell), PickPlaceReset(kin)


def _plan(seed, mode="pick_place", attempts=3, state=None):
    s = PUSHT.sample_start_state(seed) if state is None else np.asarray(state, float)
    return ResetPlan("robot_0", "pusht", seed, mode, s, attempts)


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_pick_and_place_reaches_the_requested_pose(setup, seed):
    cell, port, routine = setup
    phases = []
    out = routine.run(_plan(seed), port, lambda p, f, a: phases.append(p), lambda: False)
    assert out.success, out.error_msg
    gt = cell.block_pose()
    target = PUSHT.sample_start_state(seed)
    assert np.hypot(*(gt[:2] - target[:2])) < routine.cfg.tolerance_px + 2
    assert abs(math.remainder(gt[2] - target[2], 2 * math.pi)) < routine.cfg.tolerance_rad + 0.03
    assert np.hypot(*(np.array(out.verified_state[:2]) - gt[:2])) < 4
    for phase in ("approach", "grasp", "lift", "place", "release", "verify"):
        assert phase in phases
    assert 1.0 < out.robot_seconds < 20.0
    assert not cell.attached


def test_teleport_mode(setup):
    cell, port, routine = setup
    out = routine.run(_plan(9, mode="teleport"), port, lambda *a: None, lambda: False)
    assert out.success and out.robot_seconds == 0.0
    assert cell.block_pose()[:2] == pytest.approx(PUSHT.sample_start_state(9)[:2])


def test_start_pose_that_solves_the_task_fails_verification(setup):
    _, port, routine = setup
    out = routine.run(
        _plan(0, mode="teleport", attempts=1, state=(256, 256, math.pi / 4)),
        port,
        lambda *a: None,
        lambda: False,
    )
    assert not out.success and out.error_code == ResetErrorCode.VERIFICATION_FAILED
    assert "already solves" in out.error_msg


def test_cancel_stops_the_arm(setup):
    cell, port, routine = setup
    started = {}

    def feedback(phase, _f, _a):
        started.setdefault(phase, cell.t)

    def canceled():  # half a second into the approach: the arm is moving
        return "approach" in started and cell.t > started["approach"] + 0.5

    out = routine.run(_plan(11), port, feedback, canceled)
    assert out.error_code == ResetErrorCode.CANCELED
    assert "grasp" not in started
    q = cell.q.copy()
    for _ in range(10):
        cell.step()
    assert cell.q == pytest.approx(q)


def test_missed_grasp_is_reported_and_retried(setup, monkeypatch):
    cell, port, routine = setup
    import enpire_env.reset_routine as rr

    real = rr.tee_world_point
    # aim 40 px beside the block on the first attempt only
    shots = {"n": 0}

    def aim(pose, local):
        shots["n"] += 1
        p = real(pose, local)
        return p + (40.0, 0.0) if shots["n"] <= 2 else p

    monkeypatch.setattr(rr, "tee_world_point", aim)
    out = routine.run(_plan(12), port, lambda *a: None, lambda: False)
    assert out.success and out.attempts == 2
    out = routine.run(_plan(13, attempts=1), port, lambda *a: None, lambda: False)
    assert out.success


def test_out_of_reach_is_a_grasp_failure(setup):
    cell, port, routine = setup
    cell.teleport((256, 256, 0.0))
    far = routine.cell_cfg.table_to_px(0.5, 0.0)
    import dataclasses

    r = PickPlaceReset(routine.kin, routine.cell_cfg,
                       dataclasses.replace(routine.cfg, grasp_points=((0.0, 75.0),)))  # fmt: skip
    out = r.run(_plan(1, attempts=1, state=(far[0], far[1], 0.0)), port, lambda *a: None,
                lambda: False)  # fmt: skip
    assert out.error_code == ResetErrorCode.GRASP_FAILED and "out of reach" in out.error_msg
