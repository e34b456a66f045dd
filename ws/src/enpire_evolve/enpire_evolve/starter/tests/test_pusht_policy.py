"""The policy's own checks, run before every experiment: it builds, and it answers a few
observations with well-formed actions ({"tip": [u, v], "lift": bool} inside the workspace)."""

import math

from policy import pusht_policy

OBS = {
    "tip": [256.0, 100.0],
    "tip_height": 0.0,
    "joints": [0.0] * 6,
    "step": 0,
    "dt": 0.1,
    "goal_pose": [256.0, 256.0, math.pi / 4],
}


def check_action(action) -> None:
    assert isinstance(action, dict) and set(action) <= {"tip", "lift"}, action
    u, v = action["tip"]
    assert math.isfinite(u) and math.isfinite(v) and 0 <= u <= 512 and 0 <= v <= 512, action
    assert isinstance(action.get("lift", False), bool), action


def test_params_are_a_dict_of_numbers():
    assert isinstance(pusht_policy.PARAMS, dict)
    assert all(isinstance(v, (int, float)) for v in pusht_policy.PARAMS.values())


def test_acts_with_valid_actions():
    policy = pusht_policy.make_policy()
    policy.reset(0)
    for pose in ([300.0, 300.0, 0.3], [120.0, 400.0, -2.0], [256.0, 256.0, math.pi / 4], None):
        for step in range(5):
            check_action(policy.act(dict(OBS, block_pose=pose, step=step)))


def test_params_can_be_overridden():
    key = next(iter(pusht_policy.PARAMS))
    policy = pusht_policy.make_policy(params={key: pusht_policy.PARAMS[key]})
    assert policy.metadata()["params"][key] == pusht_policy.PARAMS[key]
