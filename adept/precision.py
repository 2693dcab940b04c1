"""Numeric precision of training: fp32, or bf16 autocast (``adept train --precision``).

Under ``bf16`` the matrix products of the agent's update and of the methods' generative models
(training, sampling, the IS re-fit) run in bfloat16 through :func:`torch.autocast`; parameters,
optimizer state and gradients stay float32, and evaluation always runs in float32. On CPUs with
AVX-512 BF16 (or AMX) and on recent GPUs the products are faster; the price is a coarser
forward pass (8 bits of mantissa), which is what the precision benchmark measures.

Results computed under autocast differ from fp32 ones, so :func:`active` is part of every cache
key (:mod:`adept.artifacts`) and ``precision`` is part of a run's config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16"]

AUTO: dict[str, Literal["fp32", "bf16"]] = {"cpu": "fp32", "cuda": "fp32"}
"""What ``auto`` means on each device type."""


def resolve(precision: Precision, device: torch.device) -> Literal["fp32", "bf16"]:
    """``auto`` → the device type's default (:data:`AUTO`); otherwise ``precision``."""
    if precision == "auto":
        return AUTO.get(device.type, "fp32")
    return precision


def autocast(
    precision: Precision, device: torch.device
) -> Callable[[], AbstractContextManager[object]]:
    """A factory of contexts that run their block in ``precision`` on ``device``."""
    if resolve(precision, device) == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def active() -> str | None:
    """The autocast dtype in force here ('bfloat16', ...), or None in plain float32."""
    for device_type in ("cpu", "cuda"):
        if torch.is_autocast_enabled(device_type):
            return str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")
    return None
