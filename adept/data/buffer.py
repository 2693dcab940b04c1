"""Transitions as tensors on the training device, and fast uniform batch sampling.

The whole dataset is copied to the device once, every field a column block of one row-major
table; a batch is then one ``randint`` and one gather of whole rows on that device (the batch's
fields are views of the gathered rows), with no per-batch numpy → torch copy and no host
synchronisation. The same buffer serves as a ring buffer for synthetic or online data (``add``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from adept.data.transitions import Transitions


@dataclass(frozen=True)
class Batch:
    """A batch of transitions, D4RL names; float32 tensors, ``[batch, dim]`` or ``[batch]``.

    ``terminals`` and ``timeouts`` are 0/1 floats so they enter losses directly: the TD target
    is ``r + γ (1 − terminal) V(s′)``; timeouts still bootstrap.
    """

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminals: torch.Tensor
    timeouts: torch.Tensor
    action_log_probs: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.observations.shape[0])

    @staticmethod
    def of(data: Transitions, device: torch.device | str = "cpu") -> Batch:
        """All of ``data`` as one batch on ``device``."""
        return Batch(
            **{
                name: torch.from_numpy(value).to(device, torch.float32)
                for name, value in data.arrays().items()
            }
        )

    def take(self, index: torch.Tensor) -> Batch:
        """The rows ``index`` (a 1-D long tensor on the batch's device), repeats allowed."""
        picked: dict[str, Any] = {
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
            for f in fields(self)
        }
        return Batch(**picked)

    @staticmethod
    def cat(batches: list[Batch]) -> Batch:
        """Concatenate along the batch axis (e.g. real and synthetic data)."""
        out: dict[str, Any] = {}
        for f in fields(Batch):
            parts = [getattr(b, f.name) for b in batches]
            out[f.name] = None if any(p is None for p in parts) else torch.cat(parts)
        return Batch(**out)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class ReplayBuffer:
    """Fixed-capacity transition storage on one device with uniform sampling.

    Built from a dataset with :meth:`from_transitions` (full, never overwritten) or empty with a
    capacity, then filled by :meth:`add` as a ring buffer (oldest data overwritten first).
    """

    def __init__(
        self,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        device: str | torch.device = "auto",
        with_log_probs: bool = False,
        seed: int = 0,
    ):
        self.device = resolve_device(device)
        self.capacity = capacity
        # (field, width; 0 for a scalar field): the column blocks of one row of the table
        layout = [
            ("observations", obs_dim),
            ("actions", act_dim),
            ("rewards", 0),
            ("next_observations", obs_dim),
            ("terminals", 0),
            ("timeouts", 0),
        ] + ([("action_log_probs", 0)] if with_log_probs else [])
        self._layout: list[tuple[str, int, int, int]] = []  # (field, start, stop, width)
        start = 0
        for name, width in layout:
            self._layout.append((name, start, start + max(width, 1), width))
            start += max(width, 1)
        self._table = torch.zeros(capacity, start, device=self.device, dtype=torch.float32)
        columns = self._columns(self._table)
        self.observations = columns["observations"]
        self.actions = columns["actions"]
        self.rewards = columns["rewards"]
        self.next_observations = columns["next_observations"]
        self.terminals = columns["terminals"]
        self.timeouts = columns["timeouts"]
        self.action_log_probs = columns.get("action_log_probs")
        self.size = 0
        self._cursor = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    @classmethod
    def from_transitions(
        cls, data: Transitions, device: str | torch.device = "auto", seed: int = 0
    ) -> ReplayBuffer:
        buffer = cls(
            len(data),
            data.obs_dim,
            data.act_dim,
            device=device,
            with_log_probs=data.action_log_probs is not None,
            seed=seed,
        )
        buffer.add(Batch.of(data))
        return buffer

    def __len__(self) -> int:
        return self.size

    def _fields(self) -> list[str]:
        return [name for name, *_ in self._layout]

    def _columns(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each field's view of table rows ``rows`` ``[n, row width]``."""
        return {
            name: rows[:, start:stop] if width else rows[:, start]
            for name, start, stop, width in self._layout
        }

    def add(self, batch: Batch) -> None:
        """Append a batch, overwriting the oldest rows once full."""
        n = len(batch)
        if n > self.capacity:
            tail: dict[str, Any] = {
                f.name: _tail(getattr(batch, f.name), self.capacity) for f in fields(batch)
            }
            batch = Batch(**tail)
            n = self.capacity
        positions = (torch.arange(n, device=self.device) + self._cursor) % self.capacity
        blocks = []
        for name in self._fields():
            value = getattr(batch, name)
            if value is None:
                raise ValueError(f"batch lacks '{name}', which this buffer stores")
            blocks.append(value.to(self.device, torch.float32).reshape(n, -1))
        self._table.index_copy_(0, positions, torch.cat(blocks, dim=1))
        self._cursor = (self._cursor + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def clear(self) -> None:
        """Forget every row (the storage and the sampling RNG are kept)."""
        self.size = 0
        self._cursor = 0

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A uniform batch (with replacement), drawn on the buffer's device with the buffer's
        own generator, or with ``generator`` (which leaves the buffer's stream untouched)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        rng = self.generator if generator is None else generator
        idx = torch.randint(self.size, (batch_size,), device=self.device, generator=rng)
        return Batch(**self._columns(self._table[idx]))

    def state_dict(self, include_data: bool = False) -> dict[str, Any]:
        """Sampling RNG and fill state; the stored rows too with ``include_data`` (for buffers
        filled by ``add``; a dataset's rows are re-derived from the dataset)."""
        state: dict[str, Any] = {
            "size": self.size,
            "cursor": self._cursor,
            "rng": self.generator.get_state(),
        }
        if include_data:
            # copies: a view would save the whole table
            state["data"] = {
                name: getattr(self, name)[: self.size].to(
                    "cpu", memory_format=torch.contiguous_format, copy=True
                )
                for name in self._fields()
            }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self._cursor = int(state["cursor"])
        self.generator.set_state(state["rng"])
        for name, value in state.get("data", {}).items():
            getattr(self, name)[: len(value)] = value.to(self.device)


def _tail(value: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return None if value is None else value[-n:]
