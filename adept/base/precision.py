"""Numeric precision of training: fp32, or bf16 autocast (``adept train --precision``).

Under ``bf16`` the matrix products of the agent's update and of the methods' generative models
(training, sampling, the IS re-fit) run in bfloat16 through :func:`torch.autocast`; parameters,
optimizer state and gradients stay float32, and evaluation always runs in float32. On CPUs with
AVX-512 BF16 (or AMX) and on recent GPUs the products are faster; the price is a coarser
forward pass (8 bits of mantissa), which is what the precision benchmark measures.

The two parts of a run are set apart (:class:`Contexts`): the agent's update, and the method's
generative models. ``bf16`` and ``fp32`` set both; ``auto`` takes each part's measured default
on the device (:data:`AUTO`), so each part can take bf16 where measurement shows it free.

Results computed under autocast differ from fp32 ones, so :func:`active` is part of every cache
key (:mod:`adept.store.artifacts`) and ``precision`` is part of a run's config.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from adept.base.errors import AdeptError

Precision = Literal["auto", "fp32", "bf16"]

Part = Literal["agent", "model"]
"""What a context covers: the agent's update, or the method's generative models (set-up, batch
sampling, training, rollouts, re-fits)."""

AUTO: dict[str, dict[Part, Literal["fp32", "bf16"]]] = {
    "cpu": {"agent": "fp32", "model": "fp32"},
    "cuda": {"agent": "fp32", "model": "fp32"},
}
"""What ``auto`` means for each part on each device type (bf16 is taken only where
:func:`native_bf16`). Measured on the CPU (AVX-512 BF16, docs/results/precision-table-cpu20k):
bf16 runs the agents' updates 1.23–1.28× as fast and learned the same on hopper-random, but a
little worse on halfcheetah-random (8 of 9 agent × metric means lower, IQL's last score 7.7 vs
8.2, CIs overlapping at 3 seeds): not free, so fp32. The world model's accuracy is unchanged
under bf16, but no learning table has measured it inside ADEPT: fp32. CUDA: not measured yet."""


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 products natively: a GPU that supports bf16, or a CPU
    with AVX-512 BF16 or AMX (read from /proc/cpuinfo; elsewhere unknown, so False). On other
    CPUs bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


ENV = "ADEPT_PRECISION"
"""An environment variable that, set to fp32 or bf16, is what ``auto`` means on every device
and part (the test suite sets fp32, so that its numbers do not depend on the CPU it runs on)."""


def resolve(precision: Precision, device: torch.device, part: Part) -> Literal["fp32", "bf16"]:
    """``auto`` → the part's default on the device type (:data:`AUTO`), bf16 only where the
    device has it natively (:func:`native_bf16`), or what ``$ADEPT_PRECISION`` says; otherwise
    ``precision``, for every part."""
    if precision == "auto":
        forced = os.environ.get(ENV, "")
        if forced in ("fp32", "bf16"):
            return forced  # type: ignore[return-value]
        if forced:
            raise AdeptError(f"${ENV} must be fp32 or bf16, got {forced!r}; unset it or fix it")
        chosen = AUTO.get(device.type, {}).get(part, "fp32")
        return chosen if chosen == "fp32" or native_bf16(device) else "fp32"
    return precision


def autocast(
    precision: Precision, device: torch.device, part: Part
) -> Callable[[], AbstractContextManager[object]]:
    """A factory of contexts that run their block in ``part``'s precision on ``device``."""
    if resolve(precision, device, part) == "bf16":
        # No cast cache: by default autocast keeps the bf16 copy of each weight it casts until
        # the outermost context exits, so a loop of optimizer steps inside one context (world-
        # model pre-training, a re-fit's steps, a generator's training) would run every forward
        # on the weights of its first one and learn nothing.
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


@dataclass(frozen=True)
class Contexts:
    """The contexts a run's steps are computed in, one per part."""

    agent: Callable[[], AbstractContextManager[object]]
    model: Callable[[], AbstractContextManager[object]]

    @classmethod
    def of(cls, precision: Precision, device: torch.device) -> Contexts:
        return cls(autocast(precision, device, "agent"), autocast(precision, device, "model"))


FP32 = Contexts(contextlib.nullcontext, contextlib.nullcontext)
"""Both parts in plain float32."""


def active() -> str | None:
    """The autocast dtype in force here ('bfloat16', ...), or None in plain float32."""
    for device_type in ("cpu", "cuda"):
        if torch.is_autocast_enabled(device_type):
            return str(torch.get_autocast_dtype(device_type)).removeprefix("torch.")
    return None
