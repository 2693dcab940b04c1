"""The hook interface between the shared training loop and a synthetic-data method."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from adept.agents import Agent
from adept.base.errors import AdeptError
from adept.data.buffer import Batch, ReplayBuffer
from adept.data.transitions import Transitions


def check_generator_sizes(
    option: str, real_ratio: float, sizes: Any, positive: tuple[str, ...], ema_zero_ok: bool = False
) -> None:
    """The checks SynthER, PGD and DyDiff share (``option``: their flag prefix): the real share
    in [0, 1], the ``positive`` fields of ``sizes`` (their config) positive, at least 2 noise
    levels, and an EMA decay below 1 (and above 0 unless ``ema_zero_ok``)."""
    if not 0.0 <= real_ratio <= 1.0:
        raise AdeptError(f"--{option}.real-ratio must be in [0, 1], got {real_ratio}")
    for name in positive:
        if getattr(sizes, name) < 1:
            flag = f"--{option}." + name.replace("_", "-")
            raise AdeptError(f"{flag} must be positive, got {getattr(sizes, name)}")
    if sizes.sample_steps < 2:
        raise AdeptError(
            f"--{option}.sample-steps must be at least 2 (noise levels), got {sizes.sample_steps}"
        )
    low_ok = sizes.ema_decay >= 0.0 if ema_zero_ok else sizes.ema_decay > 0.0
    if not (low_ok and sizes.ema_decay < 1.0):
        bounds = "[0, 1)" if ema_zero_ok else "(0, 1)"
        raise AdeptError(f"--{option}.ema-decay must be in {bounds}, got {sizes.ema_decay}")


def mixed_sample(
    real: ReplayBuffer, synthetic: ReplayBuffer, batch_size: int, n_real: int
) -> Batch:
    """A batch of ``n_real`` rows from ``real`` and the rest from ``synthetic`` (all real while
    ``synthetic`` is empty)."""
    if n_real >= batch_size or len(synthetic) == 0:
        return real.sample(batch_size)
    if n_real <= 0:
        return synthetic.sample(batch_size)
    return Batch.cat([real.sample(n_real), synthetic.sample(batch_size - n_real)])


class Method:
    """How the agent gets its batches, and what happens between agent updates.

    The base class trains on the dataset alone (``--method none``). A synthetic-data method
    overrides :meth:`setup` (e.g. pre-train a world model), :meth:`sample` (mix real and
    synthetic data) and :meth:`after_update` (rollouts, model re-fits), and saves whatever it
    needs to resume in :meth:`state_dict`. Its options are a config dataclass held by the
    training config's field named :attr:`options` (``--adept.*``, ``--synther.*``), passed to
    the constructor and checked by :meth:`check` before anything is written.
    """

    name = "none"
    options: str | None = None
    """The name of its option section (``--adept.*``): a field of
    :class:`adept.training.TrainConfig` for adept's own methods, an entry of its ``plugins``
    for registered ones; None: no options. Two methods may share one (Diff+X and ADEPT)."""
    options_type: type | None = None
    """The dataclass of its options."""
    label: str = ""
    """Its prefix in reports' tables (ADEPT for ADEPT+IQL; empty for the dataset alone)."""
    unread_options: tuple[str, ...] = ()
    """Sections of that config this method never reads (Diff+X: ADEPT's ``refit``)."""
    presets: Mapping[str, Any] = {}
    """Named configs to start from (``--<options>.preset NAME``): the option values of, e.g.,
    the paper's sizes and a CPU's."""

    def __init__(
        self,
        data: Transitions,
        buffer: ReplayBuffer,
        batch_size: int,
        config: Any = None,
        seed: int = 0,
        num_steps: int | None = None,
    ):
        self.data = data
        self.buffer = buffer
        self.batch_size = batch_size

    @staticmethod
    def check(config: Any, data: Transitions) -> None:
        """Refuse a config that cannot work with ``data`` (an :class:`AdeptError`)."""

    def setup(self, agent: Agent) -> dict[str, float]:
        """Work before the first agent step; returns metrics to log at step 0."""
        return {}

    def sample(self, step: int) -> Batch:
        """The agent's batch for ``step``."""
        return self.buffer.sample(self.batch_size)

    def after_update(self, step: int, agent: Agent) -> dict[str, torch.Tensor]:
        """Work after the agent's update at ``step``; returns detached scalar metrics."""
        return {}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers that keep training during the run (a divergence rollback scales
        their learning rates); none by default."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any], agent: Agent) -> None:
        """Restore from :meth:`state_dict`; ``agent`` is the already-restored agent."""
        self.buffer.load_state_dict(state["buffer"])
