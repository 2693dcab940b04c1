"""Diffusion models independent of RL: schedules, losses, samplers and denoiser wrappers that the
world models and the synthetic-data methods are built on."""

from adept.diffusion.edm import EDM, EDMConfig, Preconditioning, edm_loss, heun_sample, sigma_steps

__all__ = ["EDM", "EDMConfig", "Preconditioning", "edm_loss", "heun_sample", "sigma_steps"]
