"""``train(config)``: the entry point of ``adept train`` and of Python callers."""

from __future__ import annotations

from typing import Any

from adept.base.errors import AdeptError
from adept.datasets.registry import load_dataset
from adept.methods import (
    check_method,
)
from adept.training.config import TrainConfig
from adept.training.run import run_dir, train_in
from adept.training.seeds import train_seeds


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume, or report a finished run) and return the run's summary. The run
    directory is locked while this runs: a second process on it is refused. With ``seeds``,
    every seed's run (see :func:`train_seeds`); the summaries by run directory."""
    config.validate()
    data = load_dataset(config.dataset, env_id=config.env_id, progress=config.progress)
    if data.env_id is None:
        raise AdeptError(f"dataset {config.dataset} names no env; pass --env-id (e.g. Hopper-v5)")
    check_method(config, data)  # before the run directory is written
    if config.seeds:
        return {"runs": train_seeds(config, data, data.env_id)}
    with run_dir(config, data.fingerprint()) as run:
        return train_in(run, config, data, data.env_id)
