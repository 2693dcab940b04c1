import math

import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from adept.agents import SAC, AgentSpec
from adept.data.buffer import Batch
from adept.world_models.importance import (
    BehaviorModel,
    RefitRule,
    importance_sampled_update,
    importance_weights,
)


def test_weighted_mean_recovers_the_expectation_under_a_shifted_policy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, generator=g)  # a ~ β = N(0, 1)
    beta, pi = Normal(0.0, 1.0), Normal(0.5, 1.0)
    plain = importance_weights(pi.log_prob(a), beta.log_prob(a), truncate=False)
    assert (plain.weights * a).sum().item() == pytest.approx(0.5, abs=0.02)
    # self-normalized: they sum to 1 up to float32 rounding over 200k terms (≈ 1e-6 relative)
    assert plain.weights.sum().item() == pytest.approx(1.0, abs=1e-5)
    # ESS of this shift is N·exp(−Δ²) = 0.78 N in expectation
    assert plain.ess.item() / len(a) == pytest.approx(math.exp(-0.25), rel=0.02)
    # truncation at √N times the mean weight barely touches a mild shift
    kept = importance_weights(pi.log_prob(a), beta.log_prob(a), truncate=True)
    assert (kept.weights * a).sum().item() == pytest.approx(0.5, abs=0.02)
    assert kept.truncated_fraction.item() == 0.0
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
    raw = importance_weights(raw_lr, torch.zeros(1024), truncate=False)
    assert raw.max_weight.item() > 200 and raw.ess.item() < 5
    cut = importance_weights(raw_lr, torch.zeros(1024), truncate=True)  # cap √N = 32 × mean
    # the cap holds for the final, renormalized weights, so ESS ≥ N / 32
    assert cut.max_weight.item() == pytest.approx(32.0, rel=1e-4)
    assert cut.ess.item() >= 1024 / 32
    assert cut.truncated_fraction.item() == pytest.approx(4 / 1024)
    assert cut.weights.sum().item() == pytest.approx(1.0)
    # the untouched weights keep their ratios
    torch.testing.assert_close(cut.weights[4:] / cut.weights[5], torch.ones(1020))
    fixed = importance_weights(raw_lr, torch.zeros(1024), truncate=True, truncate_ratio=4.0)
    assert fixed.max_weight.item() == pytest.approx(4.0, rel=1e-4)
    # a single sample with all the mass: it is lowered to the cap as well
    one = torch.zeros(1024)
    one[7] = 50.0
    single = importance_weights(one, torch.zeros(1024), truncate=True)
    assert single.max_weight.item() == pytest.approx(32.0, rel=1e-3)
    with pytest.raises(ValueError, match="at least 1"):
        importance_weights(one, torch.zeros(1024), truncate=True, truncate_ratio=0.5)


def test_degenerate_log_ratios():
    all_impossible = importance_weights(torch.full((10,), -math.inf), torch.zeros(10))
    torch.testing.assert_close(all_impossible.weights, torch.full((10,), 0.1))
    nan = torch.zeros(4)
    nan[1] = math.nan
    iw = importance_weights(nan, torch.zeros(4), truncate=False)
    assert iw.weights[1].item() == 0.0 and iw.weights.sum().item() == pytest.approx(1.0)


def test_infinite_log_ratios_take_all_the_mass():
    log_pi = torch.tensor([0.0, math.inf, 1.0, math.inf])
    iw = importance_weights(log_pi, torch.zeros(4), truncate=False)
    assert iw.weights.tolist() == [0.0, 0.5, 0.0, 0.5]
    # β(a|s) = 0 gives +∞ as well
    iw = importance_weights(torch.zeros(3), torch.tensor([0.0, -math.inf, 0.0]), truncate=False)
    assert iw.weights.tolist() == [0.0, 1.0, 0.0]
    # two samples carry all the mass: a cap of 1.5 × mean (0.375) cannot hold; they stay equal
    truncated = importance_weights(log_pi, torch.zeros(4), truncate=True, truncate_ratio=1.5)
    assert truncated.weights.tolist() == [0.0, 0.5, 0.0, 0.5]


class Recorder:
    """Stands in for a world model: records what a re-fit step trains on."""

    def __init__(self):
        self.batch, self.weights = None, None

    def train_step(self, batch, weights=None):
        self.batch, self.weights = batch, weights
        return {}


class FixedPolicy:
    """log π(a|s) = the first action coordinate (β logged at 0): w ∝ exp(a₀)."""

    def log_prob(self, obs, act):
        return act[:, 0]


def refit_batch(n: int) -> Batch:
    return Batch(
        observations=torch.arange(n, dtype=torch.float32)[:, None],
        actions=torch.zeros(n, 1),
        rewards=torch.zeros(n),
        next_observations=torch.zeros(n, 1),
        terminals=torch.zeros(n),
        timeouts=torch.zeros(n),
        action_log_probs=torch.zeros(n),
    )


def test_refit_rules_weighted_resampled_and_uniform():
    batch = refit_batch(8)
    log_w = torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0, 0.0])
    batch = Batch(**{**batch.__dict__, "actions": log_w[:, None]})
    policy, behavior = FixedPolicy(), BehaviorModel("logged")
    expected = torch.softmax(log_w, 0)

    model = Recorder()
    importance_sampled_update(model, batch, policy, behavior, RefitRule(truncate=False))  # type: ignore[arg-type]
    torch.testing.assert_close(model.weights, expected)

    model = Recorder()
    out = importance_sampled_update(model, batch, policy, behavior, RefitRule(weights="uniform"))  # type: ignore[arg-type]
    assert model.weights is None and model.batch is batch, "uniform: plain unweighted step"
    assert out["world_model/is_ess"].item() < 8, "the IS weights are still measured"

    model = Recorder()
    g = torch.Generator().manual_seed(0)
    rule = RefitRule(loss="resample", truncate=False)
    importance_sampled_update(model, batch, policy, behavior, rule, 20_000, g)  # type: ignore[arg-type]
    assert model.weights is None and len(model.batch) == 20_000
    drawn = model.batch.observations[:, 0].long()
    share = torch.bincount(drawn, minlength=8).float() / len(drawn)
    torch.testing.assert_close(share, expected, atol=0.01, rtol=0)


def test_update_weights_come_from_the_actors_exact_density():
    """SAC's tanh-Gaussian density, including the change-of-variables term, sets the weights."""

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
        RefitRule(truncate=False),
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


class LineModel(torch.nn.Module):
    """The smallest world model: s′ ≈ θ₀ + θ₁ a, trained like :class:`WorldModel` (per-sample
    squared error, weights summing to one, Adam)."""

    def __init__(self, theta: tuple[float, float]):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(theta))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=0.02)

    def predict(self, act):
        return self.theta[0] + self.theta[1] * act[:, 0]

    def train_step(self, batch, weights=None):
        loss = (self.predict(batch.actions) - batch.next_observations[:, 0]).pow(2)
        w = torch.full_like(loss, 1 / len(loss)) if weights is None else weights
        self.optimizer.zero_grad()
        (w * loss).sum().backward()
        self.optimizer.step()
        return {}


class NarrowPolicy:
    """π = N(0.7, 0.1) over the action, whatever the state."""

    def log_prob(self, obs, act):
        return Normal(0.7, 0.1).log_prob(act[:, 0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "rule, improves",
    [
        (RefitRule(), True),
        (RefitRule(truncate=False), True),
        (RefitRule(loss="resample"), True),
        (RefitRule(weights="uniform"), False),
    ],
)
def test_only_the_weights_move_the_model_to_where_the_policy_acts(rule, improves):
    """s′ = a² with a ~ β = U(−1, 1) (logged), and a model that can only draw a line. The best
    line under β is flat, s′ = 1/3 (least squares of a² on U(−1, 1)); the best under π is the
    tangent at 0.7, with a π-weighted error ≈ 2σ⁴ = 2e-4 instead of ≈ 0.03. Starting from the
    β-optimal line, the IS re-fit must head for the tangent; the uniform re-fit, whose optimum
    is where it already is, must not move."""
    g = torch.Generator().manual_seed(0)
    n = 200_000
    act = torch.rand(n, 1, generator=g) * 2 - 1
    data = Batch(
        observations=torch.zeros(n, 1),
        actions=act,
        rewards=torch.zeros(n),
        next_observations=act.pow(2),
        terminals=torch.zeros(n),
        timeouts=torch.zeros(n),
        action_log_probs=torch.full((n,), -math.log(2)),
    )
    probe = (0.7 + 0.1 * torch.randn(50_000, 1, generator=g)).clamp(-1, 1)

    def pi_error(model):
        with torch.no_grad():
            return (model.predict(probe) - probe[:, 0].pow(2)).pow(2).mean().item()

    model = LineModel((1 / 3, 0.0))
    before = pi_error(model)
    assert before > 0.02
    pool = 8 if rule.loss == "resample" else 1
    for _ in range(300):
        rows = torch.randint(n, (1024 * pool,), generator=g)
        importance_sampled_update(
            model,  # type: ignore[arg-type]
            data.take(rows),
            NarrowPolicy(),  # type: ignore[arg-type]
            BehaviorModel("logged"),
            rule,
            1024,
            g,
        )
    after = pi_error(model)
    if improves:
        assert after < 0.1 * before, (before, after)
    else:
        assert after > 0.8 * before, (before, after)
