import math

import numpy as np
import pytest

from enpire_env.kinematics import JOINT_NAMES, So101Kinematics, UnreachableError


@pytest.fixture(scope="module")
def kin():
    return So101Kinematics()


def test_limits_come_from_the_urdf(kin):
    assert set(kin.limits) == set(JOINT_NAMES)
    assert kin.limits["shoulder_pan"].lower == pytest.approx(-1.92)
    assert kin.limits["wrist_roll"].upper == pytest.approx(2.841)
    assert np.all(kin.max_velocity() > 0)


def test_zero_pose_points_forward(kin):
    tip = kin.tip_position(np.zeros(6))
    assert tip[0] > 0.25 and abs(tip[1]) < 1e-9 and tip[2] > 0.2


@pytest.mark.parametrize(
    "target", [(0.22, 0.05, 0.01), (0.12, 0.0, 0.004), (0.15, -0.08, 0.05), (0.26, 0.08, 0.01)]
)
@pytest.mark.parametrize("yaw", [0.3, -1.0, 2.0])
def test_ik_agrees_with_ikpy_forward_kinematics(kin, target, yaw):
    q = kin.ik(target, yaw=yaw, max_tilt=0.7)
    pose = kin.fk(q)
    assert pose[:3, 3] == pytest.approx(target, abs=1e-6)
    assert kin.within_limits(q)
    if pose[2, 0] < -0.999:  # tool straight down: the yaw is exact (mod pi, symmetric jaws)
        assert math.remainder(kin.yaw_of(pose) - yaw, math.pi) == pytest.approx(0, abs=1e-6)


def test_far_points_need_tilt(kin):
    far = (0.30, 0.09, 0.01)
    with pytest.raises(UnreachableError):
        kin.ik(far)
    q = kin.ik(far, max_tilt=0.8)
    assert kin.tip_position(q) == pytest.approx(far, abs=1e-6)


def test_out_of_reach_is_explained(kin):
    with pytest.raises(UnreachableError, match="unreachable"):
        kin.ik((0.6, 0.0, 0.0), max_tilt=1.0)
