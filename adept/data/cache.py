"""Where the project keeps what it makes: datasets, and the SAC runs behind learned-policy data."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Cache folder of project datasets: ``$ADEPT_DATA_DIR`` or ``~/.cache/adept/datasets``."""
    return Path(os.environ.get("ADEPT_DATA_DIR", "~/.cache/adept/datasets")).expanduser()


def sac_runs_dir() -> Path:
    """Folder of the cached online-SAC runs (one per env, seed and budget)."""
    return data_dir() / "sac"
