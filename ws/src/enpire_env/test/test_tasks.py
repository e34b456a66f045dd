import math

import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
import gymnasium as gym
import numpy as np
import pytest

from enpire_env.tasks import PUSHT, UnknownTaskError, get_task


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_pusht_start_state_matches_gym_pusht_reset(seed):
    env = gym.make("gym_pusht/PushT-v0", obs_type="state")
    obs, _ = env.reset(seed=seed)
    env.close()
    ours = PUSHT.sample_start_state(seed)
    # obs = [agent_x, agent_y, block_x, block_y, block_angle]; angle comes back wrapped
    assert ours[:2] == pytest.approx(obs[2:4], abs=1e-6)
    diff = (ours[2] - obs[4] + math.pi) % (2 * math.pi) - math.pi
    assert abs(diff) < 1e-6
    assert -math.pi <= ours[2] < math.pi


def test_start_states_differ_between_seeds():
    states = np.array([PUSHT.sample_start_state(s) for s in range(20)])
    assert len({tuple(s) for s in states}) == 20
    assert states[:, 0].min() > 50 and states[:, 0].max() < 450


def test_unknown_task_names_the_known_ones():
    with pytest.raises(UnknownTaskError, match="pusht"):
        get_task("stack_cups")


@pytest.mark.parametrize(
    "state, message",
    [
        ([1.0, 2.0], "needs 3 values"),
        ([100.0, float("nan"), 0.0], "non-finite"),
        ([600.0, 100.0, 0.0], "block_x=600"),
        ([100.0, 100.0, 4.0], "block_theta=4"),
    ],
)
def test_bad_start_states_are_explained(state, message):
    with pytest.raises(ValueError, match=message):
        PUSHT.validate_start_state(state)


def test_good_start_state_passes():
    assert PUSHT.validate_start_state([100, 200, 0.5]).tolist() == [100.0, 200.0, 0.5]
