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
from adept.world_model import WorldModel


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
    n = len(start_obs)
    device = start_obs.device
    obs = start_obs
    alive = torch.arange(n, device=device)  # indices of live trajectories
    returns = torch.zeros(n, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    chunks: list[Batch] = []
    spreads: list[torch.Tensor] = []
    for h in range(horizon):
        act = agent.sample_actions(obs, deterministic=deterministic)  # [live, act_dim]
        live = len(obs)
        if caution.samples > 1:
            draws = world_model.dynamics.sample(
                obs.repeat(caution.samples, 1), act.repeat(caution.samples, 1)
            ).view(caution.samples, live, -1)
            next_obs, spread = draws[0], draws.std(0).norm(dim=-1)  # [live, obs_dim], [live]
            spreads.append(spread)
        else:
            next_obs, spread = world_model.dynamics.sample(obs, act), None
        if bounds is not None:
            next_obs = torch.maximum(torch.minimum(next_obs, bounds.state_high), bounds.state_low)
        reward, logit = world_model.reward(obs, act, next_obs)
        done = logit > 0
        if bounds is not None:
            reward = reward.clamp(bounds.reward_low, bounds.reward_high)
        timeout = ~done if h == horizon - 1 else torch.zeros_like(done)
        if spread is not None:
            reward = reward - caution.penalty * spread
            if caution.stop_above is not None:
                timeout |= ~done & (spread > caution.stop_above)
        chunks.append(
            Batch(
                observations=obs,
                actions=act,
                rewards=reward,
                next_observations=next_obs,
                terminals=done.float(),
                timeouts=timeout.float(),
            )
        )
        returns.index_add_(0, alive, reward)
        lengths.index_add_(0, alive, torch.ones_like(alive))
        keep = ~(done | timeout)
        alive, obs = alive[keep], next_obs[keep]
        if len(alive) == 0:
            break
    uncertainty = torch.cat(spreads).mean() if spreads else None
    return RolloutResult(Batch.cat(chunks), returns, lengths, uncertainty)
