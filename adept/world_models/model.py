"""ADEPT's world model: a classifier-free-guided DDPM over next states, and a reward/terminal model.

Next state (Ho et al. 2020, DDPM). The model denoises x₀ = normalized s′ (or normalized s′ − s)
conditioned on c = (s, a). With ᾱ_k from the cosine schedule (Nichol & Dhariwal 2021, eq. 17)
and K denoising steps, training minimizes (DDPM eq. 14)

    L(θ) = E_{k, ε, (s, a, s′)} ‖ε − ε_θ(√ᾱ_k x₀ + √(1 − ᾱ_k) ε, k, c)‖²,

where c is replaced by a learned null condition ∅ with probability p_uncond, so one network is
both the conditional and the unconditional model. Sampling runs the DDPM ancestral chain with the
classifier-free-guided noise estimate (Ho & Salimans 2022, eq. 6)

    ε̂ = (1 + w) ε_θ(x_k, k, c) − w ε_θ(x_k, k, ∅),

both halves in one batched forward pass.

Reward and terminal: r_φ(s, a, s′) → (r̂, terminal logit), trained with MSE on normalized rewards
plus binary cross-entropy on terminals. Seeing s′ is what makes termination predictable.

Every loss is returned per sample, so the importance-sampled update can weight it.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from adept.base.rng import seeded
from adept.data.buffer import Batch
from adept.data.transitions import DatasetStats, Stats, Transitions
from adept.diffusion.ddpm import DiffusionSchedule
from adept.diffusion.denoisers import Denoiser, ResidualBlock
from adept.diffusion.guidance import classifier_free
from adept.nets import Normalizer, mlp


@dataclass(frozen=True)
class WorldModelConfig:
    """Diffusion world model and reward model; the defaults are the ADEPT paper's (its appendix
    table of hyper-parameters) where it gives one."""

    denoising_steps: int = 10
    """K, DDPM steps (the paper: 10; appendix ablation 5/10/20)."""
    guidance_weight: float = 0.1
    """w of classifier-free guidance at sampling (the paper: 0.1)."""
    p_uncond: float = 0.1
    """Probability of training with the null condition ∅ (needed for guidance)."""
    target: Literal["next", "delta"] = "delta"
    """x₀ = normalized s′ ('next') or normalized s′ − s ('delta'): 'delta' has the lower 10-step
    error against MuJoCo, what H = 10 rollouts feed the agent (docs/adept-defaults.md)."""
    hidden: int = 256
    """Width of the denoiser and the reward model."""
    depth: int = 3
    """Residual blocks of the denoiser, hidden layers of the reward model."""
    block_layers: int = 2
    """Linear layers per residual block of the denoiser (1 or 2; 2 was measured the better use
    of training time, docs/adept-defaults.md)."""
    condition: Literal["input", "blocks"] = "input"
    """Where the denoiser sees the condition and step: added at its input only, or also inside
    every residual block (:class:`Denoiser`; docs/adept-defaults.md)."""
    lr: float = 3e-4
    """Adam learning rate of both models."""
    clip_margin: float = 0.1
    """Predicted x₀ is clipped to the data's x₀ range widened by this fraction of it."""
    dynamics: Literal["diffusion", "gaussian", "ensemble"] = "diffusion"
    """Next-state model: the guided DDPM (ADEPT); a one-step Gaussian MLP (same width/depth and
    target) for comparison; or a MOPO-style ensemble of Gaussian MLPs whose elites are picked
    on held-out data (:class:`GaussianEnsemble`)."""
    ensemble_size: int = 7
    """Members of the 'ensemble' dynamics (MBPO and MOPO: 7)."""
    ensemble_elites: int = 5
    """Members of the 'ensemble' kept for sampling, the best on held-out data (MBPO/MOPO: 5)."""


class NextStateModel(nn.Module):
    """Shared by the next-state models: condition c = (normalized s, a), target x₀ = normalized
    s′ or s′ − s, and the box the data's x₀ occupies (widened by ``clip_margin`` of its range),
    to which predicted x₀ are clipped."""

    x_mean: torch.Tensor
    x_std: torch.Tensor
    x0_low: torch.Tensor
    x0_high: torch.Tensor

    def __init__(
        self, obs_dim: int, act_dim: int, states: Stats, targets: Stats, config: WorldModelConfig
    ):
        """``states``: statistics of s (the condition); ``targets``: of raw x₀ (s′ or s′ − s)."""
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.config = config
        self.state_norm = Normalizer(torch.as_tensor(states.mean), torch.as_tensor(states.std))
        mean = torch.as_tensor(targets.mean).float()
        std = torch.as_tensor(targets.std).float().clamp_min(1e-3)
        low = (torch.as_tensor(targets.min).float() - mean) / std
        high = (torch.as_tensor(targets.max).float() - mean) / std
        margin = config.clip_margin * (high - low)
        self.register_buffer("x_mean", mean)
        self.register_buffer("x_std", std)
        self.register_buffer("x0_low", low - margin)
        self.register_buffer("x0_high", high + margin)

    @classmethod
    def from_data(
        cls, data: Transitions, config: WorldModelConfig = WorldModelConfig()
    ) -> NextStateModel:
        """The model for ``data``'s dimensions, with its state and target statistics."""
        return cls(
            data.obs_dim, data.act_dim, data.stats().states, cls.target_stats(data, config), config
        )

    @staticmethod
    def target_stats(data: Transitions, config: WorldModelConfig) -> Stats:
        if config.target == "delta":
            return Stats.of(data.next_observations - data.observations)
        return Stats.of(data.next_observations)

    def _cond(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.state_norm(obs), act], dim=-1)

    def _x0(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        raw = next_obs - obs if self.config.target == "delta" else next_obs
        return (raw - self.x_mean) / self.x_std

    def _next_obs(self, obs: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The sampled next state in raw units, float32 whatever the autocast."""
        raw = x0 * self.x_std + self.x_mean
        return (obs + raw if self.config.target == "delta" else raw).float()

    def loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        next_obs: torch.Tensor,
        p_uncond: float | None = None,
    ) -> torch.Tensor:
        """Per-sample training loss ``[batch]``; ``p_uncond`` overrides the config's share of
        null-conditioned samples where the model has one (0 scores the conditional model)."""
        raise NotImplementedError

    def sample(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """s′ ~ p(· | s, a), raw units."""
        raise NotImplementedError

    def mode(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The s′ a deterministic rollout takes, raw units: a Gaussian's mean (a diffusion model
        has none)."""
        raise NotImplementedError(f"{type(self).__name__} has no deterministic next state")


class DiffusionDynamics(NextStateModel):
    """p_θ(s′ | s, a) as a guided DDPM; inputs and outputs are raw states and actions.

    Each reverse step clips the predicted x₀ to the data's x₀ box, as DDPM's reference sampler
    clips to the data range. With few steps this matters: the cosine schedule's last β is
    0.999, so the first reverse step divides the noise estimate by √ᾱ_K ≈ 0.005 and an
    unclipped x₀ estimate is dominated by its error.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        states: Stats,
        targets: Stats,
        config: WorldModelConfig = WorldModelConfig(),
    ):
        super().__init__(obs_dim, act_dim, states, targets, config)
        self.schedule = DiffusionSchedule(config.denoising_steps)
        self.denoiser = Denoiser(
            obs_dim,
            obs_dim + act_dim,
            config.denoising_steps,
            config.hidden,
            config.depth,
            config.block_layers,
            config.condition,
        )

    def loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        next_obs: torch.Tensor,
        p_uncond: float | None = None,
        draws: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Per-sample ε-prediction loss ``[batch]`` (mean over state dimensions); ``draws``
        (:meth:`draw_loss_noise`; default: drawn here) holds its random numbers."""
        x0 = self._x0(obs, next_obs)
        noise, k, coin = self.draw_loss_noise(len(x0), x0.device) if draws is None else draws
        share = self.config.p_uncond if p_uncond is None else p_uncond
        uncond = coin < share
        eps = self.denoiser(self.schedule.add_noise(x0, noise, k), k, self._cond(obs, act), uncond)
        return (eps - noise).pow(2).mean(-1)

    def draw_loss_noise(
        self, n: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training loss's random numbers for ``n`` rows, drawn from torch's RNG in this
        order: ε ``[n, obs_dim]``, the diffusion steps ``[n]``, and the coins ``[n]`` in [0, 1)
        that null the condition of the rows below ``p_uncond``."""
        noise = torch.randn(n, self.obs_dim, device=device)
        k = torch.randint(0, self.schedule.num_steps, (n,), device=device)
        return noise, k, torch.rand(n, device=device)

    def draw_noise(self, n: int, device: torch.device) -> torch.Tensor:
        """The chain's random numbers for ``n`` samples, ``[K, n, obs_dim]``: x_K, then the
        noise of each reverse step k = K−1..1, drawn from torch's RNG in that order."""
        return torch.stack(
            [torch.randn(n, self.obs_dim, device=device) for _ in range(self.schedule.num_steps)]
        )

    @torch.no_grad()
    def sample(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        guidance_weight: float | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """s′ ~ p_θ(· | s, a) by the ancestral DDPM chain with guided noise estimates; ``noise``
        (:meth:`draw_noise`; default: drawn here) holds the chain's random numbers.

        With w ≠ 0 the conditional and the null-conditioned halves run as one batch of 2N.
        """
        w = self.config.guidance_weight if guidance_weight is None else guidance_weight
        if noise is None:
            noise = self.draw_noise(len(obs), obs.device)
        return self.chain(obs, act, noise, w)

    def chain(
        self, obs: torch.Tensor, act: torch.Tensor, noise: torch.Tensor, w: float
    ) -> torch.Tensor:
        """The reverse chain from x_K = noise[0], adding noise[K − k] at step k > 0 (no RNG:
        :class:`StackedDynamics` maps it over several models)."""
        n, device = len(obs), obs.device
        cond = self._cond(obs, act)
        guided = w != 0.0
        uncond = torch.zeros(n, dtype=torch.bool, device=device)
        if guided:
            cond, uncond = cond.repeat(2, 1), torch.cat([uncond, ~uncond])
        cond_emb = self.denoiser.embed_condition(cond, uncond)  # once per chain
        sched = self.schedule
        x = noise[0]
        for k in reversed(range(sched.num_steps)):
            step_emb = self.denoiser.embed_step(torch.full((1,), k, device=device))
            if guided:
                eps_cond, eps_uncond = self.denoiser.denoise(
                    x.repeat(2, 1), step_emb, cond_emb
                ).chunk(2)
                eps = classifier_free(eps_cond, eps_uncond, w)
            else:
                eps = self.denoiser.denoise(x, step_emb, cond_emb)
            x0 = torch.clamp(sched.predict_x0(x, eps, k), self.x0_low, self.x0_high)
            mean = sched.posterior_mean_coef_x0[k] * x0 + sched.posterior_mean_coef_xk[k] * x
            x = (
                mean + sched.posterior_variance[k].sqrt() * noise[sched.num_steps - k]
                if k > 0
                else mean
            )
        return self._next_obs(obs, x)


class GaussianDynamics(NextStateModel):
    """Baseline p(s′ | s, a) = N(μ(s, a), diag σ(s, a)²) over the same x₀ as the diffusion model.

    Trained by Gaussian negative log-likelihood (per sample, mean over dimensions); the same
    condition, target and output clipping as :class:`DiffusionDynamics`, so the two differ only
    in the conditional density model.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, states: Stats, targets: Stats, config: WorldModelConfig
    ):
        super().__init__(obs_dim, act_dim, states, targets, config)
        self.inp = nn.Linear(obs_dim + act_dim, config.hidden)
        self.blocks = nn.Sequential(*[ResidualBlock(config.hidden) for _ in range(config.depth)])
        self.out = nn.Sequential(nn.LayerNorm(config.hidden), nn.Linear(config.hidden, 2 * obs_dim))

    def _params(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.out(self.blocks(self.inp(self._cond(obs, act)))).chunk(2, dim=-1)
        return mean, log_std.clamp(-10.0, 2.0)

    def loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        next_obs: torch.Tensor,
        p_uncond: float | None = None,
    ) -> torch.Tensor:
        """Per-sample Gaussian NLL ``[batch]`` (mean over state dimensions, constant dropped)."""
        mean, log_std = self._params(obs, act)
        z = (self._x0(obs, next_obs) - mean) * torch.exp(-log_std)
        return (0.5 * z.pow(2) + log_std).mean(-1)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._params(obs, act)
        x0 = torch.clamp(mean + log_std.exp() * torch.randn_like(mean), self.x0_low, self.x0_high)
        return self._next_obs(obs, x0)

    @torch.no_grad()
    def mode(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, _ = self._params(obs, act)
        return self._next_obs(obs, torch.clamp(mean, self.x0_low, self.x0_high))


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: ``[E, B, in] → [E, B, out]``."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = 1 / math.sqrt(in_dim)  # nn.Linear's default initialization, per member
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class GaussianEnsemble(NextStateModel):
    """MOPO-style baseline (Yu et al. 2020, after MBPO/PETS): E Gaussian MLPs over the same x₀
    as the diffusion model, each N(μ_e(s, a), diag σ_e(s, a)²).

    Members differ by initialization and see the same batches, so per-sample weights (the IS
    re-fit) apply to all of them. log σ is bounded softly by learned limits (PETS), whose spread
    is penalized by 0.01 · Σ(max − min). After pre-training, :meth:`set_elites` keeps the
    ``ensemble_elites`` members with the lowest held-out error, and each sample is drawn from one
    elite picked uniformly at random (MBPO's sampling).
    """

    elites: torch.Tensor

    def __init__(
        self, obs_dim: int, act_dim: int, states: Stats, targets: Stats, config: WorldModelConfig
    ):
        super().__init__(obs_dim, act_dim, states, targets, config)
        e, h = config.ensemble_size, config.hidden
        dims = [obs_dim + act_dim] + [h] * config.depth
        layers: list[nn.Module] = []
        for d_in, d_out in itertools.pairwise(dims):
            layers += [EnsembleLinear(e, d_in, d_out), nn.SiLU()]
        self.body = nn.Sequential(*layers, EnsembleLinear(e, h, 2 * obs_dim))
        self.max_log_std = nn.Parameter(torch.full((obs_dim,), 0.25))
        self.min_log_std = nn.Parameter(torch.full((obs_dim,), -5.0))
        self.register_buffer("elites", torch.arange(config.ensemble_elites))

    def params(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's mean and log σ of x₀, ``[E, B, obs_dim]`` each."""
        x = self._cond(obs, act).expand(self.config.ensemble_size, -1, -1)
        mean, log_std = self.body(x).chunk(2, dim=-1)
        log_std = self.max_log_std - F.softplus(self.max_log_std - log_std)
        log_std = self.min_log_std + F.softplus(log_std - self.min_log_std)
        return mean, log_std

    def loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        next_obs: torch.Tensor,
        p_uncond: float | None = None,
    ) -> torch.Tensor:
        """Per-sample Gaussian NLL summed over members ``[batch]`` (mean over dimensions), plus
        the log σ limits' penalty spread over the batch."""
        mean, log_std = self.params(obs, act)
        z = (self._x0(obs, next_obs) - mean) * torch.exp(-log_std)
        nll = (0.5 * z.pow(2) + log_std).mean(-1).sum(0)
        return nll + 0.01 * (self.max_log_std - self.min_log_std).sum() / len(nll)

    @torch.no_grad()
    def member_errors(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        """Each member's mean squared error of its mean x₀ ``[E]`` (MBPO's holdout score)."""
        mean, _ = self.params(obs, act)
        return (mean - self._x0(obs, next_obs)).pow(2).mean(dim=(1, 2))

    def member_weights(self) -> list[torch.Tensor]:
        """Copies of the per-member weights (every tensor's first axis is the member)."""
        return [p.detach().clone() for p in self.body.parameters()]

    @torch.no_grad()
    def load_member(self, member: int, weights: list[torch.Tensor]) -> None:
        """Set one member's weights from a :meth:`member_weights` copy."""
        for target, value in zip(self.body.parameters(), weights, strict=True):
            target[member] = value[member]

    def set_elites(self, errors: torch.Tensor) -> None:
        """Keep the ``ensemble_elites`` members with the lowest held-out ``errors`` ``[E]``."""
        self.elites.copy_(torch.argsort(errors)[: self.config.ensemble_elites])

    def _elite_params(
        self, obs: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log σ of x₀ of one elite per row, picked uniformly at random."""
        mean, log_std = self.params(obs, act)
        rows = torch.arange(len(obs), device=obs.device)
        pick = self.elites[torch.randint(len(self.elites), (len(obs),), device=obs.device)]
        return mean[pick, rows], log_std[pick, rows]

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._elite_params(obs, act)
        x0 = torch.clamp(mean + log_std.exp() * torch.randn_like(mean), self.x0_low, self.x0_high)
        return self._next_obs(obs, x0)

    @torch.no_grad()
    def mode(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """The mean of one elite per row, picked at random (MBPO's and DyDiff's deterministic
        rollouts: the member stays random, the Gaussian's noise goes)."""
        mean, _ = self._elite_params(obs, act)
        return self._next_obs(obs, torch.clamp(mean, self.x0_low, self.x0_high))


class RewardTerminalModel(nn.Module):
    """r_φ(s, a, s′) → (r̂, terminal logit); rewards are regressed in normalized units."""

    r_mean: torch.Tensor
    r_std: torch.Tensor

    def __init__(
        self, obs_dim: int, act_dim: int, stats: DatasetStats, hidden: int = 256, depth: int = 3
    ):
        super().__init__()
        self.state_norm = Normalizer(
            torch.as_tensor(stats.states.mean), torch.as_tensor(stats.states.std)
        )
        self.register_buffer("r_mean", torch.as_tensor(stats.rewards.mean).float().reshape(()))
        self.register_buffer(
            "r_std", torch.as_tensor(stats.rewards.std).float().reshape(()).clamp_min(1e-3)
        )
        self.net = mlp(2 * obs_dim + act_dim, 2, hidden, depth)

    def _raw(self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.state_norm(obs), act, self.state_norm(next_obs)], dim=-1)
        return self.net(x)

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor, next_obs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted reward (raw units) and terminal logit, each ``[batch]``, float32 whatever
        the autocast."""
        out = self._raw(obs, act, next_obs).float()
        return out[:, 0] * self.r_std + self.r_mean, out[:, 1]

    def loss(
        self,
        obs: torch.Tensor,
        act: torch.Tensor,
        next_obs: torch.Tensor,
        rewards: torch.Tensor,
        terminals: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample reward MSE (normalized units) and terminal BCE, each ``[batch]``."""
        out = self._raw(obs, act, next_obs)
        reward_loss = (out[:, 0] - (rewards - self.r_mean) / self.r_std).pow(2)
        terminal_loss = F.binary_cross_entropy_with_logits(out[:, 1], terminals, reduction="none")
        return reward_loss, terminal_loss


class WorldModel(nn.Module):
    """Next-state diffusion model and reward/terminal model, trained together.

    ``train_step`` takes optional per-sample weights that sum to one (the importance-sampled
    update); without them every sample weighs 1/N, which is plain maximum likelihood.
    """

    def __init__(self, data: Transitions, config: WorldModelConfig, device: torch.device):
        super().__init__()
        self.config = config
        models: dict[str, Any] = {
            "diffusion": DiffusionDynamics,
            "gaussian": GaussianDynamics,
            "ensemble": GaussianEnsemble,
        }
        self.dynamics: NextStateModel = models[config.dynamics].from_data(data, config)
        self.reward = RewardTerminalModel(
            data.obs_dim, data.act_dim, data.stats(), config.hidden, config.depth
        )
        self.to(device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=config.lr, fused=True)

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample denoising, reward and terminal losses, each ``[batch]``."""
        obs, act, next_obs = batch.observations, batch.actions, batch.next_observations
        denoise = self.dynamics.loss(obs, act, next_obs)
        reward, terminal = self.reward.loss(obs, act, next_obs, batch.rewards, batch.terminals)
        return denoise, reward, terminal

    def train_step(
        self, batch: Batch, weights: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """One Adam step on Σ_i w_i (ℓ_denoise + ℓ_reward + ℓ_terminal)_i (w_i = 1/N if None)."""
        loss, metrics = self.weighted_loss(batch, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return metrics

    def weighted_loss(
        self,
        batch: Batch,
        weights: torch.Tensor | None = None,
        draws: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`train_step`'s loss and its parts; ``draws``: the diffusion loss's random
        numbers (:meth:`DiffusionDynamics.draw_loss_noise`; default: drawn here)."""
        obs, act, next_obs = batch.observations, batch.actions, batch.next_observations
        if draws is None:
            denoise = self.dynamics.loss(obs, act, next_obs)
        else:
            denoise = cast(DiffusionDynamics, self.dynamics).loss(obs, act, next_obs, draws=draws)
        reward, terminal = self.reward.loss(obs, act, next_obs, batch.rewards, batch.terminals)
        w = torch.full_like(denoise, 1.0 / len(denoise)) if weights is None else weights
        loss = (w * (denoise + reward + terminal)).sum()
        return loss, {
            "world_model/denoise_loss": (w * denoise).sum().detach(),
            "world_model/reward_loss": (w * reward).sum().detach(),
            "world_model/terminal_loss": (w * terminal).sum().detach(),
        }

    @torch.no_grad()
    def heldout_loss(self, batch: Batch, seed: int) -> float:
        """Mean denoising (conditional only) + reward + terminal loss on ``batch``, with the
        noise and diffusion steps drawn from ``seed``: a deterministic score for selection."""
        obs, act, next_obs = batch.observations, batch.actions, batch.next_observations
        with seeded(seed, obs.device):
            dynamics = self.dynamics.loss(obs, act, next_obs, p_uncond=0.0)
        reward, terminal = self.reward.loss(obs, act, next_obs, batch.rewards, batch.terminals)
        return float((dynamics + reward + terminal).mean())

    @torch.no_grad()
    def step(
        self, obs: torch.Tensor, act: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample s′ and predict (r̂, terminal): ``[B, obs_dim]``, ``[B]``, ``[B]`` bool."""
        next_obs = self.dynamics.sample(obs, act)
        reward, logit = self.reward(obs, act, next_obs)
        return next_obs, reward, logit > 0

    def state_dict_all(self) -> dict[str, Any]:
        return {"model": self.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict_all(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["model"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
