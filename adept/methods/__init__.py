"""Synthetic-data methods plugged into the shared training loop, one file each on a shared base.

- :mod:`adept.methods.base` — the :class:`Method` hook interface (``--method none``: the dataset
  alone) and the mixed real/synthetic sampler;
- :mod:`adept.methods.adept` — ADEPT+X and Diff+X, ADEPT without the re-fit
  (``--method adept|diffusion``, options ``--adept.*``);
- :mod:`adept.methods.synther` — SynthER+X (``--method synther``, options ``--synther.*``);
- :mod:`adept.methods.pgd` — Policy-Guided Diffusion + X (``--method pgd``, options ``--pgd.*``);
- :mod:`adept.methods.dydiff` — DyDiff + X (``--method dydiff``, options ``--dydiff.*``);
- :mod:`adept.methods.trajectories` — what PGD and DyDiff share: segments as tensors, training.
"""

from __future__ import annotations

from typing import Any

from adept.data.buffer import ReplayBuffer
from adept.data.transitions import Transitions
from adept.methods.adept import ADEPTConfig, ADEPTMethod, DiffusionMethod, check_config
from adept.methods.base import Method, mixed_sample
from adept.methods.dydiff import DyDiffConfig, DyDiffMethod
from adept.methods.pgd import PGDConfig, PGDMethod
from adept.methods.synther import SynthERConfig, SynthERMethod

METHODS: dict[str, type[Method]] = {
    "none": Method,
    "diffusion": DiffusionMethod,
    "adept": ADEPTMethod,
    "synther": SynthERMethod,
    "pgd": PGDMethod,
    "dydiff": DyDiffMethod,
}
"""The methods by ``--method`` name; each one's options live in the training config's section
``METHODS[name].options``, as agents' do under their own names.
:func:`adept.registry.register` adds one."""


def method_options(name: str, config: Any) -> Any:
    """Method ``name``'s options from a training config (``config.adept``, a registered
    method's section, or None for a method without options)."""
    section = METHODS[name].options
    return None if section is None else config.section(section)


def check_method(config: Any, data: Transitions) -> None:
    """Check a training config's method options against ``data`` (an :class:`AdeptError`
    when they cannot work), before anything is written: ``adept train`` and ``adept bench``."""
    METHODS[config.method].check(method_options(config.method, config), data)


def make_method(
    name: str,
    data: Transitions,
    buffer: ReplayBuffer,
    batch_size: int,
    config: Any,
    seed: int,
    num_steps: int | None = None,
) -> Method:
    """Method ``name`` with its options ``config`` (:func:`method_options`); its constructor
    checks them."""
    return METHODS[name](data, buffer, batch_size, config, seed, num_steps)


__all__ = [
    "METHODS",
    "ADEPTConfig",
    "ADEPTMethod",
    "DiffusionMethod",
    "DyDiffConfig",
    "DyDiffMethod",
    "Method",
    "PGDConfig",
    "PGDMethod",
    "SynthERConfig",
    "SynthERMethod",
    "check_config",
    "check_method",
    "make_method",
    "method_options",
    "mixed_sample",
]
