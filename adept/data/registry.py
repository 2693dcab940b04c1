"""Name a dataset once, on the command line or in code, and get :class:`Transitions`.

A dataset spec is one of:

* a path to a D4RL-layout file (``*.hdf5``), ours or an original D4RL file;
* ``minari:<dataset-id>`` for a Minari dataset on local disk;
* a project name such as ``hopper-random``: made on first use with the default size and seed,
  then cached under ``$ADEPT_DATA_DIR`` (default ``~/.cache/adept/datasets``).
"""

from __future__ import annotations

import os
from pathlib import Path

from adept.data.cache import data_dir
from adept.data.generate import DEFAULT_NUM_STEPS, DEFAULT_SEED, make_dataset, parse_name
from adept.data.hdf5 import load_hdf5
from adept.data.minari_io import load_minari
from adept.data.transitions import Transitions
from adept.envs import check_dims
from adept.errors import AdeptError

MINARI_PREFIX = "minari:"


def cached_path(
    name: str,
    num_steps: int | None = None,
    seed: int = DEFAULT_SEED,
    sac_steps: int | None = None,
    sac_tag: str | None = None,
) -> Path:
    """Where ``adept data make NAME`` writes; a non-default size, seed, SAC budget or SAC
    config (``sac_tag``, see :meth:`adept.online.OnlineSACConfig.tag`) gets its own file."""
    suffix = ""
    if seed != DEFAULT_SEED:
        suffix += f"-seed{seed}"
    if num_steps is not None and num_steps != DEFAULT_NUM_STEPS:
        suffix += f"-n{num_steps}"
    if sac_steps is not None:
        suffix += f"-sac{sac_steps}"
    if sac_tag:
        suffix += f"-{sac_tag}"
    return data_dir() / f"{name}{suffix}.hdf5"


def is_path_spec(spec: str) -> bool:
    return spec.endswith((".hdf5", ".h5")) or os.sep in spec


def load_dataset(spec: str, env_id: str | None = None, progress: bool = True) -> Transitions:
    """Resolve a dataset spec (see module docstring) and check it against its env's dims."""
    if spec.startswith(MINARI_PREFIX):
        dataset_id = spec[len(MINARI_PREFIX) :]
        if not dataset_id:
            raise AdeptError(
                "empty minari dataset id; write minari:<dataset-id>, "
                "e.g. minari:mujoco/hopper/medium-v0"
            )
        data = load_minari(dataset_id, env_id=env_id)
    elif is_path_spec(spec):
        data = load_hdf5(spec, env_id=env_id)
    else:
        parse_name(spec)
        path = cached_path(spec)
        if not path.exists():
            make_dataset(spec, path, progress=progress)
        data = load_hdf5(path, env_id=env_id)
    if data.env_id is not None:
        check_dims(data.env_id, data.obs_dim, data.act_dim, data.source)
    return data
