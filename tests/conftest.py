"""Shared fixtures: small files in the exact D4RL layout, written by the tests themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest


def stopped_at(config: Any, at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``adept train`` of ``config`` until step ``at``, stopped there as Ctrl-C would stop it
    (the checkpoints before ``at`` are written, nothing after)."""
    import adept.train as train_module

    real_fit = train_module.fit

    def fit(agent: Any, method: Any, start: int, num_steps: int, *contexts: Any) -> Iterator[Any]:
        for step, metrics in real_fit(agent, method, start, num_steps, *contexts):
            if step == at:
                raise KeyboardInterrupt
            yield step, metrics

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "fit", fit)
        with pytest.raises(KeyboardInterrupt):
            train_module.train(config)


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


@pytest.fixture
def d4rl_file(tmp_path: Path) -> Path:
    return write_d4rl(tmp_path / "hopper_random-v2.hdf5", d4rl_arrays(), {"algorithm": "random"})


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's dataset cache or Minari folder from a test."""
    monkeypatch.setenv("ADEPT_DATA_DIR", str(tmp_path / "adept-data"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    # --precision auto means fp32 in every test, and in the processes tests start: the suite's
    # numbers must not depend on whether this CPU has bf16 (a test that wants bf16 asks for it)
    monkeypatch.setenv("ADEPT_PRECISION", "fp32")
    # --compile auto means off: the suite's runs do not pay compile times (a test that wants a
    # compiled update asks for it)
    monkeypatch.setenv("ADEPT_COMPILE", "off")
