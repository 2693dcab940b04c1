"""Training: the one loop (:mod:`~adept.training.loop`), a run's life around it
(:mod:`~adept.training.run`), several seeds in one process (:mod:`~adept.training.seeds`), the
divergence guard (:mod:`~adept.training.divergence`), the run's configuration
(:mod:`~adept.training.config`) and :func:`train`, the entry point (:mod:`~adept.training.api`).
"""

from adept.training.api import train
from adept.training.config import (
    RENAMED,
    TrainConfig,
    config_from_json,
    migrate_config,
    preset,
    preset_names,
    renamed,
    same_run_fields,
    unread_fields,
)
from adept.training.loop import fit
from adept.training.run import load_agent, make_agent

__all__ = [
    "RENAMED",
    "TrainConfig",
    "config_from_json",
    "fit",
    "load_agent",
    "make_agent",
    "migrate_config",
    "preset",
    "preset_names",
    "renamed",
    "same_run_fields",
    "train",
    "unread_fields",
]
