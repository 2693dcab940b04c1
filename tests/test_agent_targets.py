"""The agents' learning equations, pinned: each loss an agent's phase computes on one small batch
equals the loss written out here by hand from the same networks' outputs, and each critic, trained
on a tiny MDP, reaches that MDP's known value.

The hand computations read the agents' networks only as functions (their forward passes); every
target, minimum, clip, discount and density is written out again here, so a wrong sign, a
missing γ, ``timeouts`` in place of ``terminals``, a lost minimum over the twins, a lost entropy
term or a lost clip changes a number these tests compare.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from adept.agents import (
    BC,
    IQL,
    SAC,
    TD3BC,
    Agent,
    AgentSpec,
    BCConfig,
    IQLConfig,
    SACConfig,
    TD3BCConfig,
)
from adept.data.buffer import Batch

OBS, ACT, ROWS = 3, 2, 6
# γ far from 1, so that a dropped discount moves a target by a tenth of the bootstrap, not 1 %
GAMMA = 0.9
# IQL's rewards are scaled by 1000 / return range: 2 here, so a dropped scaling shows
RETURN_RANGE = 500.0
REWARD_SCALE = 1000.0 / RETURN_RANGE


def make_spec(obs_dim: int = OBS, act_dim: int = ACT) -> AgentSpec:
    return AgentSpec(
        obs_dim=obs_dim,
        act_dim=act_dim,
        obs_mean=torch.full((obs_dim,), 0.2),
        obs_std=torch.full((obs_dim,), 1.5),
        return_range=RETURN_RANGE,
        num_steps=1000,
        device=torch.device("cpu"),
    )


def target_batch() -> Batch:
    """Six transitions: row 0 ends in a terminal, row 1 is cut by a timeout only, so a target
    that reads ``timeouts`` for ``terminals`` differs on both rows."""
    g = torch.Generator().manual_seed(0)
    return Batch(
        observations=torch.randn(ROWS, OBS, generator=g),
        actions=torch.rand(ROWS, ACT, generator=g) * 1.8 - 0.9,
        rewards=torch.randn(ROWS, generator=g),
        next_observations=torch.randn(ROWS, OBS, generator=g),
        terminals=torch.tensor([1.0, 0, 0, 0, 0, 0]),
        timeouts=torch.tensor([0.0, 1, 0, 0, 0, 0]),
    )


def perturb(module: nn.Module, seed: int) -> None:
    """Move a target network off its online copy (they start equal), so that a loss reading
    the online network where the equation names the target one gives another number."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=g))


def phase_losses(
    agent: Agent, batch: Batch, noise: Mapping[str, torch.Tensor]
) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Each phase of the agent's next update, by its loss's name: ``(loss, metrics)`` as
    :meth:`Agent.step` computes them (before any of the update's optimizer steps)."""
    return {phase.loss.__name__: phase.loss(batch, noise) for phase in agent.phases()}


def gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
) -> torch.Tensor:
    """log N(x; μ, diag(σ²)) summed over action dimensions, by torch.distributions."""
    return Normal(mean, log_std.exp()).log_prob(x).sum(-1)


def tanh_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """a = tanh(u), u = μ + σ ε, and log π(a|s) = log N(u; μ, σ²) − Σ log(1 − tanh²(u)) (SAC
    appendix C, eq. 21), in float64 from the actor's float32 outputs."""
    mean, log_std, eps = mean.double(), log_std.double(), eps.double()
    u = mean + eps * log_std.exp()
    log_det = torch.log1p(-(torch.tanh(u) ** 2)).sum(-1)
    log_prob = gaussian_log_likelihood(u, mean, log_std) - log_det
    return torch.tanh(u).float(), log_prob.float()


def cross_twins(
    critic: nn.Module, obs: torch.Tensor, act: torch.Tensor, level: float = 0.0
) -> None:
    """Shift each twin's output bias so that both average ``level`` on ``(obs, act)``. At
    initialization the twins differ mostly by their biases, so one is the smaller on every row;
    twins of equal mean that are not equal are each the smaller somewhere."""
    with torch.no_grad():
        q = critic(obs, act)
        critic.net[-1].bias.add_((level - q.mean(1)).view(-1, 1, 1))


def twins_disagree(q: torch.Tensor) -> bool:
    """Whether each twin is the smaller on some row: then min_i Q_i equals neither twin, and a
    target without the minimum (Q_1, Q_2 or their mean) differs from it."""
    return bool((q[0] < q[1]).any() and (q[0] > q[1]).any())


def assert_loss(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected.to(actual.dtype), rtol=1e-5, atol=1e-6)


# --- IQL -------------------------------------------------------------------------------------


def iql_agent(temperature: float = 3.0) -> IQL:
    torch.manual_seed(0)
    agent = IQL(make_spec(), IQLConfig(gamma=GAMMA, hidden=16, temperature=temperature))
    perturb(agent.critic_target, seed=1)
    with torch.no_grad():
        # σ ≠ 1 (it starts at 1): a log-density that drops log σ or the 1/σ of z differs
        agent.actor.log_std.copy_(torch.tensor([-0.3, 0.4]))
    batch = target_batch()
    # values of a few units: a dropped γ or a dropped bootstrap moves the Q target visibly
    cross_twins(agent.critic_target, batch.observations, batch.actions, level=3.0)
    with torch.no_grad():
        u = agent.critic_target(batch.observations, batch.actions).min(0).values
        u = u - agent.value(batch.observations)
        # advantages centred on 0: the expectile weights τ and 1 − τ both enter the value loss
        agent.value.net[-1].bias.add_(u.mean())
    return agent


def iql_hand_losses(agent: IQL, batch: Batch) -> dict[str, torch.Tensor]:
    c = agent.config
    obs, act = batch.observations, batch.actions
    with torch.no_grad():
        target_q = agent.critic_target(obs, act)
        assert twins_disagree(target_q)
        u = target_q.min(0).values - agent.value(obs)
        value = ((c.expectile - (u < 0).float()).abs() * u**2).mean()
        weights = torch.exp(c.temperature * u).clamp(max=100.0)
        mean, log_std = agent.actor(obs)
        actor = -(weights * gaussian_log_likelihood(act, mean, log_std)).mean()
        next_v = agent.value(batch.next_observations)
        y = REWARD_SCALE * batch.rewards + c.gamma * (1.0 - batch.terminals) * next_v
        q = agent.critic(obs, act)
        critic = ((q - y) ** 2).mean()
    return {"u": u, "weights": weights, "value": value, "actor": actor, "critic": critic}


def test_iql_value_loss_is_expectile_regression_towards_min_target_twin():
    """IQL eq. (5): L_V = E[|τ − 1(u < 0)| u²], u = min_i Q̄_i(s, a) − V(s), τ = 0.7."""
    agent, batch = iql_agent(), target_batch()
    hand = iql_hand_losses(agent, batch)
    assert (hand["u"] > 0).any() and (hand["u"] < 0).any()
    (_, metrics) = phase_losses(agent, batch, agent.draw(batch))["losses"]
    assert_loss(metrics["train/value_loss"], hand["value"])


def test_iql_critic_loss_bootstraps_scaled_reward_through_terminals_only():
    """IQL eq. (6): L_Q = mean_i E[(r̃ + γ (1 − d) V(s′) − Q_i(s, a))²], r̃ = r · 1000 / (max −
    min episode return), d the terminal flag (a timeout still bootstraps)."""
    agent, batch = iql_agent(), target_batch()
    hand = iql_hand_losses(agent, batch)
    (_, metrics) = phase_losses(agent, batch, agent.draw(batch))["losses"]
    assert_loss(metrics["train/q_loss"], hand["critic"])


def test_iql_actor_loss_is_advantage_weighted_with_weights_clipped_at_100():
    """IQL eq. (7): L_π = −E[min(exp(β u), 100) · log π(a|s)], u = min_i Q̄_i(s, a) − V(s),
    π(a|s) = N(a; μ(s), σ²); β is set so that some rows' weights clip and others do not."""
    beta = 2 * math.log(100.0) / iql_hand_losses(iql_agent(), target_batch())["u"].max().item()
    agent, batch = iql_agent(temperature=beta), target_batch()
    hand = iql_hand_losses(agent, batch)
    exponent = beta * hand["u"]
    assert (exponent > math.log(100.0)).any() and (exponent < math.log(100.0)).any()
    (_, metrics) = phase_losses(agent, batch, agent.draw(batch))["losses"]
    assert_loss(metrics["train/actor_loss"], hand["actor"])
    assert_loss(metrics["train/adv_weight_mean"], hand["weights"].mean())


def test_iql_phase_loss_is_the_sum_of_its_three_losses():
    """IQL's one phase back-propagates L_V + L_π + L_Q: the three train disjoint networks, so
    each network gets the gradient of its own loss only if all three are in the sum."""
    agent, batch = iql_agent(), target_batch()
    hand = iql_hand_losses(agent, batch)
    (loss, _) = phase_losses(agent, batch, agent.draw(batch))["losses"]
    assert_loss(loss.detach(), hand["value"] + hand["actor"] + hand["critic"])


# --- SAC -------------------------------------------------------------------------------------


def sac_agent() -> SAC:
    torch.manual_seed(0)
    # α ≠ 1: an entropy term that lost its α (or used log α) differs
    agent = SAC(make_spec(), SACConfig(gamma=GAMMA, hidden=16, init_alpha=0.3))
    perturb(agent.critic_target, seed=1)
    return agent


def test_sac_critic_loss_has_soft_min_twin_target():
    """SAC eq. (5), twin critics: a′ = tanh(μ(s′) + σ(s′) ε), ε the update's drawn noise,
    y = r + γ (1 − d) (min_i Q̄_i(s′, a′) − α log π(a′|s′)), L_Q = mean_i E[(Q_i(s, a) − y)²]."""
    agent, batch = sac_agent(), target_batch()
    torch.manual_seed(1)
    noise = agent.draw(batch)
    with torch.no_grad():
        alpha = 0.3
        next_mean, next_log_std = agent.actor(batch.next_observations)
        next_act, next_log_prob = tanh_gaussian(next_mean, next_log_std, noise["next"])
        cross_twins(agent.critic_target, batch.next_observations, next_act)
        next_q = agent.critic_target(batch.next_observations, next_act)
        assert twins_disagree(next_q)
        soft_value = next_q.min(0).values - alpha * next_log_prob
        y = batch.rewards + GAMMA * (1.0 - batch.terminals) * soft_value
        expected = ((agent.critic(batch.observations, batch.actions) - y) ** 2).mean()
    (_, metrics) = phase_losses(agent, batch, noise)["critic_loss"]
    assert_loss(metrics["train/q_loss"], expected)


def test_sac_actor_and_temperature_losses():
    """SAC eq. (7): L_π = E[α log π(ã|s) − min_i Q_i(s, ã)], ã = tanh(μ(s) + σ(s) ε);
    eq. (18): L_α = −E[log α · (log π(ã|s) + H̄)], H̄ = −|A|; one phase, loss L_π + L_α."""
    agent, batch = sac_agent(), target_batch()
    torch.manual_seed(1)
    noise = agent.draw(batch)
    with torch.no_grad():
        alpha = 0.3
        act, log_prob = tanh_gaussian(*agent.actor(batch.observations), noise["now"])
        cross_twins(agent.critic, batch.observations, act)
        q = agent.critic(batch.observations, act)
        assert twins_disagree(q)
        actor = (alpha * log_prob - q.min(0).values).mean()
        temperature = -(math.log(alpha) * (log_prob - ACT)).mean()
    (loss, metrics) = phase_losses(agent, batch, noise)["actor_loss"]
    assert_loss(metrics["train/actor_loss"], actor)
    assert_loss(metrics["train/alpha_loss"], temperature)
    assert_loss(loss.detach(), actor + temperature)


# --- TD3+BC ----------------------------------------------------------------------------------

# σ and c such that the smoothing noise clips on some draws and not on others
POLICY_NOISE, NOISE_CLIP = 0.5, 0.3


def td3bc_agent() -> TD3BC:
    torch.manual_seed(0)
    config = TD3BCConfig(gamma=GAMMA, hidden=16, policy_noise=POLICY_NOISE, noise_clip=NOISE_CLIP)
    agent = TD3BC(make_spec(), config)
    perturb(agent.critic_target, seed=1)
    perturb(agent.actor_target, seed=2)
    with torch.no_grad():
        # target actions near ±0.9: the smoothed action leaves [−1, 1] on some rows
        agent.actor_target.net[-1].bias.add_(torch.tensor([1.5, -1.5]))
    return agent


def test_td3bc_critic_loss_has_smoothed_min_twin_target():
    """TD3: a′ = clip(π̄(s′) + clip(σ ε, −c, c), −1, 1), ε ~ N(0, 1) from the seeded global
    RNG, y = r + γ (1 − d) min_i Q̄_i(s′, a′), L_Q = mean_i E[(Q_i(s, a) − y)²]."""
    agent, batch = td3bc_agent(), target_batch()
    torch.manual_seed(1)
    noise = agent.draw(batch)
    torch.manual_seed(1)
    raw = POLICY_NOISE * torch.randn(ROWS, ACT)
    assert (raw.abs() > NOISE_CLIP).any() and (raw.abs() < NOISE_CLIP).any()
    with torch.no_grad():
        smoothed = agent.actor_target(batch.next_observations) + raw.clamp(-NOISE_CLIP, NOISE_CLIP)
        assert (smoothed.abs() > 1).any()
        next_act = smoothed.clamp(-1.0, 1.0)
        cross_twins(agent.critic_target, batch.next_observations, next_act)
        next_q = agent.critic_target(batch.next_observations, next_act)
        assert twins_disagree(next_q)
        y = batch.rewards + GAMMA * (1.0 - batch.terminals) * next_q.min(0).values
        expected = ((agent.critic(batch.observations, batch.actions) - y) ** 2).mean()
    (_, metrics) = phase_losses(agent, batch, noise)["critic_loss"]
    assert_loss(metrics["train/q_loss"], expected)


def test_td3bc_actor_loss_is_lambda_scaled_q_plus_behaviour_cloning():
    """TD3+BC eq. (3): L_π = −λ E[Q_1(s, π(s))] + E[(π(s) − a)²], λ = α / E|Q_1(s, π(s))|,
    α = 2.5, on the delayed actor's turn (every second update)."""
    agent, batch = td3bc_agent(), target_batch()
    with torch.no_grad():
        pi = agent.actor(batch.observations)
    # The Q term is −α E[Q_1] / E|Q_1|: one number for any Q of one sign, so Q_1 gets both signs
    # (its mean a quarter of its spread) for the term to tell Q_1 from min_i Q_i and λ's |·|.
    cross_twins(agent.critic, batch.observations, pi)
    with torch.no_grad():
        spread = agent.critic(batch.observations, pi)[0].abs().mean().item()
    cross_twins(agent.critic, batch.observations, pi, level=spread / 4)
    agent.advance()
    losses = phase_losses(agent, batch, agent.draw(batch))
    assert set(losses) == {"critic_loss", "actor_loss"}
    (loss, metrics) = losses["actor_loss"]
    with torch.no_grad():
        pi = agent.actor(batch.observations)
        q = agent.critic(batch.observations, pi)
        assert twins_disagree(q) and (q[0] < 0).any() and (q[0] > 0).any()
        lam = 2.5 / q[0].abs().mean()
        bc = ((pi - batch.actions) ** 2).mean()
        expected = -lam * q[0].mean() + bc
    assert_loss(metrics["train/bc_loss"], bc)
    assert_loss(metrics["train/actor_loss"], expected)
    assert_loss(loss.detach(), expected)


# --- BC --------------------------------------------------------------------------------------


def test_bc_loss_is_gaussian_negative_log_likelihood():
    """BC: L = −E[log N(a; μ(s), diag(σ(s)²))], μ(s) = tanh(·) of the network's mean head."""
    torch.manual_seed(0)
    agent, batch = BC(make_spec(), BCConfig(hidden=16)), target_batch()
    (loss, metrics) = phase_losses(agent, batch, agent.draw(batch))["loss"]
    with torch.no_grad():
        mean, log_std = agent.actor(batch.observations)
        assert (log_std != 0).all()
        expected = -gaussian_log_likelihood(batch.actions, mean, log_std).mean()
    assert_loss(loss.detach(), expected)
    assert_loss(metrics["train/actor_loss"], expected)


# --- Critics on a tiny MDP with known values -------------------------------------------------

# The chain: A → B (reward 1), B → terminal (reward −1), C → C (reward 1, every step cut by a
# timeout, which bootstraps all the same). Rewards do not depend on the action, so Q(s, ·) is
# one number per state: Q(B) = −1, Q(A) = 1 + γ V(B), Q(C) = 1 / (1 − γ) (+ entropy for SAC).
CHAIN_GAMMA = 0.5
STATES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
NEXT_STATES = torch.tensor([[0.0, 1.0], [3.0, 3.0], [-1.0, -1.0]])


@pytest.fixture
def one_thread() -> Iterator[None]:
    # networks of width 32: extra threads only add synchronisation, which on a busy 2-core
    # machine costs more than the arithmetic
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def chain_batch(actions_per_state: int) -> Batch:
    """Every state of the chain with ``actions_per_state`` actions spread over [−0.9, 0.9]:
    one action for IQL's in-sample learning, many for SAC and TD3+BC, whose targets query the
    critic at the policy's actions."""
    k = actions_per_state
    actions = torch.linspace(-0.9, 0.9, k) if k > 1 else torch.zeros(1)

    def rows(x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(k, 0)

    return Batch(
        observations=rows(STATES),
        actions=actions.repeat(3)[:, None],
        rewards=rows(torch.tensor([1.0, -1.0, 1.0])),
        next_observations=rows(NEXT_STATES),
        terminals=rows(torch.tensor([0.0, 1.0, 0.0])),
        timeouts=rows(torch.tensor([0.0, 0.0, 1.0])),
    )


def chain_spec() -> AgentSpec:
    return AgentSpec(
        obs_dim=2,
        act_dim=1,
        obs_mean=torch.zeros(2),
        obs_std=torch.ones(2),
        return_range=RETURN_RANGE,
        num_steps=10_000,
        device=torch.device("cpu"),
    )


def critic_by_state(agent: Agent, batch: Batch) -> torch.Tensor:
    """Q at the dataset's (s, a), averaged over each state's actions and both twins: ``[3]``."""
    with torch.no_grad():
        return agent.critic(batch.observations, batch.actions).mean(0).view(3, -1).mean(1)


@pytest.mark.slow
def test_iql_critic_reaches_the_chain_value(one_thread):
    """With one action per state the expectile of Q̄(s, ·) is Q̄(s, a) itself, so IQL's fixed
    point is the Monte-Carlo value in its reward units, r̃ = 2 r (1000 / return range 500):
    Q(A) = V(A) = 2 + γ · (−2) = 1, Q(B) = V(B) = −2, Q(C) = V(C) = 2 / (1 − γ) = 4."""
    torch.manual_seed(0)
    config = IQLConfig(gamma=CHAIN_GAMMA, tau=0.1, critic_lr=3e-3, hidden=32)
    agent, batch = IQL(chain_spec(), config), chain_batch(1)
    for _ in range(400):
        agent.update(batch)
    expected = torch.tensor([1.0, -2.0, 4.0])
    torch.testing.assert_close(critic_by_state(agent, batch), expected, rtol=0, atol=0.02)
    with torch.no_grad():
        torch.testing.assert_close(agent.value(STATES), expected, rtol=0, atol=0.02)


@pytest.mark.slow
def test_sac_critic_reaches_the_soft_chain_value(one_thread):
    """Soft policy evaluation of the fixed actor (its and α's learning rates 0, α = 1):
    V(s) = E_π[Q(s, a) − α log π(a|s)] = Q(s) + α H_s, so Q(B) = −1, Q(A) = 1 + γ (−1 + α H_B),
    Q(C) = (1 + γ α H_C) / (1 − γ); H_s = −E[log π(a|s)] by Monte Carlo over 200 000 draws."""
    torch.manual_seed(0)
    config = SACConfig(
        gamma=CHAIN_GAMMA,
        tau=0.1,
        critic_lr=3e-3,
        actor_lr=0.0,
        alpha_lr=0.0,
        init_alpha=1.0,
        hidden=32,
    )
    agent, batch = SAC(chain_spec(), config), chain_batch(16)
    for _ in range(400):
        agent.update(batch)
    # each step's target carries one sampled −α log π(a′|s′) per row; the critic's average over
    # 200 more steps is its fixed point, without that sampling noise (±0.05 at one step)
    q = torch.zeros(3)
    for _ in range(200):
        agent.update(batch)
        q += critic_by_state(agent, batch) / 200
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        mean, log_std = agent.actor(STATES[1:])
        eps = torch.randn(200_000, 2, 1, generator=g)
        entropy = -tanh_gaussian(mean, log_std, eps)[1].mean(0)
    h_b, h_c = entropy.tolist()
    gamma = CHAIN_GAMMA
    expected = torch.tensor([1 + gamma * (-1 + h_b), -1.0, (1 + gamma * h_c) / (1 - gamma)])
    # the entropy bonus is γ α H ≈ 0.3 at A and 2 γ α H ≈ 0.6 at C: far outside the tolerance
    assert min(gamma * h_b, 2 * gamma * h_c) > 0.2
    torch.testing.assert_close(q, expected, rtol=0, atol=0.04)


@pytest.mark.slow
def test_td3bc_critic_reaches_the_chain_value(one_thread):
    """TD3+BC's critic, whatever its actor: Q(A) = 1 + γ · (−1) = 0.5, Q(B) = −1,
    Q(C) = 1 / (1 − γ) = 2 (the rewards do not depend on the action, so neither does the
    smoothed target)."""
    torch.manual_seed(0)
    config = TD3BCConfig(gamma=CHAIN_GAMMA, tau=0.1, critic_lr=3e-3, hidden=32)
    agent, batch = TD3BC(chain_spec(), config), chain_batch(16)
    for _ in range(400):
        agent.update(batch)
    expected = torch.tensor([0.5, -1.0, 2.0])
    torch.testing.assert_close(critic_by_state(agent, batch), expected, rtol=0, atol=0.02)
