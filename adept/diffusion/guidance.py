"""Guidance: steering a trained diffusion model's samples at sampling time, without retraining.

- :func:`classifier_free` — Ho & Salimans 2022, eq. 6: the noise estimate
  ε̃ = (1 + w) ε(x, c) − w ε(x, ∅) from one network trained with and without its condition
  (ADEPT's world model, :class:`adept.world_model.DiffusionDynamics`).
- :func:`gradient_guided` — a gradient term on chosen channels: an EDM denoiser whose implied
  score ∇ log p_σ(x) = (D(x; σ) − x) / σ² gains λ ∇_x log g(x), i.e.

      D̃(x; σ) = D(x; σ) + λ σ² m ⊙ ∇_x log g(x),

  with m the channel mask — Policy-Guided Diffusion's policy guidance, g = π(a | s) on the action
  channels of a trajectory. The gradient is taken with autograd inside the (no-grad) sampler.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adept.diffusion.edm import Denoise


def classifier_free(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, weight: float
) -> torch.Tensor:
    """(1 + w) ε(x, c) − w ε(x, ∅): w = 0 is the conditional model, w > 0 sharpens toward c."""
    return (1 + weight) * eps_cond - weight * eps_uncond


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
        with torch.enable_grad():
            point = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(log_density(point).sum(), point)
        if channels is not None:
            grad = grad * channels.to(grad.dtype)
        shape = (-1,) + (1,) * (x.dim() - 1)
        return denoise(x, sigma) + scale * sigma.view(shape) ** 2 * grad

    return guided
