"""Network building blocks shared by agents and world models.

Actors take *raw* observations and normalize them with dataset statistics held as buffers, so
``act`` and ``log_prob`` accept states straight from the env, the dataset or a world model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Bounds of the Gaussian actors' log σ. −5 is the IQL authors' own setting (their JAX learner
#: and the PyTorch port by a co-author both pass log_std_min = −5; CORL's single-file IQL uses
#: −20). It also bounds the importance weights ADEPT re-fits with: log N(a; μ, σ²) ≤ −log σ −
#: ½ log 2π ≈ 4.08 per action dimension, so against the uniform β of a random dataset
#: (log β = −log 2 per dimension) log π/β ≤ 4.77·|A| — 14.3 for Hopper, 28.6 for HalfCheetah;
#: at −20 the bound would be 19.8·|A|, and a near-deterministic actor would put all the weight
#: on the few rows nearest its mean.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_LOG_2PI = math.log(2 * math.pi)


def mlp(
    in_dim: int, out_dim: int, hidden: int = 256, depth: int = 2, layer_norm: bool = False
) -> nn.Sequential:
    """``depth`` hidden layers of width ``hidden`` with ReLU (and LayerNorm if asked)."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers.append(nn.Linear(width, hidden))
        if layer_norm:
            layers.append(nn.LayerNorm(hidden))
        layers.append(nn.ReLU())
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class Normalizer(nn.Module):
    """``(x − mean) / std`` with statistics stored as buffers (saved with the state dict)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, eps: float = 1e-3):
        super().__init__()
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float().clamp_min(eps))

    @classmethod
    def identity(cls, dim: int) -> Normalizer:
        return cls(torch.zeros(dim), torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class VectorizedLinear(nn.Module):
    """``ensemble`` independent linear layers applied in one batched matmul.

    Input ``[ensemble, batch, in]`` → output ``[ensemble, batch, out]``.
    """

    def __init__(self, in_dim: int, out_dim: int, ensemble: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_dim))
        # Same init as nn.Linear, member by member.
        bound = 1 / math.sqrt(in_dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleQ(nn.Module):
    """``ensemble`` Q-networks Q(s, a) evaluated in one pass; twin critics are ``ensemble=2``."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        normalizer: Normalizer,
        hidden: int = 256,
        depth: int = 2,
        ensemble: int = 2,
    ):
        super().__init__()
        self.normalizer = normalizer
        self.ensemble = ensemble
        layers: list[nn.Module] = []
        width = obs_dim + act_dim
        for _ in range(depth):
            layers += [VectorizedLinear(width, hidden, ensemble), nn.ReLU()]
            width = hidden
        layers.append(VectorizedLinear(width, 1, ensemble))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``[batch, obs_dim]``, ``[batch, act_dim]`` → ``[ensemble, batch]``."""
        x = torch.cat([self.normalizer(obs), act], dim=-1)
        return self.net(x.unsqueeze(0).expand(self.ensemble, -1, -1)).squeeze(-1)


class ValueNet(nn.Module):
    """V(s): ``[batch, obs_dim]`` → ``[batch]``."""

    def __init__(self, obs_dim: int, normalizer: Normalizer, hidden: int = 256, depth: int = 2):
        super().__init__()
        self.normalizer = normalizer
        self.net = mlp(obs_dim, 1, hidden, depth)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalizer(obs)).squeeze(-1)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std)²)), summed over the last axis."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)


class Actor(nn.Module):
    """A policy over the action box [−1, 1]^|A| that can sample and score actions."""

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log π(a|s), ``[batch]``."""
        raise NotImplementedError

    def sample(
        self, obs: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Actions ``[batch, act_dim]``; ``deterministic`` gives the policy's mode or mean.
        ``noise``: the standard normal draws ``[batch, act_dim]`` the sample is made from (drawn
        here when not given): the same noise at nearby states gives nearby actions."""
        raise NotImplementedError


class GaussianActor(Actor):
    """π(a|s) = N(tanh(μ(s)), diag(σ²)): the mean is squashed into the action box, samples are not.

    With ``state_dependent_std=False`` log σ is one learned vector: the actor of the IQL paper
    (and CORL's ``iql.py``). With ``True`` the network also outputs log σ(s), a better density
    model of a behaviour policy. Acting deterministically returns the mean.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        normalizer: Normalizer,
        hidden: int = 256,
        depth: int = 2,
        state_dependent_std: bool = False,
    ):
        super().__init__()
        self.normalizer = normalizer
        self.net = mlp(obs_dim, 2 * act_dim if state_dependent_std else act_dim, hidden, depth)
        self.log_std = None if state_dependent_std else nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(self.normalizer(obs))
        if self.log_std is None:
            mean, log_std = out.chunk(2, dim=-1)
            return torch.tanh(mean), log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        # clamped before the expand: one clamp (and its backward) per action dimension, not
        # per batch row
        return torch.tanh(out), self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).expand_as(out)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, log_std = self(obs)
        return gaussian_log_prob(act, mean, log_std)

    def sample(
        self, obs: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        mean, log_std = self(obs)
        if deterministic:
            return mean
        return mean + (torch.randn_like(mean) if noise is None else noise) * log_std.exp()


class TanhGaussianActor(Actor):
    """π(a|s): a = tanh(u), u ~ N(μ(s), diag(σ(s)²)) (SAC's actor, Haarnoja et al. 2018).

    log π(a|s) = log N(u; μ, σ²) − Σ log(1 − tanh²(u)) (SAC appendix C, eq. 21), with the
    correction written as 2 (log 2 − u − softplus(−2u)) for numerical stability.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, normalizer: Normalizer, hidden: int = 256, depth: int = 2
    ):
        super().__init__()
        self.normalizer = normalizer
        self.net = mlp(obs_dim, 2 * act_dim, hidden, depth)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(self.normalizer(obs)).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @staticmethod
    def _squash_log_prob(
        u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor
    ) -> torch.Tensor:
        correction = 2 * (math.log(2) - u - F.softplus(-2 * u))
        return gaussian_log_prob(u, mean, log_std) - correction.sum(-1)

    def rsample(
        self, obs: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized action and its log-probability; ``noise`` is the standard normal
        draw ``[batch, act_dim]`` (drawn here when not given)."""
        mean, log_std = self(obs)
        if noise is None:
            noise = torch.randn_like(mean)
        u = mean + noise * log_std.exp()
        return torch.tanh(u), self._squash_log_prob(u, mean, log_std)

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Exact density of given actions; actions on the box edge are pulled in by ``eps``."""
        mean, log_std = self(obs)
        u = torch.atanh(act.clamp(-1 + eps, 1 - eps))
        return self._squash_log_prob(u, mean, log_std)

    def sample(
        self, obs: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        if deterministic:
            return torch.tanh(self(obs)[0])
        return self.rsample(obs, noise)[0]

    @torch.no_grad()
    def sample_with_log_prob(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled actions and the density of exactly those (float32) actions: equal to
        ``log_prob(obs, action)``, from one forward pass. Used to record behaviour data, whose
        stored log-probs must be the density of the stored action (a tanh sample that rounds
        to ±1 gets the density at the box edge, as ``log_prob`` would give it)."""
        mean, log_std = self(obs)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device)
        action = torch.tanh(mean + noise * log_std.exp())
        u = torch.atanh(action.clamp(-1 + 1e-6, 1 - 1e-6))
        return action, self._squash_log_prob(u, mean, log_std)


class DeterministicActor(Actor):
    """a = tanh(μ(s)) (TD3's actor), with TD3's exploration policy N(μ, σ²) as its density.

    A deterministic policy has no density; ``log_prob`` and stochastic ``sample`` use the
    Gaussian exploration policy TD3 acts with online (σ = ``noise``).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        normalizer: Normalizer,
        hidden: int = 256,
        depth: int = 2,
        noise: float = 0.1,
    ):
        super().__init__()
        self.normalizer = normalizer
        self.net = mlp(obs_dim, act_dim, hidden, depth)
        self.noise = noise

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(self.normalizer(obs)))

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean = self(obs)
        return gaussian_log_prob(act, mean, torch.full_like(mean, self.noise).log())

    def sample(
        self, obs: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        mean = self(obs)
        if deterministic:
            return mean
        return mean + self.noise * (torch.randn_like(mean) if noise is None else noise)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging θ' ← (1 − τ) θ' + τ θ, in place and fused over all parameters."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
