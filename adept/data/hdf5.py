"""D4RL-layout HDF5 files: read (ours and the original D4RL files) and write (atomically).

Layout, as in D4RL v2::

    observations        float32 [N, obs_dim]
    actions             float32 [N, act_dim]
    rewards             float32 [N]
    next_observations   float32 [N, obs_dim]
    terminals           bool    [N]
    timeouts            bool    [N]
    infos/action_log_probs  float32 [N]   (optional: log β(a|s) of the collecting policy)
    metadata/           group; scalar provenance as attributes (ours) or scalar datasets (D4RL)
    metadata/behavior_policy/<param>   (optional: weights of the collecting policy)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from adept.base.atomic import atomic_path, make_folder
from adept.base.errors import AdeptError
from adept.data.transitions import REQUIRED_FIELDS, Transitions

LOG_PROB_KEY = "infos/action_log_probs"
POLICY_KEY = "metadata/behavior_policy"

# D4RL file names carry the environment but not a Gymnasium id; map them to the v5 envs.
_D4RL_ENV_PATTERNS = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
}
_D4RL_KINDS = ("medium-replay", "medium-expert", "full-replay", "random", "medium", "expert")


def infer_from_filename(path: Path) -> dict[str, str]:
    """Guess env id and kind from a D4RL-style name such as ``hopper_medium_replay-v2.hdf5``."""
    stem = path.name.lower().replace("_", "-")
    guess: dict[str, str] = {}
    for key, env_id in _D4RL_ENV_PATTERNS.items():
        if key in stem:
            guess["env_id"] = env_id
            break
    for kind in _D4RL_KINDS:
        if re.search(rf"(^|-){kind}(-|\.|$)", stem):
            guess["kind"] = kind
            break
    return guess


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        if value[:1] in ("[", "{"):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _column(f: h5py.File, key: str, path: Path) -> h5py.Dataset:
    """The array ``key`` of a D4RL-layout file, checked before it is read: a dataset of numbers
    (or flags) with one row per transition."""
    item = f[key]
    if not isinstance(item, h5py.Dataset):
        raise AdeptError(
            f"{path}: '{key}' is a group, not an array; a D4RL-layout file stores "
            "each column as one array"
        )
    if item.dtype.kind not in "biuf" or item.dtype.names is not None:
        raise AdeptError(
            f"{path}: '{key}' holds {item.dtype} values; a D4RL-layout file's "
            "columns hold numbers (floats, or 0/1 flags)"
        )
    if item.ndim == 0:
        raise AdeptError(f"{path}: '{key}' is a single value; it must hold one row per transition")
    return item


def _check_sizes(columns: dict[str, h5py.Dataset], path: Path) -> None:
    """Refuse, before reading anything, columns whose row counts differ or whose declared size
    would not fit in memory (an HDF5 array can declare far more rows than the file stores)."""
    rows = {key: column.shape[0] for key, column in columns.items()}
    n = rows.get("observations", 0)
    for key, count in rows.items():
        if count != n:
            raise AdeptError(
                f"{path}: '{key}' has {count} rows but 'observations' has {n}; all "
                "columns must have one row per transition"
            )
    declared = sum(column.size * 4 for column in columns.values())  # read as 4-byte floats
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if declared > memory // 2:
        raise AdeptError(
            f"{path}: its columns declare {n} rows ({declared / 2**30:.1f} GiB as float32), more "
            f"than half of this machine's memory ({memory / 2**30:.1f} GiB); the file is damaged, "
            "or split it into smaller files"
        )


def _read_metadata(f: h5py.File, path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if "metadata" not in f:
        return meta
    group = f["metadata"]
    if not isinstance(group, h5py.Group):
        raise AdeptError(
            f"{path}: 'metadata' is an array, not a group; D4RL-layout "
            "files keep their metadata as a group of scalars: remove or rename it"
        )
    for key, value in group.attrs.items():
        meta[key] = _decode(value)
    for key, item in group.items():
        if isinstance(item, h5py.Dataset) and item.shape == ():
            meta[key] = _decode(item[()])
    for key in ("ref_min_score", "ref_max_score"):
        if key in meta and meta[key] is not None:
            meta[key] = float(meta[key])
    return meta


def read_behavior_policy(path: str | Path) -> dict[str, np.ndarray]:
    """The collecting policy's weights stored under ``metadata/behavior_policy`` (may be empty)."""
    with h5py.File(path, "r") as f:
        if POLICY_KEY not in f:
            return {}
        out: dict[str, np.ndarray] = {}
        f[POLICY_KEY].visititems(
            lambda name, item: (
                out.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
        return out


def _check_file(path: str | Path) -> Path:
    """``path`` as a Path, or a clear error if it is missing, a directory or not HDF5."""
    path = Path(path)
    if not path.exists():
        raise AdeptError(
            f"dataset file {path} not found; check the path or make it with 'adept data make'"
        )
    if path.is_dir():
        raise AdeptError(f"dataset path {path} is a directory; give the .hdf5 file inside it")
    if not h5py.is_hdf5(path):
        raise AdeptError(
            f"{path} is not an HDF5 file (wrong format or truncated); regenerate or re-download it"
        )
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A file's ``metadata`` group, without reading its arrays."""
    path = _check_file(path)
    try:
        with h5py.File(path, "r") as f:
            return _read_metadata(f, path)
    except OSError as exc:
        raise AdeptError(f"{path} could not be read as HDF5 ({exc}); regenerate it") from exc


def load_hdf5(path: str | Path, env_id: str | None = None) -> Transitions:
    """Load a D4RL-layout file.

    ``next_observations`` comes from the file (never rebuilt from the next row), timed-out
    transitions are kept, and ``infos/action_log_probs`` is read when present. The env id comes
    from ``env_id``, else the file's metadata, else the file name (D4RL files).
    """
    path = _check_file(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED_FIELDS if k not in f]
            if missing:
                hint = (
                    " (rebuilding next states from the next row would corrupt terminal steps, so "
                    "the file must store them)"
                    if "next_observations" in missing
                    else ""
                )
                raise AdeptError(
                    f"{path} lacks required D4RL key(s) {', '.join(missing)}; a D4RL-layout file "
                    f"needs {', '.join(REQUIRED_FIELDS)}{hint}"
                )
            columns = {k: _column(f, k, path) for k in (*REQUIRED_FIELDS, LOG_PROB_KEY) if k in f}
            _check_sizes(columns, path)
            arrays = {k: np.asarray(column[()]) for k, column in columns.items()}
            log_probs = arrays.pop(LOG_PROB_KEY, None)
            meta = _read_metadata(f, path)
    except AdeptError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AdeptError(
            f"{path} could not be read as HDF5 ({first}); the file is damaged or truncated, "
            "regenerate it"
        ) from exc
    if not isinstance(meta.get("env_id", ""), str):
        raise AdeptError(
            f"{path}: metadata env_id is {meta['env_id']!r}, not an env id such as "
            "'Hopper-v5'; fix the metadata or pass the env id"
        )
    guess = infer_from_filename(path)
    meta.setdefault("kind", guess.get("kind"))
    resolved_env = env_id or meta.get("env_id") or guess.get("env_id")
    if resolved_env is not None:
        meta["env_id"] = resolved_env
    meta = {k: v for k, v in meta.items() if v is not None}
    return Transitions(
        **arrays,
        action_log_probs=log_probs,
        env_id=resolved_env,
        metadata=meta,
        source=str(path),
    )


def check_writable(path: str | Path) -> Path:
    """Fail early, before any expensive work, if ``path`` cannot be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise AdeptError(f"output path {path} is a directory; give a file name ending in .hdf5")
    if path.suffix not in (".hdf5", ".h5"):
        raise AdeptError(f"output path {path} must end in .hdf5 or .h5")
    make_folder(path.parent, "directory", "choose another --out")
    probe = path.parent / f".{path.name}.{os.getpid()}.probe"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise AdeptError(
            f"output directory {path.parent} is not writable ({exc.strerror}); choose another --out"
        ) from exc
    return path


def _metadata_attr(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float, np.generic)):
        return value
    return json.dumps(value)


def save_hdf5(
    data: Transitions,
    path: str | Path,
    metadata: Mapping[str, Any] | None = None,
    behavior_policy: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write ``data`` in D4RL layout, atomically (a temporary file in the same folder, renamed)."""
    path = check_writable(path)
    meta = {**data.metadata, **(metadata or {})}
    if data.env_id is not None:
        meta["env_id"] = data.env_id
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, value in data.arrays().items():
            key = LOG_PROB_KEY if name == "action_log_probs" else name
            _create_checked(f, key, value)
        group = f.create_group("metadata")
        for key, value in meta.items():
            if value is not None:
                group.attrs[key] = _metadata_attr(value)
        for name, value in (behavior_policy or {}).items():
            _create_checked(f, f"{POLICY_KEY}/{name}", np.asarray(value))
    return path


def _create_checked(f: h5py.File, key: str, value: np.ndarray) -> None:
    """An array stored with HDF5's Fletcher-32 checksum (chunked; readers of the D4RL layout
    see no difference), so a flipped bit on disk is an error when read, not a silent change
    of the data. Scalars and empty arrays cannot be chunked and are stored plain."""
    f.create_dataset(key, data=value, fletcher32=value.ndim > 0 and value.size > 0)
