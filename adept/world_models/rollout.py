"""Policy evaluation in the world model: batched imagined rollouts of the current policy.

Start states are drawn uniformly from the dataset (any step of any episode). For h = 0..H−1:
a ~ π(·|s); s′ ~ p_θ(·|s, a), clipped to the dataset's per-dimension range; (r̂, d̂) =
r_φ(s, a, s′) of that stored s′, r̂ clipped to the dataset's reward range. Reward and terminal
are predicted from the s′ the agent will see, so a transition is consistent with itself.
Without bounds (the clipping ablation) nothing is clipped. A trajectory stops when d̂ is true
(stored as a terminal) or at the horizon (stored as a timeout, so the agent still bootstraps
there). Only live trajectories are stepped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adept.agents.base import Agent
from adept.data.buffer import Batch
from adept.data.transitions import DatasetStats
from adept.world_models.model import WorldModel


@dataclass(frozen=True)
class RolloutConfig:
    """Policy evaluation in the model: when rounds of imagined rollouts of π happen, how many
    and how long, and what they do with the model's uncertainty."""

    horizon: int = 10
    """H, imagined steps per rollout (the paper: 10)."""
    every: int = 1000
    """Agent steps between rounds (re-fit, then rollouts); the paper leaves it open
    (docs/adept-defaults.md: four times as often scored the same at more cost)."""
    start: int = 1000
    """Agent steps before the first round; until then the agent trains on real data only. 0
    rolls out the untrained π₀ at set-up, whose imagined data describe a policy that is gone
    after the first few hundred updates."""
    batch_size: int = 1024
    """Start states per round, drawn uniformly from D (≤ batch_size × horizon new rows)."""
    clip: bool = True
    """Clip generated next states and rewards to the dataset's per-dimension range (the paper's
    clipping ablation). Reward and terminal are predicted from the stored, clipped s′."""
    uncertainty_samples: int = 1
    """s′ samples per imagined step whose spread u = ‖std‖₂ measures the model's uncertainty
    (1: not measured; :class:`Caution`)."""
    uncertainty_penalty: float = 0.0
    """λ of the MOPO-style penalized reward r̂ − λ u (needs ``uncertainty_samples`` ≥ 2)."""
    uncertainty_stop: float | None = None
    """End an imagined trajectory (as a timeout) at a step whose u exceeds this."""

    def caution(self) -> Caution:
        """What a rollout does with the model's uncertainty, as set here."""
        return Caution(self.uncertainty_samples, self.uncertainty_penalty, self.uncertainty_stop)


@dataclass(frozen=True)
class RolloutResult:
    """Imagined transitions (flattened over time and trajectories) and per-trajectory totals."""

    transitions: Batch
    returns: torch.Tensor
    """Undiscounted imagined return per trajectory ``[num_starts]``."""
    lengths: torch.Tensor
    """Steps before termination or the horizon, per trajectory ``[num_starts]``."""
    uncertainty: torch.Tensor | None = None
    """Mean u over every imagined step (None when :class:`Caution` measured none)."""


class StateBounds:
    """Per-dimension [min, max] of states and rewards in the dataset, on a device."""

    def __init__(self, stats: DatasetStats, device: torch.device):
        def t(x: object) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=device)

        self.state_low, self.state_high = t(stats.states.min), t(stats.states.max)
        self.reward_low, self.reward_high = t(stats.rewards.min), t(stats.rewards.max)


@dataclass(frozen=True)
class Caution:
    """What a rollout does with the model's uncertainty u(s, a) = ‖std over M samples of s′‖₂
    (raw state units; the spread of the diffusion model's own samples, or of an ensemble's
    elites): subtract ``penalty`` · u from r̂ (MOPO's penalized reward, with the model's sample
    spread for its ensemble spread), and end a trajectory, as a timeout, at a step whose u
    exceeds ``stop_above`` (the horizon shrinks where the model is unsure). ``samples`` = 1
    measures nothing and does neither."""

    samples: int = 1
    penalty: float = 0.0
    stop_above: float | None = None


class Walker:
    """One batch of imagined trajectories, stepped by its caller: :meth:`query` gives the
    (s, a) rows whose s′ the world model must sample (π acts here, drawing from torch's RNG),
    :meth:`advance` takes those s′ and does the rest (clipping, r̂ and d̂, the stored chunk,
    which trajectories live on). :func:`rollout` steps one; :func:`rollout_stacked` steps
    several, one per seed, their s′ sampled as one computation."""

    def __init__(
        self,
        agent: Agent,
        world_model: WorldModel,
        start_obs: torch.Tensor,
        horizon: int,
        bounds: StateBounds | None,
        deterministic: bool,
        caution: Caution,
    ):
        n, device = len(start_obs), start_obs.device
        self.agent, self.world_model = agent, world_model
        self.horizon, self.bounds = horizon, bounds
        self.deterministic, self.caution = deterministic, caution
        self.h = 0
        self.obs = start_obs
        self.act: torch.Tensor | None = None
        self.alive = torch.arange(n, device=device)  # indices of live trajectories
        self.returns = torch.zeros(n, device=device)
        self.lengths = torch.zeros(n, dtype=torch.long, device=device)
        self.chunks: list[Batch] = []
        self.spreads: list[torch.Tensor] = []

    @property
    def done(self) -> bool:
        return self.h >= self.horizon or len(self.alive) == 0

    def query(self) -> tuple[torch.Tensor, torch.Tensor]:
        """π's actions at the live states; the (s, a) rows to sample s′ for (each repeated
        ``caution.samples`` times when the rollout measures the model's spread)."""
        act = self.agent.sample_actions(self.obs, deterministic=self.deterministic)
        self.act = act  # [live, act_dim]
        m = self.caution.samples
        return (self.obs.repeat(m, 1), act.repeat(m, 1)) if m > 1 else (self.obs, act)

    def advance(self, draws: torch.Tensor) -> None:
        """Take the sampled s′ of :meth:`query`'s rows and finish the step."""
        obs, act, bounds, caution = self.obs, self.act, self.bounds, self.caution
        assert act is not None
        live = len(obs)
        if caution.samples > 1:
            stacked = draws.view(caution.samples, live, -1)
            next_obs, spread = stacked[0], stacked.std(0).norm(dim=-1)  # [live, obs_dim], [live]
            self.spreads.append(spread)
        else:
            next_obs, spread = draws, None
        if bounds is not None:
            next_obs = torch.maximum(torch.minimum(next_obs, bounds.state_high), bounds.state_low)
        reward, logit = self.world_model.reward(obs, act, next_obs)
        done = logit > 0
        if bounds is not None:
            reward = reward.clamp(bounds.reward_low, bounds.reward_high)
        timeout = ~done if self.h == self.horizon - 1 else torch.zeros_like(done)
        if spread is not None:
            reward = reward - caution.penalty * spread
            if caution.stop_above is not None:
                timeout |= ~done & (spread > caution.stop_above)
        self.chunks.append(
            Batch(
                observations=obs,
                actions=act,
                rewards=reward,
                next_observations=next_obs,
                terminals=done.float(),
                timeouts=timeout.float(),
            )
        )
        self.returns.index_add_(0, self.alive, reward)
        self.lengths.index_add_(0, self.alive, torch.ones_like(self.alive))
        keep = ~(done | timeout)
        self.alive, self.obs = self.alive[keep], next_obs[keep]
        self.h += 1

    def result(self) -> RolloutResult:
        uncertainty = torch.cat(self.spreads).mean() if self.spreads else None
        return RolloutResult(Batch.cat(self.chunks), self.returns, self.lengths, uncertainty)


@torch.no_grad()
def rollout(
    agent: Agent,
    world_model: WorldModel,
    start_obs: torch.Tensor,
    horizon: int,
    bounds: StateBounds | None,
    deterministic: bool = False,
    caution: Caution = Caution(),
) -> RolloutResult:
    """Roll ``agent`` out in ``world_model`` from ``start_obs`` [N, obs_dim], ``horizon`` steps;
    ``bounds``: clip generated states and rewards to them (None: no clipping)."""
    walker = Walker(agent, world_model, start_obs, horizon, bounds, deterministic, caution)
    while not walker.done:
        walker.advance(world_model.dynamics.sample(*walker.query()))
    return walker.result()
