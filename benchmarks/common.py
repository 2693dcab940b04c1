"""Helpers shared by the benchmark scripts: parallel training runs and table formatting."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from adept.train import TrainConfig, train


def _run(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    torch.set_num_threads(1)  # two workers on two cores; default threads would fight
    return config, train(config)


def run_parallel(
    configs: list[TrainConfig], workers: int
) -> Iterator[tuple[TrainConfig, dict[str, Any]]]:
    """Train every config (resuming finished or partial runs), ``workers`` at a time."""
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_run, configs)


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"
