"""Implicit Q-Learning (Kostrikov, Nair & Levine, ICLR 2022).

One update, top to bottom:

1. Value, IQL eq. (5): L_V = E[L₂^τ(min_i Q̄_i(s, a) − V(s))], L₂^τ(u) = |τ − 1(u < 0)| u².
2. Actor, IQL eq. (7) (advantage-weighted regression):
   L_π = −E[exp(β (min_i Q̄_i(s, a) − V(s))) · log π(a|s)], the weight clipped at 100.
3. Critics, IQL eq. (6): L_Q = mean_i E[(r + γ (1 − d) V(s′) − Q_i(s, a))²].
4. Polyak update of the target critics, τ_polyak = 0.005.

Locomotion rewards are scaled by 1000 / (max − min episode return), as in the paper's code.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from adept.agents.base import Agent, AgentSpec, Phase, adam
from adept.data.buffer import Batch
from adept.nets import EnsembleQ, GaussianActor, ValueNet


@dataclass(frozen=True)
class IQLConfig:
    """IQL hyper-parameters (paper defaults for MuJoCo locomotion)."""

    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    expectile: float = 0.7
    """Expectile τ of the value loss."""
    temperature: float = 3.0
    """Inverse temperature β of the advantage weights."""
    max_exp_advantage: float = 100.0
    """Clip of exp(β · advantage)."""
    actor_lr: float = 3e-4
    """Actor learning rate (start of the cosine schedule)."""
    critic_lr: float = 3e-4
    """Learning rate of the Q and value networks."""
    actor_schedule: Literal["cosine", "constant"] = "cosine"
    """Actor learning-rate schedule over the run (the paper: cosine decay)."""
    hidden: int = 256
    """Width of every network."""
    depth: int = 2
    """Hidden layers of every network."""
    normalize_rewards: bool = True
    """Scale rewards by 1000 / (max − min episode return) (IQL's locomotion setting)."""


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """E[|τ − 1(u < 0)| u²] for u = ``diff`` (IQL eq. 5)."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.pow(2)).mean()


class IQL(Agent):
    name = "iql"
    options_type = IQLConfig
    label = "IQL"

    def __init__(self, spec: AgentSpec, config: IQLConfig = IQLConfig()):
        self.config = config
        self.device = spec.device
        c = config
        self.reward_scale = 1000.0 / max(spec.return_range, 1e-6) if c.normalize_rewards else 1.0
        obs_dim, act_dim, norm = spec.obs_dim, spec.act_dim, spec.normalizer
        self.actor = GaussianActor(obs_dim, act_dim, norm(), c.hidden, c.depth).to(self.device)
        self.critic = EnsembleQ(obs_dim, act_dim, norm(), c.hidden, c.depth).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.value = ValueNet(obs_dim, norm(), c.hidden, c.depth).to(self.device)
        self.actor_opt = adam(self.actor.parameters(), c.actor_lr)
        self.critic_opt = adam(self.critic.parameters(), c.critic_lr)
        self.value_opt = adam(self.value.parameters(), c.critic_lr)
        self.actor_sched: torch.optim.lr_scheduler.LRScheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_opt, T_max=max(spec.num_steps, 1))
            if c.actor_schedule == "cosine"
            else torch.optim.lr_scheduler.LambdaLR(self.actor_opt, lambda _: 1.0)
        )

    def components(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "value": self.value,
            "actor_opt": self.actor_opt,
            "critic_opt": self.critic_opt,
            "value_opt": self.value_opt,
            "actor_sched": self.actor_sched,
        }

    def phases(self) -> list[Phase]:
        # The three losses train disjoint networks and each reads the others only through
        # detached values computed before any step, so one backward pass gives each network
        # exactly the gradient of its own loss (the paper's three steps, in one pass).
        nets, optimizers = ("value", "actor", "critic"), ("value_opt", "actor_opt", "critic_opt")
        return [Phase(self.losses, nets, optimizers)]

    def targets(self) -> list[tuple[str, str, float]]:
        return [("critic_target", "critic", self.config.tau)]

    def advance(self) -> None:
        self.actor_sched.step()

    def losses(
        self, batch: Batch, noise: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.config
        obs, act = batch.observations, batch.actions
        rewards = batch.rewards * self.reward_scale

        with torch.no_grad():
            target_q = self.critic_target(obs, act).min(0).values  # [batch]
            next_v = self.value(batch.next_observations)  # [batch]

        # 1. value: expectile regression towards the target critics
        v = self.value(obs)  # [batch]
        advantage = target_q - v
        value_loss = expectile_loss(advantage, c.expectile)

        # 2. actor: advantage-weighted log-likelihood of dataset actions
        weights = torch.exp(c.temperature * advantage.detach()).clamp(max=c.max_exp_advantage)
        actor_loss = -(weights * self.actor.log_prob(obs, act)).mean()

        # 3. critics: one-step TD towards V(s'); terminals stop the bootstrap, timeouts do not
        td_target = rewards + c.gamma * (1.0 - batch.terminals) * next_v  # [batch]
        q = self.critic(obs, act)  # [2, batch]
        critic_loss = F.mse_loss(q, td_target.expand_as(q))  # mean over both critics

        # 4. (targets) the Polyak average of the target critics follows the steps
        return value_loss + actor_loss + critic_loss, {
            "train/value_loss": value_loss.detach(),
            "train/actor_loss": actor_loss.detach(),
            "train/q_loss": critic_loss.detach(),
            "train/q_mean": q.detach().mean(),
            "train/v_mean": v.detach().mean(),
            "train/adv_weight_mean": weights.mean(),
        }
