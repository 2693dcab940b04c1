"""SynthER's transition generator: layout, standardization, training and sample quality."""

import numpy as np
import pytest
import torch

from adept.data.buffer import Batch
from adept.data.transitions import Transitions
from adept.diffusion.edm import EDMConfig
from adept.methods.synther import GeneratorTrainer, TransitionModel


def linear_system(n: int = 4000, seed: int = 0) -> Transitions:
    """s′ = s + a, r = a₀ − a₁, terminal where s₀ + a₀ > 1.6: a structure a generator must learn
    jointly, not dimension by dimension."""
    g = np.random.default_rng(seed)
    obs = g.normal(size=(n, 2)).astype(np.float32)
    act = g.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    nxt = obs + act
    return Transitions(
        observations=obs,
        actions=act,
        rewards=act[:, 0] - act[:, 1],
        next_observations=nxt,
        terminals=nxt[:, 0] > 1.6,
        timeouts=np.zeros(n, dtype=bool),
    )


def dynamics_error(batch: Batch) -> float:
    return float((batch.next_observations - batch.observations - batch.actions).norm(dim=1).mean())


def test_layout_standardization_and_round_trip():
    data = linear_system()
    model = TransitionModel(data, hidden=16, depth=1)
    batch = Batch.of(data)
    x = model.encode(batch)
    assert x.shape == (len(data), 2 + 2 + 1 + 2 + 1)
    assert x[:, :-1].mean(0).abs().max() < 1e-4 and (x[:, :-1].std(0) - 1).abs().max() < 1e-3
    assert torch.equal(x[:, -1], batch.terminals), "the terminal flag is left in {0, 1}"
    back = model.decode(x)
    for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
        torch.testing.assert_close(getattr(back, name), getattr(batch, name), atol=1e-5, rtol=0)
    assert back.timeouts.sum() == 0


def test_decoded_terminals_are_thresholded_at_one_half():
    model = TransitionModel(linear_system(), hidden=16, depth=1)
    x = torch.zeros(3, model.dim)
    x[:, -1] = torch.tensor([0.2, 0.49, 0.51])
    assert model.decode(x).terminals.tolist() == [0.0, 0.0, 1.0]


def test_training_teaches_the_generator_the_dynamics():
    torch.manual_seed(0)
    data = linear_system()
    model = TransitionModel(data, hidden=64, depth=2, edm=EDMConfig(sample_steps=24))
    untrained = dynamics_error(model.sample(2000, generator=torch.Generator().manual_seed(1)))
    trainer = GeneratorTrainer(model, num_steps=800, lr=2e-3)
    batches = Batch.of(data)
    g = torch.Generator().manual_seed(2)
    for _ in range(800):
        out = trainer.step(batches.take(torch.randint(len(data), (256,), generator=g)))
    samples = model.sample(2000, generator=torch.Generator().manual_seed(1))
    trained = dynamics_error(samples)
    data_scale = dynamics_error(Batch.of(data.replace(next_observations=data.observations)))
    # measured: trained 0.071, untrained 2.16, |a| (what s′ = s would miss) 0.76
    assert trained < 0.2 * data_scale and trained < 0.2 * untrained, (trained, untrained)
    assert out["synther/lr"].item() == pytest.approx(0.0, abs=1e-9), "the cosine ends at 0"
    assert 0.0 < samples.terminals.mean().item() < 0.5


def test_gradients_are_clipped_to_the_configured_norm():
    data = linear_system(n=512)
    model = TransitionModel(data, hidden=16, depth=1)
    trainer = GeneratorTrainer(model, num_steps=10, grad_clip=1e-3)
    out = trainer.step(Batch.of(data))
    assert out["synther/grad_norm"].item() > 1e-3, "the norm before clipping is reported"
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert after.item() == pytest.approx(1e-3, rel=1e-3), "the step used the clipped gradient"


def test_upsampled_data_round_trips_through_a_d4rl_file(tmp_path):
    from adept.data.hdf5 import load_hdf5, save_hdf5
    from adept.data.summary import summarize
    from adept.methods.synther import upsample

    torch.manual_seed(0)
    model = TransitionModel(linear_system(), hidden=16, depth=1, edm=EDMConfig(sample_steps=4))
    synthetic = upsample(
        model, 70, batch_size=32, generator=torch.Generator().manual_seed(1), env_id="Hopper-v5"
    )
    assert len(synthetic) == 70 and synthetic.metadata["kind"] == "synther"
    assert np.array_equal(synthetic.timeouts, ~synthetic.terminals), "one-step episodes"
    path = save_hdf5(synthetic, tmp_path / "synthetic.hdf5", metadata={"source_dataset": "toy"})
    back = load_hdf5(path)
    for name, value in synthetic.arrays().items():
        assert np.array_equal(getattr(back, name), value), name
    assert back.env_id == "Hopper-v5" and back.metadata["source_dataset"] == "toy"
    info = summarize(back)
    assert info["transitions"] == 70 and info["episodes"] == 70
    with pytest.raises(ValueError, match="n ≥ 1"):
        upsample(model, 0, batch_size=32)


def test_train_generator_is_pure_and_returns_the_average():
    from dataclasses import replace

    from adept.methods.synther import SynthERConfig, train_generator

    data = linear_system(n=512)
    small = SynthERConfig(hidden=16, depth=1, train_steps=30, batch_size=64, lr=1e-2)
    cpu = torch.device("cpu")
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    first = train_generator(data, small, seed=0, device=cpu)
    assert torch.equal(torch.get_rng_state(), rng), "the caller's RNG is left as it was"
    again = train_generator(data, small, seed=0, device=cpu)
    for name, value in first["model"].items():
        assert torch.equal(value, again["model"][name]), name
    assert np.isfinite(first["metrics"]["synther/loss"])
    # the weights returned are the EMA's: with a decay near 1 they stay at the initial weights
    torch.manual_seed(0)
    initial = TransitionModel(data, 16, 1, small.edm, small.block_layers).state_dict()
    frozen = train_generator(data, replace(small, ema_decay=1 - 1e-9), seed=0, device=cpu)
    moved = train_generator(data, replace(small, ema_decay=0.01), seed=0, device=cpu)
    name = "edm.net.inp.weight"
    torch.testing.assert_close(frozen["model"][name], initial[name], atol=1e-6, rtol=0)
    assert not torch.allclose(moved["model"][name], initial[name], atol=1e-3)
