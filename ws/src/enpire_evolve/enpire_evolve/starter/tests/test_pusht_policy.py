"""The policy's own checks, run before every experiment: it builds, and it answers a few
observations with well-formed actions."""

import math

from policy import pusht_policy

from enpire_policy.interface import Action

OBS = {
    "tip": [256.0, 100.0],
    "tip_height": 0.0,
    "joints": [0.0] * 6,
    "step": 0,
    "dt": 0.1,
    "goal_pose": [256.0, 256.0, math.pi / 4],
}


def test_strategy_and_params_are_known():
    assert pusht_policy.STRATEGY in pusht_policy.STRATEGIES
    assert isinstance(pusht_policy.PARAMS, dict)


def test_acts_with_valid_actions():
    policy = pusht_policy.make_policy()
    policy.reset(0)
    for pose in ([300.0, 300.0, 0.3], [120.0, 400.0, -2.0], None):
        for step in range(5):
            action = Action.parse(policy.act(dict(OBS, block_pose=pose, step=step)))
            if action.tip is not None:
                assert all(math.isfinite(v) for v in action.tip)


def test_metadata_names_the_strategy():
    assert pusht_policy.make_policy().metadata()["strategy"] == pusht_policy.STRATEGY
