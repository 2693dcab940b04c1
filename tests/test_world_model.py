import copy

import numpy as np
import pytest
import torch

from adept.accel.stacked import StackedDynamics, sample_stacked
from adept.data.buffer import Batch
from adept.data.transitions import DatasetStats, Stats, Transitions
from adept.world_models.model import (
    DiffusionDynamics,
    RewardTerminalModel,
    WorldModel,
    WorldModelConfig,
)


def linear_gaussian(n: int, seed: int):
    """s′ = A s + B a + 0.1·noise in 2-D: a known conditional distribution."""
    g = torch.Generator().manual_seed(seed)
    A = torch.tensor([[0.9, 0.2], [-0.3, 0.8]])
    B = torch.tensor([[0.5], [-1.0]])
    s = torch.randn(n, 2, generator=g)
    a = torch.rand(n, 1, generator=g) * 2 - 1
    s_next = s @ A.T + a @ B.T + 0.1 * torch.randn(n, 2, generator=g)
    return s, a, s_next, A, B


def dynamics(s, s_next, target="delta", **config) -> DiffusionDynamics:
    x0 = s_next - s if target == "delta" else s_next
    states = Stats.of(torch.cat([s, s_next]).numpy())
    return DiffusionDynamics(
        s.shape[1], 1, states, Stats.of(x0.numpy()), WorldModelConfig(target=target, **config)
    )


def stats_of(s, s_next, rewards=None) -> DatasetStats:
    states = torch.cat([s, s_next]).numpy()
    r = np.zeros(len(s), dtype=np.float32) if rewards is None else rewards.numpy()
    return DatasetStats(states=Stats.of(states), rewards=Stats.of(r))


@pytest.fixture(scope="module")
def trained_linear_model():
    torch.manual_seed(0)
    s, a, s_next, A, B = linear_gaussian(20_000, seed=0)
    model = dynamics(s, s_next, hidden=128, depth=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(3000):
        idx = torch.randint(len(s), (256,), generator=g)
        loss = model.loss(s[idx], a[idx], s_next[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, A, B


@pytest.mark.slow
def test_sampler_recovers_a_known_conditional_distribution(trained_linear_model):
    model, A, B = trained_linear_model
    torch.manual_seed(2)
    s0 = torch.tensor([[0.5, -1.0]]).repeat(4000, 1)
    a0 = torch.tensor([[0.3]]).repeat(4000, 1)
    samples = model.sample(s0, a0, guidance_weight=0.0)
    true_mean = (s0[0] @ A.T + a0[0] @ B.T).numpy()
    np.testing.assert_allclose(samples.mean(0).numpy(), true_mean, atol=0.04)
    # DDPM with K = 10 ancestral steps under-disperses somewhat (the reverse kernel ignores the
    # uncertainty of x₀ given x_k); the spread must still be the noise's, not 0 and not the
    # state's (std ≈ 1)
    std = samples.std(0).numpy()
    assert ((std > 0.05) & (std < 0.13)).all(), std


@torch.no_grad()
def chain_by_hand(model, s, a, w: float, seed: int) -> torch.Tensor:
    """The DDPM chain written out with full forward passes and ε̂ = (1 + w) ε(c) − w ε(∅)."""
    torch.manual_seed(seed)
    n = len(s)
    sched, cond = model.schedule, model._cond(s, a)
    x = torch.randn(n, s.shape[1])
    for k in reversed(range(sched.num_steps)):
        steps = torch.full((n,), k)
        eps = model.denoiser(x, steps, cond, torch.zeros(n, dtype=torch.bool))
        if w:
            eps_null = model.denoiser(x, steps, cond, torch.ones(n, dtype=torch.bool))
            assert not torch.allclose(eps, eps_null), "the null condition is a different input"
            eps = (1 + w) * eps - w * eps_null
        x0 = sched.predict_x0(x, eps, k).clamp(model.x0_low, model.x0_high)
        mean = sched.posterior_mean_coef_x0[k] * x0 + sched.posterior_mean_coef_xk[k] * x
        x = mean + sched.posterior_variance[k].sqrt() * torch.randn_like(x) if k > 0 else mean
    return model._next_obs(s, x)


@pytest.mark.slow  # the trained model of its fixture: ≈ 20 s
def test_guidance_weight_zero_equals_the_conditional_model(trained_linear_model):
    model, _, _ = trained_linear_model
    s, a, *_ = linear_gaussian(64, seed=3)
    torch.manual_seed(7)
    sampled = model.sample(s, a, guidance_weight=0.0)
    torch.testing.assert_close(
        sampled, chain_by_hand(model, s, a, w=0.0, seed=7), rtol=1e-4, atol=1e-5
    )


@pytest.mark.slow  # the trained model of its fixture: ≈ 20 s
def test_guided_chain_mixes_conditional_and_null_halves(trained_linear_model):
    """The batched guided sampler equals the chain with (1 + w) ε(c) − w ε(∅)."""
    model, _, _ = trained_linear_model
    s, a, *_ = linear_gaussian(32, seed=4)
    torch.manual_seed(3)
    sampled = model.sample(s, a, guidance_weight=0.1)
    torch.testing.assert_close(
        sampled, chain_by_hand(model, s, a, w=0.1, seed=3), rtol=1e-4, atol=1e-5
    )
    torch.manual_seed(3)
    assert not torch.allclose(model.sample(s, a, guidance_weight=0.0), sampled), "w matters"


@pytest.mark.parametrize("target", ["next", "delta"])
def test_targets_round_trip(target):
    s, a, s_next, *_ = linear_gaussian(100, seed=5)
    model = dynamics(s, s_next, target)
    torch.testing.assert_close(
        model._next_obs(s, model._x0(s, s_next)), s_next, rtol=1e-5, atol=1e-5
    )
    assert model.loss(s, a, s_next).shape == (100,)


@pytest.mark.slow
def test_reward_terminal_model_learns_a_known_rule():
    torch.manual_seed(0)
    s, a, s_next, *_ = linear_gaussian(4000, seed=6)
    rewards = 2.0 * s_next[:, 0] - a[:, 0]
    terminals = (s_next[:, 1] > 1.0).float()
    model = RewardTerminalModel(2, 1, stats_of(s, s_next, rewards), hidden=64, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1500):
        idx = torch.randint(4000, (256,))
        r_loss, d_loss = model.loss(s[idx], a[idx], s_next[idx], rewards[idx], terminals[idx])
        opt.zero_grad()
        (r_loss.mean() + d_loss.mean()).backward()
        opt.step()
    s_t, a_t, sn_t, *_ = linear_gaussian(1000, seed=7)
    r_hat, logit = model(s_t, a_t, sn_t)
    true_r = 2.0 * sn_t[:, 0] - a_t[:, 0]
    assert (r_hat - true_r).abs().mean().item() < 0.1
    accuracy = ((logit > 0).float() == (sn_t[:, 1] > 1.0).float()).float().mean().item()
    assert accuracy > 0.97


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "ensemble"])
def test_gaussian_baselines_recover_the_linear_gaussian_system(kind):
    from adept.world_models.model import GaussianDynamics, GaussianEnsemble

    torch.manual_seed(0)
    s, a, s_next, A, B = linear_gaussian(20_000, seed=0)
    states = Stats.of(torch.cat([s, s_next]).numpy())
    config = WorldModelConfig(hidden=64, depth=1, ensemble_size=3, ensemble_elites=2)
    cls = GaussianDynamics if kind == "gaussian" else GaussianEnsemble
    model = cls(2, 1, states, Stats.of((s_next - s).numpy()), config)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1500):
        idx = torch.randint(len(s), (256,))
        loss = model.loss(s[idx], a[idx], s_next[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    s0, a0 = torch.tensor([[0.5, -1.0]]).repeat(4000, 1), torch.tensor([[0.3]]).repeat(4000, 1)
    samples = model.sample(s0, a0)
    np.testing.assert_allclose(
        samples.mean(0).numpy(), (s0[0] @ A.T + a0[0] @ B.T).numpy(), atol=0.03
    )
    np.testing.assert_allclose(samples.std(0).numpy(), [0.1, 0.1], atol=0.03)
    # the deterministic next state (DyDiff's rollouts): the mean, without the Gaussian's noise
    # (an ensemble's rows still differ by the elite each is drawn from)
    modes = model.mode(s0, a0)
    np.testing.assert_allclose(
        modes.mean(0).numpy(), (s0[0] @ A.T + a0[0] @ B.T).numpy(), atol=0.03
    )
    assert (modes.std(0) < 0.02).all(), modes.std(0)


def _weights_case(dynamics: str):
    rng = np.random.default_rng(1)
    n = 16
    obs = rng.normal(size=(n, 2)).astype(np.float32)
    data = Transitions(
        obs,
        rng.uniform(-1, 1, (n, 1)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        obs + 1,
        np.zeros(n, bool),
        np.zeros(n, bool),
    )
    config = WorldModelConfig(
        hidden=16, depth=1, dynamics=dynamics, ensemble_size=3, ensemble_elites=2
    )  # type: ignore[arg-type]
    torch.manual_seed(0)
    return Batch.of(data), WorldModel(data, config, torch.device("cpu"))


@pytest.mark.parametrize("dynamics", ["diffusion", "gaussian", "ensemble"])
def test_train_step_weights_select_the_samples_that_count(dynamics):
    batch, model = _weights_case(dynamics)
    start = copy.deepcopy(model.state_dict_all())

    def step(b, w):
        model.load_state_dict_all(start)
        torch.manual_seed(1)
        model.train_step(b, w)
        return [p.detach().clone() for p in model.parameters()]

    before = [p.detach().clone() for p in model.parameters()]
    # all-zero weights: no gradient, so Adam leaves every parameter where it was
    zero = step(batch, torch.zeros(len(batch)))
    assert all(torch.equal(a, b) for a, b in zip(before, zero, strict=True))
    # one-hot weight on row 3: the other rows may hold anything without changing the step
    one_hot = torch.zeros(len(batch))
    one_hot[3] = 1.0
    garbage = Batch(
        **{
            **batch.__dict__,
            "next_observations": torch.where(
                (torch.arange(len(batch)) == 3)[:, None], batch.next_observations, 1e3
            ),
            "rewards": torch.where(torch.arange(len(batch)) == 3, batch.rewards, -1e3),
        }
    )
    clean, dirty = step(batch, one_hot), step(garbage, one_hot)
    assert all(torch.equal(a, b) for a, b in zip(clean, dirty, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before, clean, strict=True))
    # and without weights the garbage rows do count
    assert any(
        not torch.equal(a, b) for a, b in zip(step(batch, None), step(garbage, None), strict=True)
    )


@pytest.mark.parametrize("condition", ["input", "blocks"])
def test_several_models_sample_as_one_computation_as_each_does_alone(condition):
    """sample_stacked: k models (different weights and data statistics), ragged batches, each
    with its own chain noise, equal each model's own sample with that noise."""
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        s, _, s_next, _, _ = linear_gaussian(500, seed=seed)
        models.append(
            dynamics(s * (seed + 1), s_next, hidden=32, depth=2, condition=condition,
                     denoising_steps=4, guidance_weight=0.5)
        )  # fmt: skip
    g = torch.Generator().manual_seed(7)
    obs = [torch.randn(n, 2, generator=g) for n in (40, 13, 40)]
    act = [torch.rand(n, 1, generator=g) * 2 - 1 for n in (40, 13, 40)]
    torch.manual_seed(3)
    noise = [m.draw_noise(len(o), o.device) for m, o in zip(models, obs, strict=True)]
    assert noise[0].shape == (4, 40, 2)
    together = sample_stacked(models, obs, act, noise)
    for m, o, a, z, got in zip(models, obs, act, noise, together, strict=True):
        torch.testing.assert_close(got, m.sample(o, a, noise=z), atol=1e-5, rtol=0)
    torch.manual_seed(3)  # sample() draws its chain as draw_noise does: the same s′
    torch.testing.assert_close(models[0].sample(obs[0], act[0]), together[0], atol=1e-5, rtol=0)
    assert not torch.allclose(together[0], together[2]), "each model samples with its own weights"
    # a subset of the stacked models (a rollout whose other seeds have ended), in any order
    part = StackedDynamics(models).sample(
        [obs[2], obs[0]], [act[2], act[0]], [noise[2], noise[0]], [2, 0]
    )
    for got, want in zip(part, (together[2], together[0]), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
