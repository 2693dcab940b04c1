"""Random streams that do not disturb the training run's own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def cuda_indices(device: torch.device) -> list[int]:
    """The CUDA devices whose RNG :func:`torch.random.fork_rng` must fork for ``device``."""
    if device.type != "cuda":
        return []
    return [torch.cuda.current_device() if device.index is None else device.index]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the block on torch's global RNG seeded with ``seed``; afterwards the global RNG
    (CPU and ``device``'s) is exactly as it was before."""
    with torch.random.fork_rng(devices=cuda_indices(device)):
        torch.manual_seed(seed)
        yield
