"""EDM: the σ-parameterized diffusion of Karras et al. 2022 ("Elucidating the design space of
diffusion-based generative models"), the generator SynthER uses.

Data x₀ is noised as x = x₀ + σ n, n ~ N(0, I), and a network F_θ is wrapped into a denoiser by
the preconditioning of EDM Table 1 (σ_d: the data's standard deviation):

    D_θ(x; σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x, c_noise(σ)),
    c_skip = σ_d² / (σ² + σ_d²),   c_out = σ σ_d / √(σ² + σ_d²),
    c_in = 1 / √(σ² + σ_d²),       c_noise = ¼ ln σ,

so that F_θ's input and its regression target (x₀ − c_skip x) / c_out both have unit variance at
every σ. Training draws ln σ ~ N(P_mean, P_std²) and minimizes (EDM eq. 2 and Table 1)

    L(θ) = E_{σ, x₀, n} λ(σ) ‖D_θ(x₀ + σ n; σ) − x₀‖²,   λ(σ) = (σ² + σ_d²) / (σ σ_d)²,

whose optimum D*(x; σ) = E[x₀ | x] scores exactly 1 per dimension when x₀ ~ N(μ, σ_d² I) — the
weight makes every noise level count alike. Sampling integrates the probability-flow ODE
dx/dσ = (x − D(x; σ)) / σ from σ_max to 0 with Heun's second-order method on the ρ-spaced steps

    σ_i = (σ_max^{1/ρ} + i/(N − 1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ,   σ_N = 0,

adding fresh noise before each step while σ ∈ [S_tmin, S_tmax] ("churn", EDM Algorithm 2).
The functions here know nothing of RL: a denoiser is any callable ``(x, sigma) -> x0_hat``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""D(x, σ) → x̂₀: ``x`` ``[B, *dims]``, ``sigma`` ``[B]``."""
Nudge = Callable[[torch.Tensor, int], torch.Tensor]
"""(x, step index i) → a term added to the sample x before sampler step i."""


@dataclass(frozen=True)
class EDMConfig:
    """EDM's noise levels, training σ distribution and sampler churn (defaults: EDM's, with
    σ_d = 1 for standardized data). The number of sampling steps is the caller's: each method
    sizes it with its network (SynthER: 128)."""

    sigma_min: float = 0.002
    """Smallest noise level of the sampler."""
    sigma_max: float = 80.0
    """Largest noise level: sampling starts from N(0, σ_max² I)."""
    sigma_data: float = 1.0
    """σ_d, the data's standard deviation (1 for per-dimension standardized data)."""
    rho: float = 7.0
    """ρ of the sampler's step spacing (EDM eq. 5): larger spends more steps at low noise."""
    p_mean: float = -1.2
    """Mean of ln σ in training."""
    p_std: float = 1.2
    """Standard deviation of ln σ in training."""
    s_churn: float = 80.0
    """Total churn: each step in [S_tmin, S_tmax] raises σ by γ = min(S_churn / N, √2 − 1)."""
    s_tmin: float = 0.05
    s_tmax: float = 50.0
    s_noise: float = 1.003
    """Scale of the churn noise (slightly above 1 offsets the denoiser's loss of detail)."""


class Preconditioning:
    """EDM Table 1's c_skip, c_out, c_in, c_noise and loss weight λ, for one σ_d."""

    def __init__(self, sigma_data: float):
        self.sigma_data = sigma_data

    def c_skip(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma * self.sigma_data / (sigma**2 + self.sigma_data**2).sqrt()

    def c_in(self, sigma: torch.Tensor) -> torch.Tensor:
        return 1 / (sigma**2 + self.sigma_data**2).sqrt()

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return sigma.log() / 4

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2


def sample_sigmas(
    n: int,
    p_mean: float,
    p_std: float,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training noise levels, ln σ ~ N(P_mean, P_std²): ``[n]``."""
    normal = torch.randn(n, device=device, generator=generator)
    return (p_mean + p_std * normal).exp()


def sigma_steps(
    n: int, sigma_min: float, sigma_max: float, rho: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The sampler's noise levels σ_0 = σ_max > … > σ_{N−1} = σ_min, then σ_N = 0: ``[N + 1]``."""
    if n < 2:
        raise ValueError(f"the EDM sampler needs at least 2 noise levels, got {n}")
    i = torch.arange(n, dtype=torch.float64, device=device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + i / (n - 1) * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def edm_loss(
    denoise: Denoise,
    x0: torch.Tensor,
    precond: Preconditioning,
    p_mean: float,
    p_std: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """λ(σ) ‖D(x₀ + σ n; σ) − x₀‖² per sample, averaged over the data dimensions: ``[B]``."""
    sigma = sample_sigmas(len(x0), p_mean, p_std, x0.device, generator)  # [B]
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    shape = (-1,) + (1,) * (x0.dim() - 1)
    x = x0 + sigma.view(shape) * noise
    error = (denoise(x, sigma) - x0) ** 2
    return precond.loss_weight(sigma) * error.flatten(1).mean(dim=1)


@torch.no_grad()
def heun_sample(
    denoise: Denoise,
    shape: tuple[int, ...],
    steps: int,
    config: EDMConfig,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    nudge: Nudge | None = None,
) -> torch.Tensor:
    """EDM Algorithm 2: Heun's method on the probability-flow ODE with churn, ``shape`` samples
    over ``steps`` noise levels (``steps`` − 1 Heun steps and a final Euler step to σ = 0).
    ``nudge(x, i)``, when given, is added to the sample before step i (before its churn):
    Policy-Guided Diffusion's guidance step (:func:`adept.diffusion.guidance.policy_nudge`).

    At each level σ_i: raise it to σ̂ = σ_i (1 + γ) by adding noise of variance σ̂² − σ_i² (γ > 0
    only inside [S_tmin, S_tmax]); take an Euler step to σ_{i+1} along d = (x − D(x; σ̂)) / σ̂;
    unless σ_{i+1} = 0, correct it with the slope at the new point (the trapezoidal rule).
    """
    n = steps
    sigmas = sigma_steps(n, config.sigma_min, config.sigma_max, config.rho, device)
    gamma_max = min(config.s_churn / n, math.sqrt(2) - 1)
    x = torch.randn(shape, device=device, generator=generator) * sigmas[0]
    batch = shape[0]
    for i in range(n):
        if nudge is not None:
            x = x + nudge(x, i)
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = gamma_max if config.s_tmin <= sigma <= config.s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            eps = torch.randn(shape, device=device, generator=generator) * config.s_noise
            x = x + math.sqrt(sigma_hat**2 - sigma**2) * eps
        slope = (x - denoise(x, torch.full((batch,), sigma_hat, device=device))) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * slope
        if sigma_next > 0:
            at_next = torch.full((batch,), sigma_next, device=device)
            slope_next = (x_next - denoise(x_next, at_next)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (slope + slope_next) / 2
        x = x_next
    return x


class EDM(nn.Module):
    """A network ``F(x_in, c_noise, cond) -> output`` (``x_in`` ``[B, *dims]``, ``c_noise``
    ``[B]``, ``cond`` ``[B, ...]`` or None) made an EDM denoiser, with its loss and sampler."""

    def __init__(self, net: nn.Module, config: EDMConfig):
        super().__init__()
        self.net = net
        self.config = config
        self.precond = Preconditioning(config.sigma_data)

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        """D_θ(x; σ) of the preconditioning above."""
        p = self.precond
        shape = (-1,) + (1,) * (x.dim() - 1)
        out = self.net(p.c_in(sigma).view(shape) * x, p.c_noise(sigma), cond)
        return p.c_skip(sigma).view(shape) * x + p.c_out(sigma).view(shape) * out

    def loss(
        self,
        x0: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """EDM's weighted denoising loss per sample, ``[B]``."""
        c = self.config
        return edm_loss(
            lambda x, sigma: self.denoise(x, sigma, cond), x0, self.precond, c.p_mean, c.p_std,
            generator,
        )  # fmt: skip

    def sample(
        self,
        shape: tuple[int, ...],
        steps: int,
        *,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        nudge: Nudge | None = None,
    ) -> torch.Tensor:
        """``shape`` samples by :func:`heun_sample` over ``steps`` noise levels (on the module's
        device)."""
        device = next(self.parameters()).device
        return heun_sample(
            lambda x, sigma: self.denoise(x, sigma, cond), shape, steps, self.config, device,
            generator, nudge,
        )  # fmt: skip
