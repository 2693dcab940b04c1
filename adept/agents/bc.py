"""Behaviour cloning: maximum likelihood of dataset actions under a Gaussian policy.

L = −E[log π(a|s)],  π(a|s) = N(tanh(μ(s)), diag(σ(s)²)).

The Gaussian (rather than a deterministic regressor) gives BC an exact density, which makes it
usable as ADEPT's policy learner (the paper's ADEPT+BC ablation) and as a behaviour model β.
Deterministic acting returns the mean, which is the MSE regressor's answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from adept.agents.base import Agent, AgentSpec, Phase, adam
from adept.data.buffer import Batch
from adept.nets import GaussianActor, gaussian_log_prob


@dataclass(frozen=True)
class BCConfig:
    """BC hyper-parameters."""

    lr: float = 3e-4
    """Learning rate."""
    hidden: int = 256
    """Width of the policy network."""
    depth: int = 2
    """Hidden layers of the policy network."""
    state_dependent_std: bool = True
    """Learn σ(s) per state (a better density model) rather than one σ vector."""


class BC(Agent):
    name = "bc"
    options_type = BCConfig
    label = "BC"

    def __init__(self, spec: AgentSpec, config: BCConfig = BCConfig()):
        self.config = config
        self.device = spec.device
        c = config
        self.actor = GaussianActor(
            spec.obs_dim,
            spec.act_dim,
            spec.normalizer(),
            c.hidden,
            c.depth,
            state_dependent_std=c.state_dependent_std,
        ).to(self.device)
        self.actor_opt = adam(self.actor.parameters(), c.lr)

    def components(self) -> dict[str, Any]:
        return {"actor": self.actor, "actor_opt": self.actor_opt}

    def phases(self) -> list[Phase]:
        return [Phase(self.loss, ("actor",), ("actor_opt",))]

    def loss(
        self, batch: Batch, noise: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        mean, log_std = self.actor(batch.observations)
        loss = -gaussian_log_prob(batch.actions, mean, log_std).mean()
        return loss, {
            "train/actor_loss": loss.detach(),
            "train/mse": (mean.detach() - batch.actions).pow(2).mean(),
        }
