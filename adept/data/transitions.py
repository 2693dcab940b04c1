"""The one transition format every loader returns and every method consumes.

Fields use D4RL spelling. ``terminals`` marks true termination (no bootstrap from the next state);
``timeouts`` marks truncation (episode cap or end of data: bootstrap as usual). The two are kept
apart everywhere. ``next_observations`` is always the state the environment returned, never
``observations[i + 1]``: at a terminal or timed-out step the next row belongs to another episode.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adept.base.errors import AdeptError, warn

REQUIRED_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
)
OPTIONAL_FIELDS = ("action_log_probs",)


@dataclass(frozen=True)
class Stats:
    """Per-dimension statistics of one quantity (shape ``[dim]``, or ``[]`` for rewards)."""

    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Stats:
        x64 = x.astype(np.float64)
        return cls(
            mean=x64.mean(axis=0).astype(np.float32),
            std=x64.std(axis=0).astype(np.float32),
            min=x.min(axis=0).astype(np.float32),
            max=x.max(axis=0).astype(np.float32),
        )


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of a dataset, used to normalize inputs and clip model outputs.

    State statistics are taken over observations *and* next observations: a world model
    normalizes and clips next states too, and terminal next states never appear as observations.
    """

    states: Stats
    rewards: Stats


@dataclass(frozen=True, eq=False)
class Transitions:
    """A dataset of transitions in D4RL spelling, with episode boundaries and metadata.

    Arrays: ``observations``/``next_observations`` float32 ``[N, obs_dim]``, ``actions`` float32
    ``[N, act_dim]``, ``rewards`` float32 ``[N]``, ``terminals``/``timeouts`` bool ``[N]``, and
    ``action_log_probs`` float32 ``[N]`` (log β(a|s) of the collecting policy) when known.
    Construction validates lengths, dimensions and finiteness and raises :class:`AdeptError`.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    action_log_probs: np.ndarray | None = None
    env_id: str | None = None
    """Gymnasium id of the environment the data comes from, when known."""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Provenance: kind, seed, package version, reference returns, ... (JSON-compatible)."""
    source: str = "<memory>"
    """Where the data was loaded from; used in error messages."""

    def __post_init__(self) -> None:
        casts = {
            "observations": np.float32,
            "actions": np.float32,
            "rewards": np.float32,
            "next_observations": np.float32,
            "terminals": np.bool_,
            "timeouts": np.bool_,
            "action_log_probs": np.float32,
        }
        for name, dtype in casts.items():
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value)
            if dtype is np.bool_ and value.dtype != np.bool_:
                odd = ~np.isin(value, (0, 1))
                if odd.any():
                    raise AdeptError(
                        f"dataset {self.source}: field '{name}' must hold flags (0 or 1), but "
                        f"{int(odd.sum())} row(s) hold other values (e.g. {value[odd].flat[0]})"
                    )
            if name in ("rewards", "terminals", "timeouts", "action_log_probs"):
                value = value.reshape(-1) if value.ndim == 2 and value.shape[1] == 1 else value
            object.__setattr__(self, name, np.ascontiguousarray(value, dtype=dtype))
        self._validate()
        both = self.terminals & self.timeouts
        if both.any():  # the env ended the episode: no bootstrapping, whatever the clock said
            object.__setattr__(self, "timeouts", self.timeouts & ~self.terminals)
            warn(
                f"dataset {self.source}: {int(both.sum())} row(s) are both terminal and timed "
                "out; they are kept as terminal (a true end: no bootstrapping) and the timeout "
                "cleared"
            )

    def _validate(self) -> None:
        where = f"dataset {self.source}"
        n = len(self.observations)
        for name in (*REQUIRED_FIELDS, *OPTIONAL_FIELDS):
            value = getattr(self, name)
            if value is None:
                continue
            if len(value) != n:
                raise AdeptError(
                    f"{where}: field '{name}' has {len(value)} rows but 'observations' has {n}; "
                    "all fields must have one row per transition"
                )
        if n == 0:
            raise AdeptError(f"{where}: holds no transitions")
        for name, ndim in (("observations", 2), ("next_observations", 2), ("actions", 2)):
            if getattr(self, name).ndim != ndim:
                raise AdeptError(
                    f"{where}: field '{name}' must be 2-D [transitions, dim], "
                    f"got shape {getattr(self, name).shape}"
                )
        for name in ("rewards", "terminals", "timeouts", "action_log_probs"):
            value = getattr(self, name)
            if value is not None and value.ndim != 1:
                raise AdeptError(f"{where}: field '{name}' must be 1-D, got shape {value.shape}")
        for name in ("observations", "actions"):
            if getattr(self, name).shape[1] == 0:
                raise AdeptError(
                    f"{where}: field '{name}' has no columns (shape "
                    f"{getattr(self, name).shape}); each row needs at least one value"
                )
        if self.next_observations.shape[1] != self.observations.shape[1]:
            raise AdeptError(
                f"{where}: 'next_observations' has dim {self.next_observations.shape[1]} but "
                f"'observations' has dim {self.observations.shape[1]}"
            )
        for name in ("observations", "actions", "rewards", "next_observations", "action_log_probs"):
            value = getattr(self, name)
            if value is None:
                continue
            bad = int(np.count_nonzero(~np.isfinite(value)))
            if bad:
                raise AdeptError(
                    f"{where}: field '{name}' holds {bad} NaN/inf value(s); "
                    "clean or regenerate the dataset"
                )

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def kind(self) -> str | None:
        """Protocol kind (``random``, ``medium``, ...) when the metadata says."""
        kind = self.metadata.get("kind")
        return None if kind is None else str(kind)

    @functools.cached_property
    def episode_ends(self) -> np.ndarray:
        """Index of the last transition of each episode (terminal, timeout, or end of data).
        Computed once: a dataset is not changed after construction (trajectory segments look
        it up on every batch)."""
        ends = self.terminals | self.timeouts
        ends = ends.copy()
        ends[-1] = True
        return np.flatnonzero(ends)

    @property
    def episode_starts(self) -> np.ndarray:
        ends = self.episode_ends
        return np.concatenate([[0], ends[:-1] + 1])

    @property
    def num_episodes(self) -> int:
        return len(self.episode_ends)

    def episodes(self) -> Iterator[slice]:
        """Slices of consecutive transitions, one per episode."""
        for start, end in zip(self.episode_starts, self.episode_ends, strict=True):
            yield slice(int(start), int(end) + 1)

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode, float64 ``[episodes]``."""
        cumulative = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        return cumulative[self.episode_ends + 1] - cumulative[self.episode_starts]

    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts + 1

    def stats(self) -> DatasetStats:
        states = np.concatenate([self.observations, self.next_observations], axis=0)
        return DatasetStats(states=Stats.of(states), rewards=Stats.of(self.rewards))

    def arrays(self) -> dict[str, np.ndarray]:
        """The data fields that are present, by D4RL name."""
        out = {name: getattr(self, name) for name in REQUIRED_FIELDS}
        if self.action_log_probs is not None:
            out["action_log_probs"] = self.action_log_probs
        return out

    def fingerprint(self) -> str:
        """blake2b (128-bit hex) of the data fields' names, dtypes, shapes and raw bytes.

        Names what the data *is*, not where it came from (env id, metadata and source are left
        out), so cached results computed from it are shared by every file with the same content.
        Costs one pass over the arrays: ≈ 0.2 s for 1M hopper rows (110 MB), ≈ 0.3 s for 1M
        halfcheetah rows (170 MB) on one CPU core, against minutes of what it keys.
        """
        digest = hashlib.blake2b(digest_size=16)
        for name, value in self.arrays().items():
            digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
            digest.update(np.ascontiguousarray(value).data)
        return digest.hexdigest()

    def replace(self, **changes: Any) -> Transitions:
        return dataclasses.replace(self, **changes)

    def subset(self, mask: np.ndarray) -> Transitions:
        """The transitions selected by a boolean mask or an index array (same env and metadata)."""
        return self.replace(**{name: value[mask] for name, value in self.arrays().items()})

    @staticmethod
    def concatenate(parts: list[Transitions], **kwargs: Any) -> Transitions:
        """Join datasets end to end; ``action_log_probs`` survive only if every part has them."""
        if not parts:
            raise ValueError("concatenate needs at least one dataset")
        arrays: dict[str, Any] = {
            name: np.concatenate([getattr(p, name) for p in parts]) for name in REQUIRED_FIELDS
        }
        if all(p.action_log_probs is not None for p in parts):
            arrays["action_log_probs"] = np.concatenate(
                [p.action_log_probs for p in parts if p.action_log_probs is not None]
            )
        kwargs.setdefault("env_id", parts[0].env_id)
        return Transitions(**arrays, **kwargs)
