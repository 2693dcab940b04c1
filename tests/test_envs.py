import numpy as np
import pytest

from adept.base.errors import AdeptError
from adept.envs import REFERENCE_RETURNS, env_dims, evaluate, normalized_score, reference_returns


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"])
def test_reference_returns_map_to_0_and_100(env_id):
    low, high = REFERENCE_RETURNS[env_id.split("-")[0]]
    np.testing.assert_allclose(normalized_score([low, high], env_id), [0.0, 100.0])


def test_published_reference_values():
    assert reference_returns("Hopper-v5") == (-20.272305, 3234.3)
    assert normalized_score(3234.3 / 2, "HalfCheetah-v5") == pytest.approx(
        100 * (1617.15 + 280.178953) / (12135.0 + 280.178953)
    )


def test_metadata_overrides_reference_returns():
    meta = {"ref_min_score": 0.0, "ref_max_score": 50.0}
    assert normalized_score(25.0, "Hopper-v5", meta) == pytest.approx(50.0)


def test_unknown_env():
    with pytest.raises(AdeptError, match="no reference returns for env Ant-v5"):
        reference_returns("Ant-v5")


def test_env_dims():
    assert env_dims("Hopper-v5") == (11, 3)
    assert env_dims("HalfCheetah-v5") == (17, 6)
    assert env_dims("Walker2d-v5") == (17, 6)


def zero_policy(obs: np.ndarray) -> np.ndarray:
    return np.zeros((len(obs), 3), dtype=np.float32)


def test_evaluate_scores_episodes_with_fresh_seeds():
    a = evaluate(zero_policy, "Hopper-v5", episodes=3, seed=0, max_episode_steps=50)
    b = evaluate(zero_policy, "Hopper-v5", episodes=3, seed=0, max_episode_steps=50)
    c = evaluate(zero_policy, "Hopper-v5", episodes=3, seed=1, max_episode_steps=50)
    assert a.returns.shape == (3,) and a.lengths.tolist() == [50, 50, 50]
    np.testing.assert_array_equal(a.returns, b.returns)
    assert len(set(a.returns.tolist())) == 3, "each episode has its own start state"
    assert not np.array_equal(a.returns, c.returns)
    np.testing.assert_allclose(a.normalized_scores, normalized_score(a.returns, "Hopper-v5"))
    assert a.mean_normalized_score == pytest.approx(a.normalized_scores.mean())


def test_evaluate_stops_terminated_episodes():
    def fall(obs: np.ndarray) -> np.ndarray:
        return np.ones((len(obs), 3), dtype=np.float32)

    result = evaluate(fall, "Hopper-v5", episodes=2, seed=0)
    assert (result.lengths < 1000).all()


def test_gymnasiums_own_mujoco_deprecation_shows_once_and_others_pass(capfd):
    import adept.envs as envs

    for _ in range(2):
        envs.make_env("HalfCheetah-v5").close()
    assert capfd.readouterr().err.count("settotalmass") <= 1
    envs._mujoco_warning("Nan, Inf or huge value in QACC at DOF 0")
    assert capfd.readouterr().err == "WARNING: Nan, Inf or huge value in QACC at DOF 0\n"
