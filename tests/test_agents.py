import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from adept.agents import AGENTS, IQL, SAC, TD3BC, AgentSpec
from adept.agents.iql import expectile_loss
from adept.data.buffer import Batch
from adept.nets import (
    DeterministicActor,
    EnsembleQ,
    GaussianActor,
    Normalizer,
    TanhGaussianActor,
)

OBS, ACT = 5, 2


def spec(num_steps: int = 100) -> AgentSpec:
    return AgentSpec(
        obs_dim=OBS,
        act_dim=ACT,
        obs_mean=torch.full((OBS,), 0.5),
        obs_std=torch.full((OBS,), 2.0),
        return_range=50.0,
        num_steps=num_steps,
        device=torch.device("cpu"),
    )


def batch(n: int = 64, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        observations=torch.randn(n, OBS, generator=g),
        actions=torch.rand(n, ACT, generator=g) * 2 - 1,
        rewards=torch.randn(n, generator=g),
        next_observations=torch.randn(n, OBS, generator=g),
        terminals=(torch.rand(n, generator=g) < 0.1).float(),
        timeouts=torch.zeros(n),
    )


def params(agent) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{k}": v.detach().clone()
        for name, part in agent.components().items()
        if isinstance(part, torch.nn.Module)
        for k, v in part.state_dict().items()
    }


@pytest.mark.parametrize("name", list(AGENTS))
def test_update_changes_parameters_and_returns_finite_losses(name):
    torch.manual_seed(0)
    agent = AGENTS[name](spec())
    before = params(agent)
    for i in range(2):  # TD3+BC updates its actor every second step
        metrics = agent.update(batch(seed=i))
    assert metrics and all(k.startswith("train/") for k in metrics)
    assert all(torch.isfinite(v) and v.ndim == 0 and not v.requires_grad for v in metrics.values())
    after = params(agent)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("actor.") for k in changed), "the actor learns"
    if name != "bc":
        assert any(k.startswith("critic.") for k in changed), "the critics learn"
    assert not any(k.endswith(("normalizer.mean", "normalizer.std")) for k in changed)


@pytest.mark.parametrize("name", list(AGENTS))
def test_act_shapes_bounds_and_determinism(name):
    torch.manual_seed(0)
    agent = AGENTS[name](spec())
    obs = np.random.default_rng(0).normal(size=(7, OBS)).astype(np.float32)
    a = agent.act(obs, deterministic=True)
    assert a.shape == (7, ACT) and a.dtype == np.float32
    assert np.abs(a).max() <= 1.0
    np.testing.assert_array_equal(a, agent.act(obs, deterministic=True))
    assert agent.act(obs[0]).shape == (ACT,)
    stochastic = agent.act(obs, deterministic=False)
    assert np.abs(stochastic).max() <= 1.0 and not np.array_equal(stochastic, a)


@pytest.mark.parametrize("name", list(AGENTS))
def test_save_load_round_trip_continues_identically(name):
    torch.manual_seed(0)
    a = AGENTS[name](spec())
    for i in range(3):
        a.update(batch(seed=i))
    torch.manual_seed(1)
    b = AGENTS[name](spec())
    b.load_state_dict(a.state_dict())
    obs = batch().observations
    torch.testing.assert_close(a.log_prob(obs, batch().actions), b.log_prob(obs, batch().actions))
    torch.manual_seed(5)
    ma = a.update(batch(seed=9))
    torch.manual_seed(5)
    mb = b.update(batch(seed=9))
    for key in ma:
        torch.testing.assert_close(ma[key], mb[key])
    pa, pb = params(a), params(b)
    for key in pa:
        torch.testing.assert_close(pa[key], pb[key])


@pytest.mark.parametrize("name", list(AGENTS))
def test_determinism_under_a_seed(name):
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        agent = AGENTS[name](spec())
        for i in range(3):
            agent.update(batch(seed=i))
        runs.append(params(agent))
    for key in runs[0]:
        assert torch.equal(runs[0][key], runs[1][key]), key


def test_expectile_loss_hand_computed():
    diff = torch.tensor([1.0, -2.0])
    # weights 0.7 for the positive residual, 0.3 for the negative: (0.7·1 + 0.3·4) / 2
    assert expectile_loss(diff, 0.7).item() == pytest.approx(0.95)
    assert expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (1 + 4) / 2)


def test_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    for dependent in (False, True):
        actor = GaussianActor(OBS, ACT, Normalizer.identity(OBS), state_dependent_std=dependent)
        with torch.no_grad():
            if actor.log_std is not None:
                actor.log_std.copy_(torch.tensor([-0.3, 0.4]))
        obs, act = batch().observations, batch().actions
        mean, log_std = actor(obs)
        expected = Normal(mean, log_std.exp()).log_prob(act).sum(-1)
        torch.testing.assert_close(actor.log_prob(obs, act), expected)


@pytest.mark.parametrize("kind", [GaussianActor, TanhGaussianActor, DeterministicActor])
def test_actors_sample_from_given_noise(kind):
    """``sample(obs, noise=ε)`` is the sample the actor draws itself when its generator yields
    ε: the same noise gives the same action, and at a moved state the action moves only as far
    as π's mean and scale do (DyDiff re-queries its policy this way)."""
    torch.manual_seed(0)
    actor = kind(OBS, ACT, Normalizer.identity(OBS))
    obs = batch().observations
    torch.manual_seed(1)
    drawn = actor.sample(obs)
    torch.manual_seed(1)
    eps = torch.randn(len(obs), ACT)
    torch.testing.assert_close(actor.sample(obs, noise=eps), drawn)
    torch.testing.assert_close(actor.sample(obs, noise=eps), actor.sample(obs, noise=eps))
    assert not torch.allclose(actor.sample(obs, noise=eps), actor.sample(obs, noise=-eps))
    moved = obs + 1e-4
    assert (actor.sample(moved, noise=eps) - drawn).abs().max() < 1e-2


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    actor = TanhGaussianActor(OBS, ACT, Normalizer.identity(OBS))
    obs = batch().observations
    act = batch().actions.clamp(-0.999, 0.999)
    mean, log_std = actor(obs)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform())
    torch.testing.assert_close(
        actor.log_prob(obs, act), dist.log_prob(act).sum(-1), rtol=1e-4, atol=1e-4
    )
    # rsample's log-prob is the density of the action it returns
    a, lp = actor.rsample(obs)
    torch.testing.assert_close(lp, actor.log_prob(obs, a), rtol=1e-3, atol=1e-3)


def test_tanh_gaussian_density_integrates_to_one():
    """Monte-Carlo check of the correction: ∫ π(a|s) da over (−1, 1) = 1 for a 1-D action."""
    torch.manual_seed(0)
    actor = TanhGaussianActor(3, 1, Normalizer.identity(3))
    with torch.no_grad():
        actor.net[-1].bias.copy_(torch.tensor([0.8, -0.5]))  # mean 0.8 (+ net), log_std −0.5
    obs = torch.randn(1, 3).expand(20001, 3)
    grid = torch.linspace(-1 + 1e-6, 1 - 1e-6, 20001)[:, None]
    density = actor.log_prob(obs, grid).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=2e-3)


def test_td3bc_log_prob_is_the_exploration_gaussian():
    torch.manual_seed(0)
    agent = TD3BC(spec())
    obs, act = batch().observations, batch().actions
    with torch.no_grad():
        mean = agent.actor(obs)
    expected = Normal(mean, 0.1).log_prob(act).sum(-1)
    torch.testing.assert_close(agent.log_prob(obs, act), expected)


def test_sac_log_prob_is_exact_at_the_box_edges():
    torch.manual_seed(0)
    agent = SAC(spec())
    obs = batch(4).observations
    lp = agent.log_prob(obs, torch.tensor([[1.0, -1.0]] * 4))
    assert torch.isfinite(lp).all()


def test_twin_critics_are_independent_networks_in_one_module():
    torch.manual_seed(0)
    q = EnsembleQ(OBS, ACT, Normalizer.identity(OBS))
    out = q(batch().observations, batch().actions)
    assert out.shape == (2, 64)
    assert not torch.allclose(out[0], out[1])
    # member 0 alone equals a plain MLP with its weights
    x = torch.cat([batch().observations, batch().actions], -1)
    h = x
    layers = [m for m in q.net if hasattr(m, "weight")]
    for i, layer in enumerate(layers):
        h = h @ layer.weight[0] + layer.bias[0]
        if i < len(layers) - 1:
            h = torch.relu(h)
    torch.testing.assert_close(out[0], h.squeeze(-1))


def test_iql_reward_scaling_and_cosine_schedule():
    agent = IQL(spec(num_steps=10))
    assert agent.reward_scale == pytest.approx(1000 / 50)
    for i in range(10):
        agent.update(batch(seed=i))
    assert agent.actor_opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(agent.critic_opt.param_groups[0]["lr"], 3e-4)
