"""Trajectory segments: windows inside episodes, terminal windows, short episodes, padding."""

import numpy as np
import pytest

from adept.data.segments import gather_segments, segment_starts
from adept.data.transitions import Transitions


def three_episodes() -> Transitions:
    """A: rows 0–9 ending in a terminal; B: rows 10–14 cut by a timeout; C: rows 15–21 ending in
    a terminal. Observations count the rows (row i observes [i, −i]) so windows can be read."""
    n = 22
    obs = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)
    nxt = obs + 1
    nxt[[9, 14, 21]] = 100 + np.array([[9, 9], [14, 14], [21, 21]])  # the states after each end
    terminals = np.zeros(n, dtype=bool)
    terminals[[9, 21]] = True
    timeouts = np.zeros(n, dtype=bool)
    timeouts[14] = True
    return Transitions(
        observations=obs,
        actions=np.ones((n, 1), dtype=np.float32),
        rewards=np.arange(n, dtype=np.float32) + 1,
        next_observations=nxt,
        terminals=terminals,
        timeouts=timeouts,
    )


def test_windows_follow_the_stride_inside_episodes_and_end_on_every_terminal():
    data = three_episodes()
    # A: 0, 4 on the stride, 6 ends on its terminal; B: 10; C: 15, and 18 ends on its terminal
    drop = segment_starts(data, length=4, stride=4, short="drop")
    assert drop.tolist() == [0, 4, 6, 10, 15, 18]
    # padded: the terminal windows end one row later, on the absorbing state after the terminal
    assert segment_starts(data, length=4, stride=4).tolist() == [0, 4, 7, 10, 15, 19]
    every = [*range(0, 8), *range(10, 12), *range(15, 20)]
    assert segment_starts(data, length=4, stride=1).tolist() == every


def test_short_episodes_are_dropped_or_padded():
    data = three_episodes()
    assert segment_starts(data, length=8, stride=4, short="drop").tolist() == [0, 2]
    # C is padded after its terminal; B, cut short by a timeout, is dropped: nothing follows it
    assert segment_starts(data, length=8, stride=4, short="pad").tolist() == [0, 3, 15]
    assert segment_starts(data, length=30, short="drop").size == 0
    with pytest.raises(ValueError, match="stride ≥ 1"):
        segment_starts(data, length=4, stride=0)


def test_padding_continues_the_end_as_an_absorbing_state():
    data = three_episodes()
    seg = gather_segments(data, np.array([0, 10, 15]), length=8)
    assert seg.observations.shape == (3, 8, 2) and seg.mask.shape == (3, 8)
    assert seg.mask[0].all(), "episode A is long enough"
    assert seg.mask[1].tolist() == [True] * 5 + [False] * 3
    assert seg.mask[2].tolist() == [True] * 7 + [False]
    # B's real rows are rows 10..14; then the state after its timeout, forever, with no reward
    np.testing.assert_array_equal(seg.observations[1, :5, 0], np.arange(10, 15))
    np.testing.assert_array_equal(seg.observations[1, 5:], [[114, 114]] * 3)
    np.testing.assert_array_equal(seg.next_observations[1, 5:], [[114, 114]] * 3)
    assert (seg.actions[1, 5:] == 0).all() and (seg.rewards[1, 5:] == 0).all()
    assert not seg.terminals[1].any(), "a timeout is no terminal, padded or not"
    assert seg.terminals[2, 6:].all() and not seg.terminals[2, :6].any(), "absorbing after C's end"
    np.testing.assert_array_equal(seg.rewards[0], np.arange(1, 9))


def test_real_windows_are_consecutive_transitions_of_one_episode(tmp_path):
    from adept.data.hdf5 import load_hdf5
    from adept.datasets.generate import make_dataset

    data = load_hdf5(make_dataset("hopper-random", tmp_path / "d.hdf5", num_steps=2000, seed=0))
    starts = segment_starts(data, length=16, stride=4, short="pad")
    seg = gather_segments(data, starts, 16)
    inside = seg.mask[:, 1:] & seg.mask[:, :-1]
    # within the real rows, each s′ is the next row's s: no window crosses an episode's end
    np.testing.assert_array_equal(
        seg.next_observations[:, :-1][inside], seg.observations[:, 1:][inside]
    )
    ends = seg.terminals & seg.mask
    assert ends.sum() >= data.terminals.sum(), "every terminal is in some window"
    assert not (seg.terminals[:, :-1] & seg.mask[:, 1:]).any(), "a terminal only at a real end"
