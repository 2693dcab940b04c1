"""TD3+BC (Fujimoto & Gu, NeurIPS 2021): TD3 with a behaviour-cloning term in the actor loss.

1. Critics (TD3): a′ = clip(π̄(s′) + clip(ε, −c, c), −1, 1), ε ~ N(0, σ²),
   y = r + γ (1 − d) min_i Q̄_i(s′, a′),  L_Q = mean_i E[(Q_i(s, a) − y)²].
2. Every ``policy_freq`` steps, actor (TD3+BC eq. 3):
   L_π = −λ E[Q_1(s, π(s))] + E[(π(s) − a)²],  λ = α / E|Q_1(s, π(s))| (no gradient), α = 2.5;
   then Polyak updates of the target actor and critics.

The actor is deterministic. Its ``log_prob`` is the density of TD3's exploration policy
N(π(s), σ_expl²) (σ_expl = 0.1), the stochastic policy TD3 would act with; deterministic
evaluation uses π(s).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from adept.agents.base import Agent, AgentSpec, Phase, adam
from adept.data.buffer import Batch
from adept.nets import DeterministicActor, EnsembleQ


@dataclass(frozen=True)
class TD3BCConfig:
    """TD3+BC hyper-parameters (the paper's, shared by all environments)."""

    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target networks."""
    alpha: float = 2.5
    """Weight α of the Q term relative to behaviour cloning."""
    policy_noise: float = 0.2
    """Std of the target-policy smoothing noise."""
    noise_clip: float = 0.5
    """Clip of the target-policy smoothing noise."""
    policy_freq: int = 2
    """Actor and target updates happen every ``policy_freq`` critic updates."""
    exploration_noise: float = 0.1
    """Std of the exploration Gaussian that defines ``log_prob`` and stochastic acting."""
    actor_lr: float = 3e-4
    """Actor learning rate."""
    critic_lr: float = 3e-4
    """Critic learning rate."""
    hidden: int = 256
    """Width of every network."""
    depth: int = 2
    """Hidden layers of every network."""


class TD3BC(Agent):
    name = "td3bc"
    options_type = TD3BCConfig
    label = "TD3+BC"

    def __init__(self, spec: AgentSpec, config: TD3BCConfig = TD3BCConfig()):
        self.config = config
        self.device = spec.device
        c = config
        obs_dim, act_dim, norm = spec.obs_dim, spec.act_dim, spec.normalizer
        self.actor: DeterministicActor = DeterministicActor(
            obs_dim, act_dim, norm(), c.hidden, c.depth, noise=c.exploration_noise
        ).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic = EnsembleQ(obs_dim, act_dim, norm(), c.hidden, c.depth).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), c.critic_lr)
        self.updates = 0

    def components(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "actor_target": self.actor_target,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.updates = int(state["updates"])

    def draw(self, batch: Batch) -> dict[str, torch.Tensor]:
        # target-policy smoothing noise, N(0, σ²) clipped
        c = self.config
        noise = torch.randn_like(batch.actions) * c.policy_noise
        return {"smoothing": noise.clamp(-c.noise_clip, c.noise_clip)}

    def _actor_turn(self) -> bool:
        """Whether the next update is one of the delayed actor and target updates."""
        return (self.updates + 1) % self.config.policy_freq == 0

    def phases(self) -> list[Phase]:
        critic = Phase(self.critic_loss, ("critic",), ("critic_opt",))
        if not self._actor_turn():
            return [critic]
        # the actor reads the critic just stepped, frozen
        return [critic, Phase(self.actor_loss, ("actor",), ("actor_opt",))]

    def targets(self) -> list[tuple[str, str, float]]:
        if not self._actor_turn():
            return []
        tau = self.config.tau
        return [("critic_target", "critic", tau), ("actor_target", "actor", tau)]

    def advance(self) -> None:
        self.updates += 1

    def critic_loss(
        self, batch: Batch, noise: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """1. critics, with target-policy smoothing."""
        c = self.config
        with torch.no_grad():
            next_act = self.actor_target(batch.next_observations) + noise["smoothing"]
            next_act = next_act.clamp(-1.0, 1.0)
            next_q = self.critic_target(batch.next_observations, next_act).min(0).values
            td_target = batch.rewards + c.gamma * (1.0 - batch.terminals) * next_q
        q = self.critic(batch.observations, batch.actions)  # [2, batch]
        critic_loss = F.mse_loss(q, td_target.expand_as(q))
        metrics = {"train/q_loss": critic_loss.detach(), "train/q_mean": q.detach().mean()}
        return critic_loss, metrics

    def actor_loss(
        self, batch: Batch, noise: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """2. the delayed actor: λ-scaled Q plus behaviour cloning."""
        obs, act = batch.observations, batch.actions
        pi = self.actor(obs)
        q_pi = self.critic(obs, pi)[0]  # Q_1 only, as in the paper
        lam = self.config.alpha / q_pi.abs().mean().detach()
        bc_loss = F.mse_loss(pi, act)
        actor_loss = -lam * q_pi.mean() + bc_loss
        return actor_loss, {
            "train/actor_loss": actor_loss.detach(),
            "train/bc_loss": bc_loss.detach(),
        }
