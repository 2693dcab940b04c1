"""Name a dataset once, on the command line or in code, and get :class:`Transitions`.

A dataset spec is one of:

* a path to a D4RL-layout file (``*.hdf5``), ours or an original D4RL file;
* ``minari:<dataset-id>`` for a Minari dataset on local disk;
* a project name such as ``hopper-random``: made on first use with the default size and seed,
  then cached under ``$ADEPT_DATA_DIR`` (default ``~/.cache/adept/datasets``). A cached file
  made by an older revision of its recipe (:data:`adept.data.generate.RECIPE_REVISION`) is
  remade, so a name always means the data the current code makes.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from adept.data.cache import data_dir
from adept.data.generate import (
    DEFAULT_NUM_STEPS,
    DEFAULT_SEED,
    RECIPE_REVISION,
    make_dataset,
    parse_name,
    recipe_revision,
)
from adept.data.hdf5 import load_hdf5, read_metadata
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


def load_dataset(
    spec: str, env_id: str | None = None, progress: bool = True, make_missing: bool = True
) -> Transitions:
    """Resolve a dataset spec (see module docstring) and check it against its env's dims.

    ``make_missing``: make a project dataset that is not cached (or is stale); off, say how to
    make it instead (``adept data info`` must not start an hour of SAC training).
    """
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
        data = load_hdf5(_cached_project_file(spec, progress, make_missing), env_id=env_id)
    if data.env_id is not None:
        check_dims(data.env_id, data.obs_dim, data.act_dim, data.source)
    return data


def cache_problem(name: str) -> str | None:
    """Why the default cached file of project dataset ``name`` cannot be used as it is (missing,
    or made by an older revision of its recipe), or None when it is current."""
    _, kind = parse_name(name)
    path = cached_path(name)
    if not path.exists():
        return f"{name} is not made yet (no {path})"
    made_by = recipe_revision(read_metadata(path))
    if made_by != RECIPE_REVISION[kind]:
        return (
            f"{path} was made by revision {made_by} of the {kind} recipe, which now makes "
            f"revision {RECIPE_REVISION[kind]}"
        )
    return None


def _cached_project_file(name: str, progress: bool, make_missing: bool) -> Path:
    """The default cached file of project dataset ``name``, made (or remade) if need be."""
    path = cached_path(name)
    problem = cache_problem(name)
    if problem is None:
        return path
    if not make_missing:
        variant = re.compile(rf"{re.escape(name)}(-(seed|n|sac)\d+|-cfg[0-9a-f]+)+\.hdf5")
        others = sorted(p.name for p in path.parent.glob("*.hdf5") if variant.fullmatch(p.name))
        hint = f", or give the path of one made with other settings ({', '.join(others)})"
        raise AdeptError(
            f"{problem}; make it with 'adept data make {name}'{hint if others else ''}"
        )
    print(f"{problem}; making it", file=sys.stderr)
    make_dataset(name, path, progress=progress)
    return path
