"""Compiled agent updates (``adept train --compile auto|on|off``).

Under ``on`` each loss of the agent's update (:class:`adept.agents.Phase`) runs through
:func:`torch.compile`: its forward and backward become a few fused kernels (inductor: C++ on a
CPU, Triton on a GPU) instead of a few hundred small ones, each with its Python dispatch. The
networks, optimizers and state dicts stay the eager ones, so checkpoints, resumes and a run
switching between compiled and eager are unchanged; the numbers equal the eager run's to float
rounding (fused kernels sum in another order). The first update of each loss compiles it: 15.6 s
for IQL on 2 CPU cores, 2–5 s when inductor's cache (under /tmp) already holds it.

Measured on 2 CPU cores (``benchmarks.compiled``, hopper-random, batch 256, networks 256 × 2,
fp32): compiled IQL runs 1.20× as many updates per second and BC 1.10×, but SAC 0.84× and TD3+BC
0.86× (at one thread 1.18×, 1.07×, 0.77×, 0.81×). Their actor losses back-propagate through a
frozen critic; there inductor's kernels for the critic's ReLUs (the activation with its saved
mask, 0.8 ms a call, and its backward, 0.25 ms) take far longer than their 131k elements need.
It comes with the frozen parameters: that critic alone runs 3× slower compiled than eager, but
1.15× faster with its parameters trainable; and SAC and TD3+BC compiled without freezing the
critic (paying for its unused weight gradients) only match eager (209 and 288 updates/s).
So ``auto`` compiles where it was measured faster (:data:`FASTER`), the run is long enough to
repay the compile (:data:`MIN_STEPS`) and the tools are at hand (:func:`has_compiler`);
``$ADEPT_COMPILE=on|off`` says what ``auto`` means (the test suite sets off, so that its runs
do not pay compile times).
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path
from typing import Literal

import torch

from adept.base.errors import AdeptError

Compile = Literal["auto", "on", "off"]

FASTER: dict[str, frozenset[str]] = {"cpu": frozenset({"iql", "bc"}), "cuda": frozenset()}
"""The agents whose compiled update ``auto`` takes, by device type: measured faster on the CPU
(see the module's text); on CUDA not measured yet (``--cuda-graphs`` is that device's lever)."""

MIN_STEPS = 20_000
"""Shortest run that ``auto`` compiles: at IQL's 223 → 266 updates/s on 2 cores, 20k steps
save ≈ 14.5 s, about what a cold compile costs (15.6 s)."""

ENV = "ADEPT_COMPILE"
"""An environment variable that, set to on or off, is what ``auto`` means."""


def has_compiler() -> bool:
    """Whether inductor can build its CPU kernels here: a C++ compiler on the PATH and Python's
    headers (its kernels are Python extension modules; a Debian python3 without python3-dev
    lacks them)."""
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler

        compiler = shutil.which(get_cpp_compiler()) is not None
    except Exception:  # no compiler found, or an inductor without the helper
        compiler = shutil.which("g++") is not None
    return compiler and headers.exists()


def resolve(compile: Compile, device: torch.device, agent: str, num_steps: int) -> bool:
    """Whether a run of ``agent`` for ``num_steps`` on ``device`` compiles its update: ``on``
    and ``off`` as said; ``auto`` as ``$ADEPT_COMPILE`` says, else where measured faster
    (:data:`FASTER`) for runs of :data:`MIN_STEPS` and more, with a compiler at hand."""
    asked, off = "--compile on", "--compile off"
    if compile == "auto":
        override = os.environ.get(ENV, "")
        if override not in ("", "on", "off"):
            raise AdeptError(f"${ENV} must be on or off, got {override!r}; unset it or fix it")
        if override:
            compile = "on" if override == "on" else "off"
            asked, off = f"${ENV}=on (what --compile auto means here)", f"unset ${ENV}"
        else:
            faster = agent in FASTER.get(device.type, frozenset())
            return faster and num_steps >= MIN_STEPS and (device.type != "cpu" or has_compiler())
    if compile == "on" and device.type == "cpu" and not has_compiler():
        raise AdeptError(
            f"{asked} needs a C++ compiler on the PATH (g++) and Python's headers for "
            f"torch.compile on a CPU; install them (apt install g++ python3-dev) or {off}"
        )
    return compile == "on"
