import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from adept.agents import SAC, AgentSpec
from adept.data.buffer import Batch
from adept.importance import BehaviorModel, importance_sampled_update, importance_weights


def test_weighted_mean_recovers_the_expectation_under_a_shifted_policy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, generator=g)  # a ~ β = N(0, 1)
    beta, pi = Normal(0.0, 1.0), Normal(0.5, 1.0)
    plain = importance_weights(pi.log_prob(a), beta.log_prob(a), clip=False)
    assert (plain.weights * a).sum().item() == pytest.approx(0.5, abs=0.02)
    assert plain.weights.sum().item() == pytest.approx(1.0)
    # ESS of this shift is N·exp(−Δ²) = 0.78 N in expectation
    assert plain.ess.item() / len(a) == pytest.approx(math.exp(-0.25), rel=0.02)
    # truncation at √N times the mean weight barely touches a mild shift
    clipped = importance_weights(pi.log_prob(a), beta.log_prob(a), clip=True)
    assert (clipped.weights * a).sum().item() == pytest.approx(0.5, abs=0.02)
    assert clipped.clipped_fraction.item() == 0.0
    # and the unweighted mean is the behaviour's
    assert a.mean().item() == pytest.approx(0.0, abs=0.01)


def test_equal_policies_give_uniform_weights():
    lp = torch.randn(64)
    iw = importance_weights(lp, lp)
    torch.testing.assert_close(iw.weights, torch.full((64,), 1 / 64))
    assert iw.ess.item() == pytest.approx(64) and iw.max_weight.item() == pytest.approx(1.0)


def test_dominant_weights_are_truncated_to_the_cap():
    raw_lr = torch.zeros(1024)
    raw_lr[:4] = 8.0  # four samples carry 90 % of the mass
    raw = importance_weights(raw_lr, torch.zeros(1024), clip=False)
    assert raw.max_weight.item() > 200 and raw.ess.item() < 5
    cut = importance_weights(raw_lr, torch.zeros(1024), clip=True)  # cap √N = 32 × mean
    # the cap holds for the final, renormalized weights, so ESS ≥ N / 32
    assert cut.max_weight.item() == pytest.approx(32.0, rel=1e-4)
    assert cut.ess.item() >= 1024 / 32
    assert cut.clipped_fraction.item() == pytest.approx(4 / 1024)
    assert cut.weights.sum().item() == pytest.approx(1.0)
    # the untouched weights keep their ratios
    torch.testing.assert_close(cut.weights[4:] / cut.weights[5], torch.ones(1020))
    fixed = importance_weights(raw_lr, torch.zeros(1024), clip=True, clip_ratio=4.0)
    assert fixed.max_weight.item() == pytest.approx(4.0, rel=1e-4)
    # a single sample with all the mass: it is lowered to the cap as well
    one = torch.zeros(1024)
    one[7] = 50.0
    single = importance_weights(one, torch.zeros(1024), clip=True)
    assert single.max_weight.item() == pytest.approx(32.0, rel=1e-3)
    with pytest.raises(ValueError, match="at least 1"):
        importance_weights(one, torch.zeros(1024), clip=True, clip_ratio=0.5)


def test_degenerate_log_ratios():
    all_impossible = importance_weights(torch.full((10,), -math.inf), torch.zeros(10))
    torch.testing.assert_close(all_impossible.weights, torch.full((10,), 0.1))
    nan = torch.zeros(4)
    nan[1] = math.nan
    iw = importance_weights(nan, torch.zeros(4), clip=False)
    assert iw.weights[1].item() == 0.0 and iw.weights.sum().item() == pytest.approx(1.0)


def test_update_weights_come_from_the_actors_exact_density():
    """SAC's tanh-Gaussian density, including the change-of-variables term, sets the weights."""

    class Recorder:
        weights: torch.Tensor | None = None

        def train_step(self, batch, weights):
            self.weights = weights
            return {}

    torch.manual_seed(0)
    spec = AgentSpec(4, 2, torch.zeros(4), torch.ones(4), 1.0, 10, torch.device("cpu"))
    agent = SAC(spec)
    n = 256
    batch = Batch(
        observations=torch.randn(n, 4),
        actions=torch.rand(n, 2) * 1.8 - 0.9,
        rewards=torch.zeros(n),
        next_observations=torch.randn(n, 4),
        terminals=torch.zeros(n),
        timeouts=torch.zeros(n),
        action_log_probs=torch.full((n,), -2 * math.log(2)),
    )
    recorder = Recorder()
    metrics = importance_sampled_update(
        recorder,  # type: ignore[arg-type]
        batch,
        agent,
        BehaviorModel("logged"),
        clip=False,
    )
    with torch.no_grad():
        mean, log_std = agent.actor(batch.observations)
        dist = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform())
        log_pi = dist.log_prob(batch.actions).sum(-1)
    expected = torch.softmax(log_pi + 2 * math.log(2), 0)
    torch.testing.assert_close(recorder.weights, expected, rtol=1e-3, atol=1e-6)
    assert metrics["world_model/is_ess"].item() == pytest.approx(
        (1 / expected.pow(2).sum()).item(), rel=1e-3
    )


def test_behavior_model_kinds():
    with pytest.raises(ValueError, match="needs a fitted BC agent"):
        BehaviorModel("bc")
    zeros = torch.zeros(3)
    batch = Batch(zeros[:, None], zeros[:, None], zeros, zeros[:, None], zeros, zeros)
    with pytest.raises(ValueError, match="no action_log_probs"):
        BehaviorModel("logged").log_prob(batch)
