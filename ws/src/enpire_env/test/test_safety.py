import math

import numpy as np
import pytest

from enpire_env.kinematics import So101Kinematics
from enpire_env.safety import SafetyConfig, SafetyFilter


@pytest.fixture(scope="module")
def kin():
    return So101Kinematics()


@pytest.fixture
def f(kin):
    return SafetyFilter(kin)


def _q(kin, xyz):
    q = kin.ik(xyz, max_tilt=0.7)
    q[5] = 1.0
    return q


def test_safe_command_passes_unchanged(kin, f):
    q0, q1 = _q(kin, (0.2, 0.0, 0.05)), _q(kin, (0.21, 0.0, 0.05))
    v = f.filter([(0.5, q1)], q0, now=0.0)
    assert v.points is not None and v.points[0][0] == 0.5
    assert v.points[0][1] == pytest.approx(q1)
    assert f.counters.forwarded == 1 and f.counters.refused == 0


@pytest.mark.parametrize(
    "points, text",
    [
        ([], "no points"),
        ([(0.1, [math.nan] * 6)], "not finite"),
        ([(0.1, [0.0] * 5)], "malformed"),
    ],
)
def test_malformed_commands_are_refused(kin, f, points, text):
    v = f.filter(points, _q(kin, (0.2, 0, 0.05)), now=0.0)
    assert v.points is None and text in v.reason
    assert f.counters.refused == 1 and text in f.counters.last_violation


def test_tip_outside_the_box_is_refused(kin, f):
    q0 = _q(kin, (0.2, 0.0, 0.05))
    below = q0.copy()
    below[1] += 0.6  # shoulder forward: the tip goes into the table
    assert kin.tip_position(below)[2] < 0
    v = f.filter([(1.0, below)], q0, now=0.0)
    assert v.points is None and "outside the workspace box" in v.reason


def test_positions_are_clipped_to_joint_limits(kin, f):
    q0 = _q(kin, (0.2, 0.0, 0.05))
    q = q0.copy()
    q[4] = 9.0  # wrist roll far beyond its limit
    v = f.filter([(5.0, q)], q0, now=0.0)
    assert v.points[0][1][4] == pytest.approx(kin.limits["wrist_roll"].upper)
    assert f.counters.clipped_position == 1


def test_too_fast_motion_is_slowed_down(kin, f):
    q0 = _q(kin, (0.2, -0.05, 0.05))
    q1 = _q(kin, (0.2, 0.05, 0.05))
    v = f.filter([(0.01, q1)], q0, now=0.0)
    t = v.points[0][0]
    speed = np.abs(v.points[0][1] - q0)[:5] / t
    assert t > 0.01 and np.all(speed <= kin.max_velocity()[:5] + 1e-6)
    assert f.counters.clipped_velocity == 1


def test_emergency_stop_refuses_until_released(kin, f):
    q0 = _q(kin, (0.2, 0.0, 0.05))
    assert f.set_estop(True) is True
    assert f.filter([(0.5, q0)], q0, now=0.0).points is None
    f.set_estop(False)
    assert f.filter([(0.5, q0)], q0, now=1.0).points is not None


def test_releasing_one_stop_does_not_lift_another(kin, f):
    """The fleet's stop holds a robot whose own stop is released (and the other way round)."""
    q0 = _q(kin, (0.2, 0.0, 0.05))
    assert f.set_estop(True, "/emergency_stop") is True
    assert f.set_estop(False, "emergency_stop") is False
    assert f.estop and f.filter([(0.5, q0)], q0, now=0.0).points is None
    f.set_estop(True, "emergency_stop")
    f.set_estop(False, "/emergency_stop")
    assert f.estop and f.filter([(0.5, q0)], q0, now=1.0).points is None
    f.set_estop(False, "emergency_stop")
    assert not f.estop and f.filter([(0.5, q0)], q0, now=2.0).points is not None


def test_watchdog_holds_when_commands_stop_mid_motion(kin, f):
    q0, q1 = _q(kin, (0.2, 0.0, 0.05)), _q(kin, (0.25, 0.0, 0.05))
    f.filter([(3.0, q1)], q0, now=10.0)  # a 3 s motion
    assert not f.tick(10.3)
    assert f.tick(10.6)  # silent for > 0.5 s, still moving
    assert f.watchdog_tripped and f.counters.watchdog_trips == 1
    assert not f.tick(10.7)  # once
    f.filter([(0.1, q1)], q0, now=20.0)
    assert not f.tick(20.7)  # the motion ended before the silence counted


def test_config_validates_itself():
    with pytest.raises(ValueError):
        SafetyConfig(workspace_min=(0, 0, 0), workspace_max=(1, -1, 1))
    with pytest.raises(ValueError):
        SafetyConfig(speed_scale=0)
