"""Name a dataset once, on the command line or in code, and get :class:`Transitions`.

A dataset spec is one of:

* a path to a D4RL-layout file (``*.hdf5``), ours or an original D4RL file;
* ``minari:<dataset-id>`` for a Minari dataset on local disk;
* a project name such as ``hopper-random``: made on first use with the default size and seed,
  then cached under ``$ADEPT_DATA_DIR`` (default ``~/.cache/adept/datasets``). A cached file
  made by an older revision of its recipe (:data:`adept.datasets.generate.RECIPE_REVISION`) is
  remade, so a name always means the data the current code makes;
* a project name with the suffixes of its cached file, ``<name>[-seed<k>][-n<N>]``
  (``hopper-random-n5000``: 5000 steps; ``walker2d-random-seed1``): the file ``adept data make
  NAME --seed k --num-steps N`` writes, made on first use the same way. Small grids and tests
  name small datasets this way.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adept.base.errors import AdeptError, warn
from adept.data.cache import data_dir
from adept.data.hdf5 import load_hdf5, read_metadata
from adept.data.minari_io import load_minari
from adept.data.transitions import Transitions
from adept.datasets.generate import (
    DEFAULT_NUM_STEPS,
    DEFAULT_SEED,
    RECIPE_REVISION,
    make_dataset,
    parse_name,
    recipe_revision,
)
from adept.envs import check_dims, env_spaces

MINARI_PREFIX = "minari:"


def cached_path(
    name: str,
    num_steps: int | None = None,
    seed: int = DEFAULT_SEED,
    sac_steps: int | None = None,
    sac_tag: str | None = None,
) -> Path:
    """Where ``adept data make NAME`` writes; a non-default size, seed, SAC budget or SAC
    config (``sac_tag``, see :meth:`adept.datasets.online_sac.OnlineSACConfig.tag`) gets its own
    file."""
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


_PROJECT_SPEC = re.compile(r"(?P<name>.+?)(?:-seed(?P<seed>\d+))?(?:-n(?P<num_steps>\d+))?")


@dataclass(frozen=True)
class ProjectSpec:
    """A project dataset named on the command line: ``<name>[-seed<k>][-n<N>]``."""

    name: str
    seed: int = DEFAULT_SEED
    num_steps: int | None = None

    @classmethod
    def parse(cls, spec: str) -> ProjectSpec:
        """Split the suffixes off ``spec``; an unknown name is a clear error (from parse_name)."""
        match = _PROJECT_SPEC.fullmatch(spec)
        assert match is not None  # the name group matches anything
        name, seed, num_steps = match["name"], match["seed"], match["num_steps"]
        parse_name(name)
        return cls(
            name,
            DEFAULT_SEED if seed is None else int(seed),
            None if num_steps is None else int(num_steps),
        )

    @property
    def path(self) -> Path:
        return cached_path(self.name, self.num_steps, self.seed)


def is_path_spec(spec: str) -> bool:
    return spec.endswith((".hdf5", ".h5")) or os.sep in spec


def dataset_label(spec: str) -> str:
    """A dataset spec as one folder name: a file's stem, a Minari id with '/' as '_', a name."""
    name = Path(spec).stem if spec.endswith((".hdf5", ".h5")) else spec
    return name.replace(MINARI_PREFIX, "").replace("/", "_")


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
        data = conform_to_env(data, data.env_id)
    return data


def conform_to_env(data: Transitions, env_id: str) -> Transitions:
    """``data`` checked against its env: an episode longer than the env's step limit is an
    error (its timeouts are missing or misplaced, so episodes would run into each other);
    actions outside the action box are clipped to it, with a warning that counts them (the
    usual repair: a policy can only ever act inside the box)."""
    spaces = env_spaces(env_id)
    low, high, limit = spaces.act_low, spaces.act_high, spaces.max_episode_steps
    lengths = data.episode_lengths()
    if limit is not None and len(lengths) and int(lengths.max()) > limit:
        long = int((lengths > limit).sum())
        raise AdeptError(
            f"dataset {data.source}: {long} episode(s) run longer than {env_id}'s {limit}-step "
            f"limit (the longest: {int(lengths.max())}); its timeouts are missing or misplaced: "
            "mark each episode's last step in 'timeouts'"
        )
    outside = (data.actions < low) | (data.actions > high)
    if outside.any():
        warn(
            f"dataset {data.source}: {int(outside.sum())} action value(s) in "
            f"{int(outside.any(axis=1).sum())} row(s) lie outside {env_id}'s action box; "
            "clipped to it"
        )
        data = data.replace(actions=np.clip(data.actions, low, high))
    return data


def cache_problem(name: str) -> str | None:
    """Why the cached file of project dataset ``name`` (suffixes allowed, see
    :class:`ProjectSpec`) cannot be used as it is (missing, or made by an older revision of its
    recipe), or None when it is current."""
    project = ProjectSpec.parse(name)
    _, kind = parse_name(project.name)
    path = project.path
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
    """The cached file of project dataset ``name``, made (or remade) if need be."""
    project = ProjectSpec.parse(name)
    path = project.path
    problem = cache_problem(name)
    if problem is None:
        return path
    if not make_missing:
        base = project.name
        variant = re.compile(rf"{re.escape(base)}(-(seed|n|sac)\d+|-cfg[0-9a-f]+)+\.hdf5")
        others = sorted(
            p.name
            for p in path.parent.glob("*.hdf5")
            if variant.fullmatch(p.name) and p.name != path.name
        )
        hint = f", or give the path of one made with other settings ({', '.join(others)})"
        flags = "" if project.seed == DEFAULT_SEED else f" --seed {project.seed}"
        flags += "" if project.num_steps is None else f" --num-steps {project.num_steps}"
        raise AdeptError(
            f"{problem}; make it with 'adept data make {base}{flags}'{hint if others else ''}"
        )
    print(f"{problem}; making it", file=sys.stderr)
    make_dataset(
        project.name,
        path,
        num_steps=project.num_steps,
        seed=project.seed,
        progress=progress,
        reuse=lambda: cache_problem(name) is None,  # another process made it while we waited
    )
    return path
