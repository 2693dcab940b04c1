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
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from adept.agents.base import Agent, AgentSpec, adam
from adept.data.buffer import Batch
from adept.nets import EnsembleQ, TanhGaussianActor, soft_update


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
        self.log_alpha = nn.Parameter(torch.tensor(math.log(c.init_alpha), device=self.device))
        self.target_entropy = -float(act_dim) if c.target_entropy is None else c.target_entropy
        self.actor_opt = adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), c.critic_lr)
        self.alpha_opt = adam([self.log_alpha], c.alpha_lr)
        # an nn.Module wrapper so log α saves and loads like the networks
        self._alpha_holder = nn.ParameterDict({"log_alpha": self.log_alpha})

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

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        obs, act = batch.observations, batch.actions
        alpha = self.log_alpha.exp().detach()

        # 1. critics
        with torch.no_grad():
            next_act, next_log_prob = self.actor.rsample(batch.next_observations)
            next_q = self.critic_target(batch.next_observations, next_act).min(0).values
            soft_value = next_q - alpha * next_log_prob  # [batch]
            td_target = batch.rewards + c.gamma * (1.0 - batch.terminals) * soft_value
        q = self.critic(obs, act)  # [2, batch]
        critic_loss = F.mse_loss(q, td_target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        # 2. actor; the critics are frozen so this backward pass skips their weight gradients
        new_act, log_prob = self.actor.rsample(obs)
        self.critic.requires_grad_(False)
        q_new = self.critic(obs, new_act).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (alpha * log_prob - q_new).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        # 3. temperature
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        # 4. target critics
        soft_update(self.critic_target, self.critic, c.tau)

        return {
            "train/q_loss": critic_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/alpha_loss": alpha_loss.detach(),
            "train/alpha": alpha,
            "train/entropy": -log_prob.detach().mean(),
            "train/q_mean": q.detach().mean(),
        }
