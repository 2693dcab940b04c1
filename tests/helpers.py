"""Helpers the tests share: small D4RL-layout files, a run stopped mid-way, and comparisons of
what runs leave behind."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch


def rows(run_dir: Path) -> list[dict[str, str]]:
    """A run's metrics.csv rows less the wall time (the one column two equal runs differ in)."""
    with (run_dir / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in csv.DictReader(f)]


def tensors(state, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state dict (modules and optimizers), by dotted path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, list):
        items = enumerate(state)
    else:
        return {}
    out: dict[str, torch.Tensor] = {}
    for key, value in items:
        out.update(tensors(value, f"{prefix}.{key}"))
    return out


def equal(a: Any, b: Any) -> bool:
    """Deep equality of checkpoint contents (independent of the digest under test)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


def stopped_at(config: Any, at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``adept train`` of ``config`` until step ``at``, stopped there as Ctrl-C would stop it
    (the checkpoints before ``at`` are written, nothing after)."""
    import adept.training.run as run_module
    from adept.training import train

    real_fit = run_module.fit

    def fit(agent: Any, method: Any, start: int, num_steps: int, *contexts: Any) -> Iterator[Any]:
        for step, metrics in real_fit(agent, method, start, num_steps, *contexts):
            if step == at:
                raise KeyboardInterrupt
            yield step, metrics

    with monkeypatch.context() as patch:
        patch.setattr(run_module, "fit", fit)
        with pytest.raises(KeyboardInterrupt):
            train(config)


def d4rl_arrays(obs_dim: int = 11, act_dim: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Two episodes, as D4RL stores them: a 4-step one ending in a terminal, then a 3-step one
    cut by a timeout. The terminal step's next observation is the fallen state, which differs
    from the next row (the next episode's reset state)."""
    rng = np.random.default_rng(seed)
    n = 7
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    next_obs = np.concatenate([obs[1:], rng.normal(size=(1, obs_dim))]).astype(np.float32)
    next_obs[3] = 99.0  # the terminal state, never seen as an observation
    terminals = np.zeros(n, dtype=bool)
    terminals[3] = True
    timeouts = np.zeros(n, dtype=bool)
    timeouts[6] = True
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "next_observations": next_obs,
        "terminals": terminals,
        "timeouts": timeouts,
        "infos/action_log_probs": np.full(n, -3 * np.log(2), dtype=np.float32),
    }


def write_d4rl(path: Path, arrays: dict[str, np.ndarray], metadata: dict | None = None) -> Path:
    """Write ``arrays`` with h5py in D4RL's layout (metadata as scalar datasets, as D4RL does)."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
        for key, value in (metadata or {}).items():
            f.create_dataset(f"metadata/{key}", data=value)
    return path


def changed(config: Any, **options: Any) -> Any:
    """``config`` (a frozen config dataclass) with nested options replaced, ``section__name=v``
    for ``section.name`` (``changed(TINY, rollout__horizon=3)``)."""
    from adept.bench.spec import apply_overrides

    return apply_overrides(config, {k.replace("__", "."): v for k, v in options.items()})
