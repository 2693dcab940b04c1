"""A content-addressed store of computed results, shared by every run on the machine.

Some work is a pure function of a few inputs and costs minutes (pre-training a world model and
fitting β on a dataset); a grid of runs that differ elsewhere (the agent, the schedule) would
repeat it in every cell. :func:`cached` computes such a result once and keeps it:

    <data dir>/artifacts/<kind>/<hash>.pt     the result: a dict of tensors and plain values
                                               (torch.save, loaded with weights_only=True)
    <data dir>/artifacts/<kind>/<hash>.json   the key it was computed from, for a human reader
    <data dir>/artifacts/<kind>/<hash>.lock   taken while the entry is computed

``<hash>`` is the SHA-256 of the key's canonical JSON, so the key must hold everything the
result depends on and nothing else: a key that misses an input serves a stale result, one with
an extra input (a run's agent, say) only computes the same thing twice. ``<data dir>`` is
``$ADEPT_DATA_DIR`` (:func:`adept.data.cache.data_dir`), where the datasets and SAC runs live:
deleting ``artifacts/`` (or one entry) is always safe, it is recomputed on next use.

Entries are written atomically and computed under an exclusive ``fcntl`` lock, so two processes
asking for the same key compute it once: the second waits, then loads. An entry that cannot be
read (truncated, bit-flipped: it carries the SHA-256 of its contents; or a foreign file, which is
never unpickled) is computed again and overwritten, with a one-line warning naming it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adept import __version__
from adept.base.atomic import discard_temporaries, exclusive_lock
from adept.base.errors import AdeptError, warn
from adept.base.precision import active
from adept.data.cache import data_dir
from adept.store.runs import atomic_write_json, load_checkpoint, save_state, to_jsonable

HASH_CHARS = 20
"""Hex characters of the key's SHA-256 kept in file names (80 bits: no collision in practice)."""


def artifacts_dir() -> Path:
    """Root of the store: ``$ADEPT_DATA_DIR/artifacts``, beside the dataset cache."""
    return data_dir() / "artifacts"


def canonical_json(key: Mapping[str, Any]) -> str:
    """One spelling per key: dataclasses as dicts, sorted keys, no spaces, no NaN."""
    return json.dumps(to_jsonable(key), sort_keys=True, separators=(",", ":"), allow_nan=False)


def key_hash(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:HASH_CHARS]


def entry_path(kind: str, key: Mapping[str, Any], root: Path | None = None) -> Path:
    """Where the result for ``key`` is (or would be) stored."""
    return (artifacts_dir() if root is None else Path(root)) / kind / f"{key_hash(key)}.pt"


def cached(
    kind: str,
    key: Mapping[str, Any],
    make: Callable[[], dict[str, Any]],
    root: Path | None = None,
) -> dict[str, Any]:
    """``make()``, computed once per ``(kind, key)`` and loaded from the store afterwards.

    ``make`` must be a pure function of ``key`` and return what ``torch.save`` can write and
    ``torch.load(weights_only=True)`` can read (tensors, numbers, strings, dicts and lists of
    them); put tensors on the CPU, so that a computed and a loaded result are the same.
    ``root`` replaces :func:`artifacts_dir` (tests).
    """
    key = with_precision(key)
    path = entry_path(kind, key, root)
    result = _load(path)
    if result is not None:
        return result
    with exclusive_lock(path.with_suffix(".lock"), "artifact folder"):
        result = _load(path)  # another process may have computed it while we waited
        if result is None:
            _discard_temporaries(path)
            result = make()
            _describe(path, kind, key)
            save_state(path, result)
    return result


def cached_or_kept(
    kind: str,
    key: Callable[[], Mapping[str, Any]],
    make: Callable[[], dict[str, Any]],
    cache: bool,
    kept: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A trained model for a run, and what the run's checkpoint must keep of it: with ``cache``,
    :func:`cached` under ``key()`` (nothing to keep); without, ``kept`` (restored from the
    checkpoint on resume) or else ``make()``, kept for the checkpoint. Either way the result is
    the same: ``make`` is a pure function of the key's inputs."""
    if cache:
        return cached(kind, key(), make), None
    result = make() if kept is None else kept
    return result, result


def cached_file(
    kind: str,
    key: Mapping[str, Any],
    suffix: str,
    make: Callable[[Path], Any],
    root: Path | None = None,
) -> Path:
    """The path of a file that ``make(path)`` writes, made once per ``(kind, key)``: like
    :func:`cached`, for results that are files in a format of their own (a synthetic dataset in
    D4RL layout, readable by ``adept data info``). ``make`` must write ``path`` atomically (a
    temporary file, renamed), so that an existing file is always a complete one."""
    key = with_precision(key)
    path = entry_path(kind, key, root).with_suffix(suffix)
    if path.exists():
        return path
    with exclusive_lock(path.with_suffix(".lock"), "artifact folder"):
        if not path.exists():
            _discard_temporaries(path)
            make(path)
            _describe(path, kind, key)
    return path


def with_precision(key: Mapping[str, Any]) -> Mapping[str, Any]:
    """``key`` plus the autocast dtype in force (:func:`adept.base.precision.active`), if any: a
    result computed under bf16 autocast is another result. fp32 keys are left as they were.
    ``autocast_cache: False`` names adept's autocast without a weight-cast cache, and sets
    aside the bf16 entries made before it (trained on stale weights: see
    :func:`adept.base.precision.autocast`)."""
    dtype = active()
    return key if dtype is None else {**key, "autocast": dtype, "autocast_cache": False}


def _discard_temporaries(path: Path) -> None:
    """What a killed maker of ``path`` left half-written (under ``path``'s lock)."""
    for target in (path, path.with_suffix(".json")):
        discard_temporaries(path.parent, target)


def _describe(path: Path, kind: str, key: Mapping[str, Any]) -> None:
    """Write the ``.json`` beside an entry: the key it was computed from, for a human reader."""
    atomic_write_json(
        path.with_suffix(".json"),
        {
            "kind": kind,
            "key": to_jsonable(key),
            "adept_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
    )


def _load(path: Path) -> dict[str, Any] | None:
    """The stored result, or None when there is none or it cannot be read."""
    if not path.exists():
        return None
    try:
        return load_checkpoint(path, map_location="cpu", remedy="computing it again")
    except AdeptError as exc:
        warn(str(exc))
        return None
