import numpy as np
import pytest

from adept.base.errors import AdeptError
from adept.data.transitions import Stats, Transitions
from tests.helpers import d4rl_arrays


def make(**overrides) -> Transitions:
    arrays = d4rl_arrays()
    arrays["action_log_probs"] = arrays.pop("infos/action_log_probs")
    arrays.update(overrides)
    return Transitions(**arrays)


def test_episode_boundaries_and_returns():
    data = make()
    assert data.episode_ends.tolist() == [3, 6]
    assert data.episode_starts.tolist() == [0, 4]
    assert [(s.start, s.stop) for s in data.episodes()] == [(0, 4), (4, 7)]
    np.testing.assert_allclose(data.episode_returns(), [0 + 1 + 2 + 3, 4 + 5 + 6])
    assert data.episode_lengths().tolist() == [4, 3]


def test_data_ending_mid_episode_closes_the_last_episode():
    timeouts = np.zeros(7, dtype=bool)
    data = make(timeouts=timeouts)
    assert data.episode_ends.tolist() == [3, 6]
    assert not data.timeouts[-1], "episode_ends must not modify the stored flags"


def test_statistics_match_numpy():
    data = make()
    stats = data.stats()
    states = np.concatenate([data.observations, data.next_observations])
    np.testing.assert_allclose(stats.states.mean, states.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.states.std, states.std(0), rtol=1e-5)
    np.testing.assert_array_equal(stats.states.min, states.min(0))
    np.testing.assert_array_equal(stats.states.max, states.max(0))
    assert stats.states.max.max() == 99.0, "terminal next states are inside the clipping range"
    assert stats.rewards.mean == pytest.approx(3.0)
    assert stats.rewards.min == 0.0 and stats.rewards.max == 6.0
    assert stats.rewards.mean.shape == ()


def test_stats_of_constant_column_has_zero_std():
    s = Stats.of(np.ones((5, 2), dtype=np.float32))
    np.testing.assert_array_equal(s.std, [0.0, 0.0])


def test_dtypes_are_normalized():
    arrays = d4rl_arrays()
    arrays["terminals"] = arrays["terminals"].astype(np.float64)
    arrays["rewards"] = arrays["rewards"].reshape(-1, 1).astype(np.float64)
    arrays.pop("infos/action_log_probs")
    data = Transitions(**arrays)
    assert data.terminals.dtype == np.bool_
    assert data.rewards.dtype == np.float32 and data.rewards.shape == (7,)


def test_mismatched_lengths_name_the_field():
    with pytest.raises(AdeptError, match="'rewards' has 6 rows but 'observations' has 7"):
        make(rewards=np.zeros(6, dtype=np.float32))


@pytest.mark.parametrize("field", ["observations", "rewards", "next_observations", "actions"])
def test_nan_and_inf_name_the_field_and_count(field):
    value = make().arrays()[field].copy()
    value.reshape(-1)[:2] = [np.nan, np.inf]
    with pytest.raises(AdeptError, match=rf"field '{field}' holds 2 NaN/inf"):
        make(**{field: value})


def test_wrong_rank_and_dims_are_refused():
    with pytest.raises(AdeptError, match="must be 2-D"):
        make(observations=np.zeros(7, dtype=np.float32))
    with pytest.raises(AdeptError, match="'next_observations' has dim 5"):
        make(next_observations=np.zeros((7, 5), dtype=np.float32))


def test_concatenate_keeps_log_probs_only_when_all_parts_have_them():
    a, b = make(), make()
    both = Transitions.concatenate([a, b])
    assert len(both) == 14 and both.action_log_probs is not None
    assert both.episode_ends.tolist() == [3, 6, 10, 13]
    assert Transitions.concatenate([a, b.replace(action_log_probs=None)]).action_log_probs is None
