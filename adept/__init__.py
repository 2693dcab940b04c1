"""adept: offline reinforcement learning with adaptive diffusion world models."""

__version__ = "0.1.0"
