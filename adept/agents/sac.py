"""Soft Actor-Critic (Haarnoja et al. 2018, "SAC: Algorithms and Applications"), run offline.

Offline, SAC simply trains on dataset batches with no behaviour regularization; the ADEPT paper
runs it this way (it fails on medium data without a world model, which is the point). One update:

1. Critics (SAC eq. 5 with twin critics): a′ ~ π(·|s′),
   y = r + γ (1 − d) (min_i Q̄_i(s′, a′) − α log π(a′|s′)),  L_Q = mean_i E[(Q_i(s, a) − y)²].
2. Actor (eq. 7, reparameterized): L_π = E[α log π(ã|s) − min_i Q_i(s, ã)], ã ~ π(·|s).
3. Temperature (eq. 18): L_α = −E[log α · (log π(ã|s) + H̄)], target entropy H̄ = −|A|.
4. Polyak update of the target critics.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adept.agents.base import Agent, AgentSpec, Phase, adam
from adept.data.buffer import Batch
from adept.nets import EnsembleQ, TanhGaussianActor


@dataclass(frozen=True)
class SACConfig:
    """SAC hyper-parameters (the SAC paper's, shared by all environments)."""

    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    actor_lr: float = 3e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    alpha_lr: float = 3e-4
    """Learning rate of log α."""
    init_alpha: float = 1.0
    """Initial entropy temperature α."""
    target_entropy: float | None = None
    """Target entropy H̄; None means −|A| (the paper's heuristic)."""
    hidden: int = 256
    """Width of every network."""
    depth: int = 2
    """Hidden layers of every network."""


class SAC(Agent):
    name = "sac"
    options_type = SACConfig
    label = "SAC"

    def __init__(self, spec: AgentSpec, config: SACConfig = SACConfig()):
        self.config = config
        self.device = spec.device
        c = config
        obs_dim, act_dim, norm = spec.obs_dim, spec.act_dim, spec.normalizer
        self.actor: TanhGaussianActor = TanhGaussianActor(
            obs_dim, act_dim, norm(), c.hidden, c.depth
        ).to(self.device)
        self.critic = EnsembleQ(obs_dim, act_dim, norm(), c.hidden, c.depth).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        # an nn.Module holder so log α saves, loads and packs (adept.accel.pack) like the networks
        self._alpha_holder = nn.ParameterDict(
            {"log_alpha": nn.Parameter(torch.tensor(math.log(c.init_alpha), device=self.device))}
        )
        self.target_entropy = -float(act_dim) if c.target_entropy is None else c.target_entropy
        self.actor_opt = adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), c.critic_lr)
        self.alpha_opt = adam(self._alpha_holder.parameters(), c.alpha_lr)

    @property
    def log_alpha(self) -> torch.Tensor:
        return self._alpha_holder["log_alpha"]

    def components(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "log_alpha": self._alpha_holder,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "alpha_opt": self.alpha_opt,
        }

    def draw(self, batch: Batch) -> dict[str, torch.Tensor]:
        # the reparameterization noise of the next-state and the current-state actions
        shape = batch.actions.shape
        device = batch.actions.device
        return {"next": torch.randn(shape, device=device), "now": torch.randn(shape, device=device)}

    def phases(self) -> list[Phase]:
        return [
            Phase(self.critic_loss, ("critic",), ("critic_opt",)),
            # the actor and temperature losses train disjoint parameters and read each other
            # only detached: one backward pass; the critic (just stepped) is frozen
            Phase(self.actor_loss, ("actor", "log_alpha"), ("actor_opt", "alpha_opt")),
        ]

    def targets(self) -> list[tuple[str, str, float]]:
        return [("critic_target", "critic", self.config.tau)]

    def critic_loss(
        self, batch: Batch, noise: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        with torch.no_grad():
            alpha = self.log_alpha.exp()
            next_act, next_log_prob = self.actor.rsample(batch.next_observations, noise["next"])
            next_q = self.critic_target(batch.next_observations, next_act).min(0).values
            soft_value = next_q - alpha * next_log_prob  # [batch]
            td_target = batch.rewards + c.gamma * (1.0 - batch.terminals) * soft_value
        q = self.critic(batch.observations, batch.actions)  # [2, batch]
        critic_loss = F.mse_loss(q, td_target.expand_as(q))
        return critic_loss, {
            "train/q_loss": critic_loss.detach(),
            "train/q_mean": q.detach().mean(),
        }

    def actor_loss(
        self, batch: Batch, noise: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        obs = batch.observations
        alpha = self.log_alpha.exp().detach()
        new_act, log_prob = self.actor.rsample(obs, noise["now"])
        q_new = self.critic(obs, new_act).min(0).values
        actor_loss = (alpha * log_prob - q_new).mean()
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        return actor_loss + alpha_loss, {
            "train/actor_loss": actor_loss.detach(),
            "train/alpha_loss": alpha_loss.detach(),
            "train/alpha": alpha,
            "train/entropy": -log_prob.detach().mean(),
        }
