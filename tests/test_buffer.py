from dataclasses import fields

import numpy as np
import pytest
import torch

from adept.data.buffer import Batch, ReplayBuffer, resolve_device
from adept.data.hdf5 import load_hdf5

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_sample_shapes_dtypes_and_device(d4rl_file, device):
    buffer = ReplayBuffer.from_transitions(load_hdf5(d4rl_file), device=device)
    batch = buffer.sample(32)
    assert batch.observations.shape == (32, 11) and batch.next_observations.shape == (32, 11)
    assert batch.actions.shape == (32, 3)
    for name in ("rewards", "terminals", "timeouts", "action_log_probs"):
        assert getattr(batch, name).shape == (32,)
    for value in vars(batch).values():
        assert value.dtype == torch.float32 and value.device.type == device


def test_samples_are_rows_of_the_dataset(d4rl_file):
    data = load_hdf5(d4rl_file)
    batch = ReplayBuffer.from_transitions(data, device="cpu").sample(64)
    for obs, rew, nxt, term in zip(
        batch.observations, batch.rewards, batch.next_observations, batch.terminals, strict=True
    ):
        i = int(rew)  # rewards are the row index in the fixture
        np.testing.assert_array_equal(obs.numpy(), data.observations[i])
        np.testing.assert_array_equal(nxt.numpy(), data.next_observations[i])
        assert bool(term) == data.terminals[i]


def test_sampling_is_uniform_and_seeded(d4rl_file):
    data = load_hdf5(d4rl_file)
    a = ReplayBuffer.from_transitions(data, device="cpu", seed=5).sample(7000)
    b = ReplayBuffer.from_transitions(data, device="cpu", seed=5).sample(7000)
    assert torch.equal(a.rewards, b.rewards)
    counts = torch.bincount(a.rewards.long(), minlength=7).numpy()
    assert counts.min() > 850 and counts.max() < 1150


def test_ring_buffer_overwrites_oldest_first():
    buffer = ReplayBuffer(capacity=5, obs_dim=2, act_dim=1, device="cpu")

    def rows(start, n):
        r = torch.arange(start, start + n, dtype=torch.float32)
        return Batch(r[:, None].repeat(1, 2), r[:, None], r, r[:, None].repeat(1, 2), r * 0, r * 0)

    buffer.add(rows(0, 3))
    assert len(buffer) == 3
    buffer.add(rows(3, 4))
    assert len(buffer) == 5
    assert sorted(buffer.rewards.tolist()) == [2, 3, 4, 5, 6]
    buffer.add(rows(10, 8))  # larger than capacity: keeps the newest five
    assert sorted(buffer.rewards.tolist()) == [13, 14, 15, 16, 17]


def test_state_dict_restores_the_sampling_stream(d4rl_file):
    buffer = ReplayBuffer.from_transitions(load_hdf5(d4rl_file), device="cpu", seed=1)
    buffer.sample(3)
    state = buffer.state_dict()
    expected = buffer.sample(10).rewards
    buffer.sample(10)
    buffer.load_state_dict(state)
    assert torch.equal(buffer.sample(10).rewards, expected)


def test_saved_rows_are_the_filled_rows_only():
    """A checkpoint of a model buffer holds its filled rows, not its whole capacity (the fields
    are views of one table: saving a view would save the table)."""
    buffer = ReplayBuffer(capacity=1000, obs_dim=3, act_dim=2, device="cpu", with_log_probs=True)
    r = torch.arange(4, dtype=torch.float32)
    buffer.add(
        Batch(
            r[:, None].repeat(1, 3),
            -r[:, None].repeat(1, 2),
            r,
            r[:, None].repeat(1, 3) + 0.5,
            r * 0,
            r * 0 + 1,
            -r,
        )
    )
    state = buffer.state_dict(include_data=True)["data"]
    assert set(state) == {f.name for f in fields(Batch)}
    for name, value in state.items():
        assert value.untyped_storage().nbytes() == value.numel() * 4, name
        assert torch.equal(value, getattr(buffer, name)[:4]), name
    restored = ReplayBuffer(capacity=1000, obs_dim=3, act_dim=2, device="cpu", with_log_probs=True)
    restored.load_state_dict(buffer.state_dict(include_data=True))
    assert torch.equal(
        restored.sample(50, torch.Generator().manual_seed(0)).actions,
        buffer.sample(50, torch.Generator().manual_seed(0)).actions,
    )
    assert sorted(restored.sample(64).action_log_probs.unique().tolist()) == [-3, -2, -1, 0]


def test_cat_and_auto_device(d4rl_file):
    buffer = ReplayBuffer.from_transitions(load_hdf5(d4rl_file), device="auto")
    assert buffer.device == resolve_device("auto")
    joined = Batch.cat([buffer.sample(3), buffer.sample(4)])
    assert len(joined) == 7 and joined.action_log_probs is not None


def test_empty_buffer_refuses_to_sample():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(4, 2, 1, device="cpu").sample(1)
