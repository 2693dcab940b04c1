"""Synthetic-data methods plugged into the shared training loop, one file each on a shared base.

- :mod:`adept.methods.base` — the :class:`Method` hook interface (``--method none``: the dataset
  alone);
- :mod:`adept.methods.model_based` — Diff+X and ADEPT (``--method diffusion|adept``);
- :mod:`adept.methods.pretraining` — their cached β fit and world-model pre-training.
"""

from __future__ import annotations

from adept.data.buffer import ReplayBuffer
from adept.data.transitions import Transitions
from adept.methods.base import Method
from adept.methods.model_based import (
    ADEPTMethod,
    DiffusionMethod,
    ModelBasedConfig,
    Refitter,
    check_config,
)
from adept.methods.pretraining import (
    PRETRAIN_REVISION,
    HeldOutSelector,
    holdout_mask,
    pretrain,
    pretrain_key,
)

METHODS: dict[str, type[DiffusionMethod]] = {"diffusion": DiffusionMethod, "adept": ADEPTMethod}
"""The synthetic-data methods by ``--method`` name (``none``: :class:`Method` itself)."""


def make_method(
    name: str,
    data: Transitions,
    buffer: ReplayBuffer,
    batch_size: int,
    config: ModelBasedConfig,
    seed: int,
    num_steps: int | None = None,
) -> Method:
    """``none`` (the dataset alone), ``diffusion`` (Diff+X) or ``adept``."""
    if name == "none":
        return Method(data, buffer, batch_size)
    return METHODS[name](data, buffer, batch_size, config, seed, num_steps)


__all__ = [
    "METHODS",
    "PRETRAIN_REVISION",
    "ADEPTMethod",
    "DiffusionMethod",
    "HeldOutSelector",
    "Method",
    "ModelBasedConfig",
    "Refitter",
    "check_config",
    "holdout_mask",
    "make_method",
    "pretrain",
    "pretrain_key",
]
