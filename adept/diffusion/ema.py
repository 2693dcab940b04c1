"""Weight averaging: an exponential moving average of a module's parameters, as DDPM, SynthER and
PGD sample from (torch's :class:`~torch.optim.swa_utils.AveragedModel`), and plain copies of
parameters in and out of a module."""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from adept.base.errors import AdeptError


def parameters_of(module: torch.nn.Module) -> list[torch.Tensor]:
    """Detached copies of ``module``'s parameters, in order."""
    return [p.detach().clone() for p in module.parameters()]


@torch.no_grad()
def load_parameters(module: torch.nn.Module, values: list[torch.Tensor]) -> None:
    """Copy ``values`` (as :func:`parameters_of` returns them) into ``module``'s parameters."""
    for target, value in zip(module.parameters(), values, strict=True):
        target.copy_(value)


def weight_average(module: torch.nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``module``'s parameters, θ̄ ← d θ̄ + (1 − d) θ at each
    ``update_parameters(module)``, starting from its weights now; the average is the returned
    model's ``.module`` (a copy of ``module`` whose buffers, such as normalizers, are constants
    here and are not averaged)."""
    if not 0.0 < decay < 1.0:
        raise AdeptError(f"an EMA decay must be in (0, 1), got {decay}")
    average = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay))
    average.update_parameters(module)  # the first update copies: θ̄₀ = θ₀
    return average
