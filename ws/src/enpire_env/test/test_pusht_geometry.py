import math

import gym_pusht  # noqa: F401
import gymnasium as gym
import numpy as np
import pytest

from enpire_env import pusht_geometry as geo


@pytest.fixture(scope="module")
def env():
    e = gym.make("gym_pusht/PushT-v0", obs_type="state").unwrapped
    e.reset(seed=0)
    return e


def test_constants_match_gym_pusht(env):
    assert geo.SUCCESS_THRESHOLD == env.success_threshold
    assert tuple(env.goal_pose) == pytest.approx(geo.GOAL_POSE)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("spread", [(10, 10, 0.2), (60, 60, 3.0)])
def test_coverage_matches_gym_pusht(env, seed, spread):
    rng = np.random.default_rng(seed)
    for _ in range(20):  # near the goal, and from no overlap to much
        pose = np.array(geo.GOAL_POSE) + rng.normal(0, spread)
        env.block.angle = pose[2]
        env.block.position = tuple(pose[:2])
        assert geo.coverage(pose) == pytest.approx(env._get_coverage(), abs=1e-12)


def test_goal_pose_is_full_coverage_and_a_shift_is_not():
    assert geo.coverage(geo.GOAL_POSE) == pytest.approx(1.0)
    assert geo.is_success(geo.coverage(geo.GOAL_POSE))
    shifted = (geo.GOAL_POSE[0] + 8, geo.GOAL_POSE[1], geo.GOAL_POSE[2])
    assert not geo.is_success(geo.coverage(shifted))
    assert geo.reward_from_coverage(0.475) == pytest.approx(0.5)


def test_point_in_tee():
    pose = (200.0, 200.0, 0.0)
    assert geo.point_in_tee(pose, (200, 260))  # stem
    assert geo.point_in_tee(pose, (150, 215))  # bar
    assert not geo.point_in_tee(pose, (150, 260))
    turned = (200.0, 200.0, math.pi / 2)
    assert geo.point_in_tee(turned, tuple(geo.tee_world_point(turned, (0, 75))))


def test_inside_walls_moves_only_near_misses():
    from enpire_env.pusht_geometry import inside_walls, tee_polygons

    near = (303.6, 393.0, 0.0)  # the stem overlaps the bottom wall by ~9 px
    fixed = inside_walls(near)
    assert fixed[0] == near[0] and fixed[2] == near[2] and 380 < fixed[1] < 393
    pts = np.concatenate(tee_polygons(fixed))
    assert pts[:, 1].max() <= 504.0
    assert np.allclose(inside_walls((256, 256, 0.7)), (256, 256, 0.7))
    assert np.allclose(inside_walls((256, 600, 0.0)), (256, 600, 0.0))  # far out: unchanged
