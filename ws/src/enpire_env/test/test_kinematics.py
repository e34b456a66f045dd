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
    pose = kin.reference_fk(q)
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


def test_closed_form_fk_is_ikpys_on_the_urdf(kin):
    """fk (closed-form, what every control step uses) against ikpy's FK of the URDF chain,
    over the joints' whole ranges and beyond, pose and orientation alike."""
    rng = np.random.default_rng(7)
    for q in rng.uniform(-3.0, 3.0, (300, 6)):
        assert kin.fk(q) == pytest.approx(kin.reference_fk(q), abs=1e-12)
        assert kin.tip_position(q) == pytest.approx(kin.reference_fk(q)[:3, 3], abs=1e-12)


@pytest.mark.parametrize(
    ("joint", "attr", "value"),
    [
        ("wrist_flex", "rpy", "0 0.1 0"),  # a turned joint frame
        ("elbow_flex", "xyz", "0.028 0.01 0.1126"),  # an offset out of the arm's plane
        ("wrist_roll", "axis", "0 1 0"),  # another axis
        ("tool_tip_joint", "xyz", "0.039 0 0.01"),  # a tip off the roll axis
        ("wrist_roll", "xyz", "0.0611 0 0.01"),  # a roll axis off the wrist's
    ],
)
def test_a_urdf_outside_the_closed_forms_is_refused(kin, joint, attr, value):
    import xml.etree.ElementTree as ET

    root = ET.fromstring(kin.urdf)
    j = next(e for e in root.findall("joint") if e.get("name") == joint)
    (j.find("axis") if attr == "axis" else j.find("origin")).set(
        "xyz" if attr == "axis" else attr, value
    )
    with pytest.raises(ValueError, match=joint):
        So101Kinematics(ET.tostring(root, encoding="unicode"))


def test_out_of_reach_is_explained(kin):
    with pytest.raises(UnreachableError, match="unreachable"):
        kin.ik((0.6, 0.0, 0.0), max_tilt=1.0)
