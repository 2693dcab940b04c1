import numpy as np
import pytest

from adept.base.errors import AdeptError
from adept.data.hdf5 import load_hdf5
from adept.datasets.generate import UniformPolicy, collect, dataset_names, make_dataset
from adept.envs import make_env


@pytest.fixture(scope="module")
def cheetah(tmp_path_factory):
    """HalfCheetah never terminates, so its random data shows the 1000-step timeouts."""
    path = tmp_path_factory.mktemp("gen") / "cheetah.hdf5"
    return load_hdf5(
        make_dataset("halfcheetah-random", path, num_steps=2500, seed=3, progress=False)
    )


def test_timeouts_every_1000_steps_and_at_the_end(cheetah):
    assert np.flatnonzero(cheetah.timeouts).tolist() == [999, 1999, 2499]
    assert not cheetah.terminals.any()
    assert cheetah.episode_lengths().tolist() == [1000, 1000, 500]


def test_next_observations_chain_within_episodes_and_reset_after(cheetah):
    inner = np.setdiff1d(np.arange(len(cheetah) - 1), cheetah.episode_ends)
    np.testing.assert_array_equal(cheetah.next_observations[inner], cheetah.observations[inner + 1])
    # a reset follows the timeout: the next row is not the timed-out step's next state
    assert not np.allclose(cheetah.next_observations[999], cheetah.observations[1000])


def test_uniform_actions_and_exact_log_probs(cheetah):
    assert cheetah.actions.min() >= -1 and cheetah.actions.max() <= 1
    assert abs(cheetah.actions.mean()) < 0.05 and cheetah.actions.std() == pytest.approx(
        1 / np.sqrt(3), rel=0.03
    )
    np.testing.assert_allclose(cheetah.action_log_probs, -6 * np.log(2), rtol=1e-6)


def test_metadata(cheetah):
    meta = cheetah.metadata
    assert meta["env_id"] == "HalfCheetah-v5" and meta["kind"] == "random"
    assert meta["seed"] == 3 and meta["num_steps"] == 2500 and meta["protocol"] == "d4rl"
    assert {"adept_version", "mujoco_version", "gymnasium_version", "created"} <= set(meta)


def test_rewards_come_from_the_env(cheetah):
    """Replay the recorded actions from the same reset state: identical rewards and states."""
    env = make_env("HalfCheetah-v5").unwrapped
    env.reset(seed=0)
    qpos = np.concatenate([[0.0], cheetah.observations[0, :8]])
    env.set_state(qpos, cheetah.observations[0, 8:].astype(np.float64))
    for t in range(20):
        obs, reward, *_ = env.step(cheetah.actions[t])
        assert reward == pytest.approx(cheetah.rewards[t], rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(obs, cheetah.next_observations[t], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_deterministic_for_a_seed(tmp_path):
    a = load_hdf5(make_dataset("hopper-random", tmp_path / "a.hdf5", 1500, seed=1, progress=False))
    b = load_hdf5(make_dataset("hopper-random", tmp_path / "b.hdf5", 1500, seed=1, progress=False))
    c = load_hdf5(make_dataset("hopper-random", tmp_path / "c.hdf5", 1500, seed=2, progress=False))
    for name, value in a.arrays().items():
        np.testing.assert_array_equal(getattr(b, name), value)
    assert not np.array_equal(a.actions, c.actions)
    assert a.terminals.sum() > 10, "random hopper falls within tens of steps"
    np.testing.assert_allclose(a.action_log_probs, -3 * np.log(2), rtol=1e-6)


def test_collect_honours_the_episode_cap():
    env = make_env("Hopper-v5").unwrapped
    policy = UniformPolicy(env.action_space, np.random.default_rng(0))
    zero = lambda obs: (np.zeros(3, dtype=np.float32), 0.0)  # noqa: E731 standing still never falls
    data = collect(env, zero, 25, seed=0, max_episode_steps=10, progress=False)
    assert np.flatnonzero(data.timeouts).tolist() == [9, 19, 24]
    assert policy.log_prob == pytest.approx(-3 * np.log(2))


def test_unknown_name_lists_valid_ones(tmp_path):
    with pytest.raises(AdeptError, match=r"valid names: .*hopper-random"):
        make_dataset("ant-random", tmp_path / "x.hdf5")
    assert "walker2d-random" in dataset_names()
    assert not list(tmp_path.iterdir())


def test_unwritable_output_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AdeptError, match="cannot create directory"):
        make_dataset("hopper-random", blocker / "x.hdf5", 100)
    with pytest.raises(AdeptError, match=r"must end in \.hdf5"):
        make_dataset("hopper-random", tmp_path / "x.csv", 100)
    with pytest.raises(AdeptError, match="is a directory"):
        make_dataset("hopper-random", tmp_path, 100)
