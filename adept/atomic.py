"""Atomic file writes (a temporary file beside the target, then a rename) and file locks."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from adept.errors import AdeptError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (same suffix, so writers that infer the format
    from it still work); on success it replaces ``path``, on any failure it is removed."""
    tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp{path.suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def exclusive_lock(lock: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on the file ``lock`` (waiting for another process that
    holds it), creating its folder; ``what`` names that folder in the error when it cannot be
    created. The lock file is left in place: unlinking a lock file another process is waiting
    on would let a third one take a fresh lock beside it."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdeptError(
            f"cannot create the {what} {lock.parent} ({exc.strerror}); set "
            "ADEPT_DATA_DIR to a writable folder"
        ) from exc
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
