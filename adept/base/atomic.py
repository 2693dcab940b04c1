"""Atomic file writes (a temporary file beside the target, flushed to disk, then a rename) and
file locks (a waiting one, and one that refuses when another process holds it)."""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from adept.base.errors import AdeptError


def _reason(exc: OSError) -> str:
    """An OSError's cause in a few words ('No space left on device')."""
    if exc.strerror:
        return exc.strerror
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to the disk, so a rename cannot outlive its data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a folder; the file itself was synced
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (same suffix, so writers that infer the format
    from it still work); on success it is flushed to disk and replaces ``path``, on any failure
    it is removed and ``path`` is left as it was. A write that fails for want of space or
    permission (an ``OSError``) is reported as a one-line :class:`AdeptError` naming the file."""
    path = Path(path)
    tmp = path.parent / f".{path.stem}.{os.getpid()}.tmp{path.suffix}"  # see discard_temporaries
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        # renaming a hard link onto another link of the same file does nothing (POSIX): the
        # temporary stays (a save after a killed one finds checkpoint.prev.pt linked to the
        # checkpoint it links again)
        tmp.unlink(missing_ok=True)
        _fsync(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise AdeptError(
                f"could not write {path} ({_reason(exc)}); nothing was changed: free disk space "
                "or make the folder writable, then repeat the command"
            ) from exc
        raise


def make_folder(folder: Path, what: str, remedy: str) -> None:
    """Create ``folder`` (and its parents) if need be; when it cannot be created, a one-line
    :class:`AdeptError`: 'cannot create <what> <folder> (<reason>); <remedy>'."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdeptError(f"cannot create {what} {folder} ({exc.strerror}); {remedy}") from exc


def atomic_files(folder: Path, payloads: Mapping[str, bytes]) -> None:
    """Write a set of files (name → bytes) into ``folder`` as one: every file goes to a
    temporary first, and only once all of them are on disk do they replace the old ones. A
    full or read-only disk therefore fails before any file changes (one-line
    :class:`AdeptError`), rather than leaving a mix of new and old files (a report whose table
    and figures disagree)."""
    with contextlib.ExitStack() as stack:
        for name, payload in payloads.items():  # each temporary is renamed as its block exits
            stack.enter_context(atomic_path(Path(folder) / name)).write_bytes(payload)


def discard_temporaries(folder: Path, target: Path | None = None) -> None:
    """Delete the temporary files that :func:`atomic_path` left in ``folder`` when its process
    was killed mid-write (all of them, or only ``target``'s). Call it
    only while holding the lock that guards these files: a live writer's temporary looks the
    same as a dead one's."""
    pattern = ".*.*.tmp*" if target is None else f".{glob.escape(target.stem)}.*.tmp{target.suffix}"
    for stale in Path(folder).glob(pattern):
        with contextlib.suppress(OSError):
            stale.unlink()


@contextmanager
def exclusive_lock(lock: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on the file ``lock`` (waiting for another process that
    holds it), creating its folder; ``what`` names that folder in the error when it cannot be
    created. The lock file is left in place: unlinking a lock file another process is waiting
    on would let a third one take a fresh lock beside it."""
    make_folder(lock.parent, f"the {what}", "set ADEPT_DATA_DIR to a writable folder")
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def sole_lock(lock: Path, busy: Callable[[str], str]) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on the file ``lock`` without waiting: when another
    process holds it, raise :class:`AdeptError` with ``busy(holder)``, ``holder`` being what
    that process wrote in the file ('pid 123 on host'). The kernel releases the lock when its
    holder dies, however it dies, so a killed process never leaves a stale lock behind."""
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise AdeptError(busy(handle.read().strip() or "another process")) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
