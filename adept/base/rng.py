"""Random streams: named streams derived from a run's seed, streams that do not disturb the
run's own, and each seed's own stream of a pack."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Stream:
    """A named random stream of a run, derived from the run's seed and the stream's ``number``,
    so that a method's parts (its data samplers, its diagnostics, its generator's sampling)
    draw independently of each other and of the agent. A module declares its streams as
    constants; their numbers are fixed, as the results of every seed depend on them.

    Two derivations exist, each stream keeping the one it has always used: :meth:`offset`
    (``seed + number``, for replay buffers and torch generators) and :meth:`mixed` (the
    integer NumPy's :class:`~numpy.random.SeedSequence` hashes from ``(seed, number, ...)``,
    which shares nothing with neighbouring seeds' streams).
    """

    name: str
    number: int

    def offset(self, seed: int) -> int:
        """``seed + number``."""
        return seed + self.number

    def mixed(self, seed: int, *more: int) -> int:
        """An integer seed hashed from ``(seed, number, *more)``."""
        return int(np.random.SeedSequence([seed, self.number, *more]).generate_state(1)[0])

    def numpy(self, seed: int) -> np.random.Generator:
        """A NumPy generator of ``(seed, number)``."""
        return np.random.default_rng([seed, self.number])


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


def rng_state() -> dict[str, Any]:
    """torch's global RNG state (CPU, and every CUDA device's), for a checkpoint."""
    # numpy and Python RNGs are not used globally: data and eval seeds go through Generators
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch's global RNG (the only global one the library draws from)."""
    torch.manual_seed(seed)


class Streams:
    """Each seed's own stream of torch's global RNG: inside ``of(s)`` every draw (network
    initialization, an agent's noise, a method's sampling) comes from seed s's stream and
    advances it exactly as in a run of seed s alone."""

    def __init__(self, states: Sequence[dict[str, Any]]):
        self.states = list(states)

    @contextlib.contextmanager
    def of(self, seed: int) -> Iterator[None]:
        outside = rng_state()
        set_rng_state(self.states[seed])
        try:
            yield
        finally:
            self.states[seed] = rng_state()
            set_rng_state(outside)
