import sys

import numpy as np
import pytest

from adept.base.errors import AdeptError
from adept.datasets.registry import load_dataset

minari = pytest.importorskip("minari")
from minari.data_collector.episode_buffer import EpisodeBuffer  # noqa: E402


def episode(length: int, terminated: bool, seed: int, obs_dim: int = 11, act_dim: int = 3):
    rng = np.random.default_rng(seed)
    terminations = np.zeros(length, dtype=bool)
    truncations = np.zeros(length, dtype=bool)
    (terminations if terminated else truncations)[-1] = True
    return EpisodeBuffer(
        observations=rng.normal(size=(length + 1, obs_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(length, act_dim)).astype(np.float32),
        rewards=list(np.arange(length, dtype=np.float64)),
        terminations=list(terminations),
        truncations=list(truncations),
        infos={"action_log_probs": np.full(length + 1, -1.5, dtype=np.float32)},
    )


def write(dataset_id: str, buffers: list, description: str, **options) -> None:
    """Write ``buffers`` as Minari dataset ``dataset_id`` of Hopper-v5, with minari itself;
    ``options``: more of create_dataset_from_buffers's arguments (spaces, reference scores)."""
    minari.create_dataset_from_buffers(
        dataset_id,
        buffers,
        env="Hopper-v5",
        eval_env="Hopper-v5",
        algorithm_name="random",
        author="adept tests",
        author_email="tests@example.invalid",
        code_permalink="tests/test_minari.py",
        description=description,
        **options,
    )


@pytest.fixture
def minari_dataset():
    """A two-episode dataset written by minari itself, so the layout is exactly Minari's."""
    buffers = [episode(4, terminated=True, seed=0), episode(3, terminated=False, seed=1)]
    write(
        "test/hopper/tiny-v0",
        buffers,
        "two hand-made Hopper episodes",
        ref_min_score=-10.0,
        ref_max_score=90.0,
    )
    return buffers


def test_minari_episodes_map_to_transitions(minari_dataset):
    data = load_dataset("minari:test/hopper/tiny-v0")
    first, _ = minari_dataset
    assert len(data) == 7 and data.env_id == "Hopper-v5"
    np.testing.assert_allclose(data.observations[:4], first.observations[:-1])
    np.testing.assert_allclose(data.next_observations[:4], first.observations[1:])
    # the terminal step's next state is the episode's own last observation, not episode 2's first
    np.testing.assert_allclose(data.next_observations[3], first.observations[4])
    assert not np.allclose(data.next_observations[3], data.observations[4])
    assert data.terminals.tolist() == [False, False, False, True, False, False, False]
    assert data.timeouts.tolist() == [False] * 6 + [True]
    np.testing.assert_allclose(data.action_log_probs, -1.5)
    assert data.metadata["ref_min_score"] == -10.0 and data.metadata["ref_max_score"] == 90.0


def test_an_episode_ending_without_a_flag_still_ends():
    """An episode whose last step is neither terminated nor truncated (a collection stopped
    mid-episode) ends there as a timeout, not run on into the next episode."""
    cut = episode(3, terminated=False, seed=2)
    cut.truncations[-1] = False
    write("test/hopper/cut-v0", [cut, episode(2, terminated=True, seed=3)], "a cut episode")
    data = load_dataset("minari:test/hopper/cut-v0")
    assert data.timeouts.tolist() == [False, False, True, False, False]
    assert data.terminals.tolist() == [False, False, False, False, True]


def test_minari_dataset_absent_locally_says_how_to_get_it():
    with pytest.raises(
        AdeptError, match=r"not on local disk.*minari download mujoco/hopper/medium-v0"
    ):
        load_dataset("minari:mujoco/hopper/medium-v0")


def test_minari_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(
        AdeptError, match=r"needs the minari package.*pip install 'adept-rl\[minari\]'"
    ):
        load_dataset("minari:mujoco/hopper/medium-v0")


def test_minari_dataset_of_another_observation_space_is_a_one_line_error():
    """Recorded with Hopper's x position kept (12 values, the env gives 11): refused, naming
    both spaces, before any training."""
    import gymnasium as gym

    buffers = [episode(4, terminated=True, seed=0, obs_dim=12)]
    write(
        "test/hopper/positions-v0",
        buffers,
        "Hopper episodes with the x position in the observation",
        observation_space=gym.spaces.Box(-np.inf, np.inf, (12,), np.float32),
    )
    with pytest.raises(AdeptError) as exc:
        load_dataset("minari:test/hopper/positions-v0")
    message = str(exc.value)
    assert "\n" not in message
    assert "minari:test/hopper/positions-v0" in message and "Hopper-v5" in message
    assert "12" in message and "11" in message, message


def test_minari_dataset_of_dict_observations_is_a_one_line_error():
    import gymnasium as gym

    rng = np.random.default_rng(0)
    space = gym.spaces.Dict(
        {
            "position": gym.spaces.Box(-np.inf, np.inf, (5,), np.float32),
            "velocity": gym.spaces.Box(-np.inf, np.inf, (6,), np.float32),
        }
    )
    buffer = EpisodeBuffer(
        observations={
            "position": rng.normal(size=(4, 5)).astype(np.float32),
            "velocity": rng.normal(size=(4, 6)).astype(np.float32),
        },
        actions=rng.uniform(-1, 1, size=(3, 3)).astype(np.float32),
        rewards=[0.0, 1.0, 2.0],
        terminations=[False, False, True],
        truncations=[False, False, False],
    )
    write(
        "test/hopper/dict-v0",
        [buffer],
        "Hopper episodes with dict observations",
        observation_space=space,
    )
    with pytest.raises(AdeptError, match=r"dict observations \(position, velocity\)"):
        load_dataset("minari:test/hopper/dict-v0")
