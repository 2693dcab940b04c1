"""DDPM (Ho et al. 2020) with the cosine schedule (Nichol & Dhariwal 2021): the noise levels,
the forward noising q(x_k | x₀) and the posterior q(x_{k−1} | x_k, x₀) the ancestral sampler
steps with. ADEPT's world model samples with it
(:class:`adept.world_models.model.DiffusionDynamics`).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def cosine_alphas_cumprod(
    num_steps: int, s: float = 0.008, max_beta: float = 0.999
) -> torch.Tensor:
    """ᾱ_1..ᾱ_K of the cosine schedule, float64 ``[K]``.

    ᾱ(t) = f(t) / f(0), f(t) = cos²(((t/K + s) / (1 + s)) · π/2); the implied
    β_k = 1 − ᾱ_k / ᾱ_{k−1} are clipped at ``max_beta`` (Nichol & Dhariwal 2021, §3.2).
    """
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0)


class DiffusionSchedule(nn.Module):
    """DDPM coefficients for K steps, as buffers indexed by k = 0..K−1 (k = 0 is the least noisy).

    Posterior q(x_{k−1} | x_k, x₀) = N(μ̃, β̃_k) with (DDPM eq. 7)
    β̃_k = β_k (1 − ᾱ_{k−1}) / (1 − ᾱ_k),
    μ̃ = √ᾱ_{k−1} β_k / (1 − ᾱ_k) · x₀ + √α_k (1 − ᾱ_{k−1}) / (1 − ᾱ_k) · x_k.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xk: torch.Tensor

    def __init__(self, num_steps: int):
        super().__init__()
        self.num_steps = num_steps
        abar = cosine_alphas_cumprod(num_steps)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        betas = 1 - abar / abar_prev
        alphas = 1 - betas
        buffers = {
            "betas": betas,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "posterior_variance": betas * (1 - abar_prev) / (1 - abar),
            "posterior_mean_coef_x0": abar_prev.sqrt() * betas / (1 - abar),
            "posterior_mean_coef_xk": alphas.sqrt() * (1 - abar_prev) / (1 - abar),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value.float())

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """x_k = √ᾱ_k x₀ + √(1 − ᾱ_k) ε (DDPM eq. 4)."""
        abar = self.alphas_cumprod[k].unsqueeze(-1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def predict_x0(self, xk: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
        abar = self.alphas_cumprod[k]
        return (xk - (1 - abar).sqrt() * eps) / abar.sqrt()
