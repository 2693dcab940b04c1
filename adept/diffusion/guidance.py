"""Guidance: steering a trained diffusion model's samples at sampling time, without retraining.

- :func:`classifier_free` — Ho & Salimans 2022, eq. 6: the noise estimate
  ε̃ = (1 + w) ε(x, c) − w ε(x, ∅) from one network trained with and without its condition
  (ADEPT's world model, :class:`adept.world_models.model.DiffusionDynamics`).
- :func:`gradient_guided` — a gradient term on chosen channels: an EDM denoiser whose implied
  score ∇ log p_σ(x) = (D(x; σ) − x) / σ² gains λ ∇_x log g(x), i.e.

      D̃(x; σ) = D(x; σ) + λ σ² m ⊙ ∇_x log g(x),

  with m the channel mask — Policy-Guided Diffusion's policy guidance, g = π(a | s) on the action
  channels of a trajectory. The gradient is taken with autograd inside the (no-grad) sampler.
- :func:`policy_nudge` — Policy-Guided Diffusion's own form of that guidance, as its released
  code applies it: before each sampler step i, the noisy sample's action channels move by
  λ_i ∇_a log π(a | s), with s and a read from the (noisy) sample itself and λ_i from
  :func:`guidance_schedule`, 0 at the last step; passed to the sampler as its ``nudge``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adept.diffusion.edm import Denoise, Nudge


def classifier_free(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, weight: float
) -> torch.Tensor:
    """(1 + w) ε(x, c) − w ε(x, ∅): w = 0 is the conditional model, w > 0 sharpens toward c."""
    return (1 + weight) * eps_cond - weight * eps_uncond


def masked_gradient(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    channels: torch.Tensor | None,
) -> torch.Tensor:
    """∇_x Σ_b log_density(x)_b on ``channels`` (a bool mask; None: all), 0 elsewhere — taken
    with autograd even inside the samplers' ``no_grad``."""
    with torch.enable_grad():
        point = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(log_density(point).sum(), point)
    return grad if channels is None else grad * channels.to(grad.dtype)


def gradient_guided(
    denoise: Denoise,
    log_density: Callable[[torch.Tensor], torch.Tensor],
    scale: float,
    channels: torch.Tensor | None = None,
) -> Denoise:
    """``denoise`` with the score of ``log_density`` (``[B, *dims] -> [B]``) added, scaled by
    ``scale``, on ``channels`` (a bool mask broadcastable to one sample's ``dims``; None: all).
    ``scale = 0`` returns ``denoise`` itself."""
    if scale == 0.0:
        return denoise

    def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        grad = masked_gradient(log_density, x, channels)
        shape = (-1,) + (1,) * (x.dim() - 1)
        return denoise(x, sigma) + scale * sigma.view(shape) ** 2 * grad

    return guided


def guidance_schedule(steps: int, coeff: float, cosine_coeff: float = 0.3) -> torch.Tensor:
    """PGD's coefficients λ_i = coeff (1 − i/N + c sin(π (i + 1)/N)) for sampler steps
    i = 0..N−1, with λ_{N−1} = 0: strongest early (high noise), off at the last step. ``[N]``."""
    i = torch.arange(steps, dtype=torch.float64)
    lam = coeff * (1 - i / steps + cosine_coeff * torch.sin(torch.pi * (i + 1) / steps))
    lam[-1] = 0.0
    return lam.float()


def policy_nudge(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    channels: torch.Tensor,
    schedule: torch.Tensor,
    normalize: bool = False,
) -> Nudge:
    """The sampler's ``nudge``: λ_i · mask ⊙ ∇_x log_density(x) (``log_density``: ``[B, *dims]
    -> [B]``, e.g. log π of a segment's actions given its states, both read from x); with
    ``normalize`` the gradient of each sample is scaled to unit norm over the channels."""

    def nudge(x: torch.Tensor, i: int) -> torch.Tensor:
        lam = float(schedule[i])
        if lam == 0.0:
            return torch.zeros_like(x)
        grad = masked_gradient(log_density, x, channels)
        if normalize:
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-8)
            grad = grad / norm.view((-1,) + (1,) * (grad.dim() - 1))
        return lam * grad

    return nudge
