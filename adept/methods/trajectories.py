"""What the trajectory-diffusion methods share (Policy-Guided Diffusion, DyDiff): segments of a
dataset as tensors, and training a diffusion model on them.

Both train an EDM over windows of L consecutive rows of one episode
(:mod:`adept.data.segments`, padded as an absorbing state after a terminal) with the shared
:func:`adept.diffusion.training.train_averaged` (an EMA of the weights); they differ in what
the model generates (PGD: whole rows [s, a, r, terminal]; DyDiff: the states, given the actions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from adept.base.errors import AdeptError
from adept.base.rng import Stream
from adept.data.segments import Segments, gather_segments, segment_starts
from adept.data.transitions import Transitions
from adept.diffusion.edm import EDMConfig
from adept.diffusion.training import train_averaged
from adept.diffusion.unet import UNetSize

SEGMENT_BATCHES = Stream("the training batches of segments", 3)


@dataclass(frozen=True)
class SegmentRows:
    """Segments as tensors ``[B, L, ...]``: the rows a segment model generates."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminals: torch.Tensor

    @staticmethod
    def of(segments: Segments, device: torch.device | str = "cpu") -> SegmentRows:
        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=device)

        return SegmentRows(
            tensor(segments.observations),
            tensor(segments.actions),
            tensor(segments.rewards),
            tensor(segments.terminals),
        )


@dataclass(frozen=True)
class SegmentTraining:
    """How a segment model is trained (defaults: PGD's released code, L = 32, stride 8, batch
    32, Adam at 2e-3 warmed up over 10 % of training then cosine, EMA ≈ 0.9995 per step)."""

    size: UNetSize
    length: int = 32
    stride: int = 8
    steps: int = 10_000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_fraction: float = 0.1
    ema_decay: float = 0.9995
    groups: int = 8
    edm: EDMConfig = field(default_factory=EDMConfig)


M = TypeVar("M", bound=nn.Module)


def build_model(model_class: type[M], data: Transitions, training: SegmentTraining) -> M:
    """An untrained ``model_class`` (PGD's :class:`~adept.methods.pgd.SegmentModel`, DyDiff's
    :class:`~adept.methods.dydiff.StateTrajectoryModel`) of ``training``'s network for ``data``."""
    return model_class(data, training.size, training.edm, training.groups)


def check_segments_fit(data: Transitions, training: SegmentTraining, option: str) -> None:
    """Refuse, before anything is written, a training segment length that no episode of
    ``data`` holds (``option``: the flag that sets it, for the message)."""
    if len(segment_starts(data, training.length, training.stride, short="pad")) == 0:
        raise AdeptError(
            f"no training segment of {training.length} rows fits in "
            f"{data.source or 'the data'} (episodes too short and none ends in a terminal); "
            f"lower {option}"
        )


def train_on_segments(
    model_class: type[nn.Module],
    data: Transitions,
    training: SegmentTraining,
    seed: int,
    device: torch.device,
    snapshots: tuple[int, ...] = (),
    prefix: str = "segments",
) -> dict[str, Any]:
    """Train a ``model_class`` (:func:`build_model`; its ``loss`` takes :class:`SegmentRows`)
    on ``data``'s padded segments; returns the EMA weights' state dict (``model``, on the CPU),
    the last step's ``metrics`` (named ``<prefix>/...``) and, under ``snapshots``, the EMA
    weights after each of those step counts (to measure a training curve in one run). A pure
    function of its inputs (segments drawn by a seeded numpy generator, the model built and
    trained under a forked, seeded torch RNG), so a cached result equals a fresh one and the
    caller's RNG is left as it was."""
    t = training
    starts = segment_starts(data, t.length, t.stride, short="pad")
    if len(starts) == 0:
        raise ValueError(f"no segment of {t.length} rows fits in the data; use a shorter length")
    pick = SEGMENT_BATCHES.numpy(seed)

    def next_batch() -> SegmentRows:
        return SegmentRows.of(
            gather_segments(data, pick.choice(starts, t.batch_size), t.length), device
        )

    return train_averaged(
        lambda: build_model(model_class, data, t), next_batch, t.steps, seed, device,
        lr=t.lr, ema_decay=t.ema_decay, warmup=round(t.warmup_fraction * t.steps),
        prefix=prefix, snapshots=snapshots,
    )  # fmt: skip


def training_key(
    data: Transitions,
    training: SegmentTraining,
    revision: int,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Everything :func:`train_on_segments`' result depends on for a model of ``training``'s
    size (and a method's recipe ``revision``), and nothing else: the cache key of a trained
    trajectory model, shared by runs that differ only elsewhere. ``training`` enters whole, so
    a field added to it changes the key."""
    return {
        "revision": revision,
        "data": data.fingerprint(),
        "training": training,
        "seed": seed,
        "device": device.type,
        "torch": torch.__version__,
    }
