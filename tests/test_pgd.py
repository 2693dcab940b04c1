"""Policy-Guided Diffusion, first part: the segment model's rows and the way back to transitions."""

import numpy as np
import pytest
import torch

from adept.data.segments import gather_segments, segment_starts
from adept.diffusion.unet import UNetSize
from adept.methods.pgd import ACTION_CLIP, SegmentModel, SegmentRows, unstack

TINY = UNetSize(8, (1, 2), 3)


@pytest.fixture(scope="module")
def hopper(tmp_path_factory):
    from adept.data.generate import make_dataset
    from adept.data.hdf5 import load_hdf5

    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return load_hdf5(make_dataset("hopper-random", path, num_steps=2000, seed=0, progress=False))


def test_rows_are_standardized_with_actions_through_arctanh(hopper):
    torch.manual_seed(0)
    model = SegmentModel(hopper, TINY, groups=2)
    everything = SegmentRows.of(gather_segments(hopper, np.arange(len(hopper)), 1))
    x = model.encode(everything)  # every row once, as segments of one row
    assert x.shape == (len(hopper), 1, hopper.obs_dim + hopper.act_dim + 2)
    flat = x[:, 0]
    assert flat.mean(0).abs().max() < 1e-3 and (flat.std(0) - 1).abs().max() < 1e-3
    back = model.decode(x)
    np.testing.assert_allclose(back.observations[:, 0], hopper.observations, atol=1e-4)
    np.testing.assert_allclose(back.rewards[:, 0], hopper.rewards, atol=1e-4)
    # actions come back through tanh: exact inside the clip, at ±0.999 beyond it
    clipped = np.clip(hopper.actions, -ACTION_CLIP, ACTION_CLIP)
    np.testing.assert_allclose(back.actions[:, 0], clipped, atol=1e-4)
    assert np.array_equal(back.terminals[:, 0].numpy() > 0, hopper.terminals)
    loss = model.loss(SegmentRows.of(gather_segments(hopper, np.array([0, 5]), 8)))
    assert loss.shape == (2,) and torch.isfinite(loss).all()


def test_unstack_gives_back_the_recorded_transitions_up_to_each_terminal(hopper):
    starts = segment_starts(hopper, length=16, stride=3, short="pad")
    seg = gather_segments(hopper, starts, 16)
    assert (~seg.mask[:, :-1]).any(), "short episodes padded: rows after terminals to drop"
    out = unstack(SegmentRows.of(seg), env_id="Hopper-v5")
    # expected: rows start + t for t ≤ 14, up to and including a terminal (the padding dropped);
    # every terminal of the data is among them (the terminal windows end one row after it)
    expected = []
    for start in seg.starts:
        for t in range(15):
            expected.append(start + t)
            if hopper.terminals[start + t]:
                break
    expected = np.array(expected)
    assert len(out) == len(expected)
    np.testing.assert_array_equal(out.observations, hopper.observations[expected])
    np.testing.assert_array_equal(out.next_observations, hopper.next_observations[expected])
    np.testing.assert_array_equal(out.rewards, hopper.rewards[expected])
    np.testing.assert_array_equal(out.terminals, hopper.terminals[expected])
    # each segment is an episode: its terminal, or a timeout at its last transition
    assert out.num_episodes == len(starts) and out.env_id == "Hopper-v5"
    assert (out.terminals | out.timeouts).sum() == len(starts)
    assert set(np.flatnonzero(hopper.terminals)) <= set(expected.tolist())
