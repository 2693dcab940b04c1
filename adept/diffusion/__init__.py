"""Diffusion models independent of RL: schedules, losses, samplers and denoiser networks that
the world models and the synthetic-data methods are built on.

- :mod:`adept.diffusion.ddpm` — DDPM's cosine schedule, forward noising and posterior (ADEPT's
  world model samples with the ancestral chain over it);
- :mod:`adept.diffusion.edm` — EDM's preconditioning, loss and Heun sampler (SynthER);
- :mod:`adept.diffusion.denoisers` — residual-MLP denoisers: DDPM's over the integer step, EDM's
  over the continuous noise level (:class:`ResidualMLP`);
- :mod:`adept.diffusion.unet` — the 1-D temporal U-Net over trajectory segments ``[L, C]``;
- :mod:`adept.diffusion.guidance` — classifier-free guidance and a gradient term on chosen
  channels (PGD's policy guidance);
- :mod:`adept.diffusion.ema` — weight averaging (EMA) for sampling.
"""

from adept.diffusion.ddpm import DiffusionSchedule, cosine_alphas_cumprod
from adept.diffusion.denoisers import (
    Denoiser,
    FourierEmbedding,
    ResidualBlock,
    ResidualMLP,
    SinusoidalEmbedding,
)
from adept.diffusion.edm import EDM, EDMConfig, Preconditioning, edm_loss, heun_sample, sigma_steps
from adept.diffusion.guidance import classifier_free, gradient_guided
from adept.diffusion.unet import UNET_SIZES, TemporalUNet, UNetSize

__all__ = [
    "EDM",
    "UNET_SIZES",
    "Denoiser",
    "DiffusionSchedule",
    "EDMConfig",
    "FourierEmbedding",
    "Preconditioning",
    "ResidualBlock",
    "ResidualMLP",
    "SinusoidalEmbedding",
    "TemporalUNet",
    "UNetSize",
    "classifier_free",
    "cosine_alphas_cumprod",
    "edm_loss",
    "gradient_guided",
    "heun_sample",
    "sigma_steps",
]
