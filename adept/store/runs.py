"""A run directory: resolved config, metrics log, checkpoints and the final summary.

RUN_DIR/
  config.json      resolved config + package version + git SHA + the data's fingerprint
  metrics.csv      one row per log event (train averages, eval scores), long format
  checkpoint.pt    latest state (torch.save of state dicts; loaded with weights_only=True),
                   with the SHA-256 of its contents and the metrics rows logged up to it
  checkpoint.prev.pt  the checkpoint before it: a second chance when the latest one is damaged
  summary.json     written when the run finishes
  divergence.json  what was non-finite, where and when, if the run diverged
  tb/              TensorBoard events (optional)
  .run.lock        held by the process training in the folder; a second one is refused

Every file is written atomically (a temporary file flushed to disk, then renamed), so a process
killed at any point leaves the previous version of each file whole; a damaged file (truncated,
bit-flipped, edited) is detected when it is read and reported with the way out.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from adept import __version__
from adept.base.atomic import atomic_path, discard_temporaries, make_folder, sole_lock
from adept.base.errors import AdeptError

CONFIG = "config.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
SUMMARY = "summary.json"
DIVERGENCE = "divergence.json"
LOCK = ".run.lock"
DIGEST = "sha256"
"""The key under which :func:`save_state` stores the SHA-256 of a state's contents."""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def atomic_write_json(path: Path, value: Any) -> None:
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode())


def git_sha() -> str | None:
    """The source tree's commit, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def to_jsonable(config: Any) -> Any:
    """A dataclass config as plain JSON values (paths as strings)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): to_jsonable(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_jsonable(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config


def read_json(path: Path, remedy: str) -> dict[str, Any]:
    """A JSON object from ``path``; a damaged file (not JSON, not an object) is a one-line
    :class:`AdeptError` naming it and ``remedy``."""
    try:
        value = json.loads(Path(path).read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdeptError(f"{path} is damaged ({type(exc).__name__}: {exc}); {remedy}") from None
    if not isinstance(value, dict):
        raise AdeptError(f"{path} is damaged (not a JSON object); {remedy}")
    return value


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} → {b!r}"]


def _ignored(key: str, ignore: tuple[str, ...]) -> bool:
    return any(key == name or key.startswith(f"{name}.") for name in ignore)


Migrate = Callable[[dict[str, Any]], dict[str, Any]]
"""Brings a stored config of an older layout to today's (the identity for today's)."""


def config_changes(
    path: Path,
    config: Any,
    ignore: tuple[str, ...] = (),
    migrate: Migrate | None = None,
) -> list[str]:
    """How ``config`` differs from the run stored at ``path`` ('field: old → new'), fields in
    ``ignore`` aside; the stored config is first brought to today's layout by ``migrate``."""
    stored = read_json(Path(path) / CONFIG, f"delete {path} to start the run over")
    old = stored.get("config", {})
    return [
        change
        for change in _diff(old if migrate is None else migrate(old), to_jsonable(config))
        if not _ignored(change.split(":")[0], ignore)
    ]


def fact_changes(path: Path, facts: Mapping[str, str]) -> list[str]:
    """How ``facts`` differ from those stored with the run at ``path`` ('other data
    (dataset_fingerprint 1a2b… here, 3c4d… now)'); a fact the run did not store is not checked
    (runs from before it was recorded)."""
    stored = read_json(Path(path) / CONFIG, f"delete {path} to start the run over")
    return [
        f"other data ({key} {str(stored[key])[:12]}… there, {str(value)[:12]}… now)"
        for key, value in facts.items()
        if key in stored and stored[key] != value
    ]


class RunDir:
    """Creates or reopens a run directory; refuses a config that differs from the stored one."""

    def __init__(
        self,
        path: Path,
        config: Any,
        ignore: tuple[str, ...] = (),
        hint: str = "use a new --run-dir or repeat the original command to resume",
        facts: Mapping[str, str] | None = None,
        migrate: Migrate | None = None,
    ):
        """``ignore`` names config fields that may change between sessions (device, logging);
        nested ones as ``parent.field``. ``hint``: what to do when the configs differ.
        ``facts``: what the run is made from beyond its config (the dataset's fingerprint),
        stored beside it and checked like it when the run is reopened. ``migrate``: how a
        stored config of an older layout reads in today's (the stored file is left as it is)."""
        self.path = Path(path)
        self.migrate = migrate
        self.config = to_jsonable(config)
        self.facts = dict(facts or {})
        make_folder(self.path, "run dir", "choose another --run-dir")
        self._held = contextlib.ExitStack()
        self._held.enter_context(
            sole_lock(
                self.path / LOCK,
                lambda holder: (
                    f"run dir {self.path} is in use by another process ({holder}); "
                    "wait for it to finish, or give another --run-dir"
                ),
            )
        )
        discard_temporaries(self.path)  # a killed run's half-written files: ours, under the lock
        try:
            self.resumed = self._open(hint, ignore)
        except BaseException:
            self.close()
            raise

    def _open(self, hint: str, ignore: tuple[str, ...]) -> bool:
        """Check the stored config against ours (True: a run to resume), or store ours."""
        stored_path = self.path / CONFIG
        if stored_path.exists():
            changes = config_changes(self.path, self.config, ignore, self.migrate)
            if changes:
                shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
                raise AdeptError(
                    f"run dir {self.path} holds a run with a different config ({shown}); {hint}"
                )
            changed = fact_changes(self.path, self.facts)
            if changed:
                raise AdeptError(f"run dir {self.path} holds a run made from {changed[0]}; {hint}")
            return True
        atomic_write_json(
            stored_path,
            {
                "config": self.config,
                "adept_version": __version__,
                "git_sha": git_sha(),
                **self.facts,
            },
        )
        return False

    def close(self) -> None:
        """Release the run dir's lock (the kernel releases it too when the process dies)."""
        self._held.close()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Write the checkpoint; the one it replaces becomes ``checkpoint.prev.pt``."""
        save_state(self.checkpoint_path, state, keep_previous=True)

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_run_checkpoint(self.checkpoint_path, map_location)

    def load_previous_checkpoint(
        self, map_location: str | torch.device = "cpu"
    ) -> dict[str, Any] | None:
        """The checkpoint the latest one replaced (``checkpoint.prev.pt``); None when there is
        none or it cannot be read."""
        path = previous_path(self.checkpoint_path)
        if not path.exists():
            return None
        try:
            return load_checkpoint(path, map_location=map_location)
        except AdeptError:
            return None

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, dict(summary))

    def read_summary(self) -> dict[str, Any]:
        return read_json(self.path / SUMMARY, "delete it and repeat the command to write it again")

    def is_finished(self) -> bool:
        return (self.path / SUMMARY).exists()


def state_digest(state: Any) -> str:
    """SHA-256 of what a checkpoint holds: its structure, keys, plain values, and each tensor's
    dtype, shape and bytes (on the CPU, so the device a state is loaded to does not matter).
    ``torch.load`` reads most damaged files without complaint (a flipped bit in a tensor changes
    a weight, silently): this digest, stored in the file, is what reveals them."""
    digest = hashlib.sha256()

    def feed(tag: bytes, payload: bytes | memoryview) -> None:
        digest.update(tag + len(payload).to_bytes(8, "little"))
        digest.update(payload)

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu()
            flat = tensor.reshape(-1)
            if flat.stride(0) != 1:
                # a strided view, e.g. a buffer column (reshape copies only what it must)
                flat = flat.clone(memory_format=torch.contiguous_format)
            feed(b"T", f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            feed(b"B", flat.view(torch.uint8).numpy().data)
        elif isinstance(value, Mapping):
            feed(b"D", str(len(value)).encode())
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, (list, tuple)):
            feed(b"L", str(len(value)).encode())
            for item in value:
                walk(item)
        else:  # str, int, float, bool, None: repr round-trips them exactly
            feed(b"V", repr(value).encode())

    walk(state)
    return digest.hexdigest()


def previous_path(path: Path) -> Path:
    """Where :func:`save_state` keeps the copy it replaced (``checkpoint.prev.pt``)."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_state(path: Path, state: dict[str, Any], keep_previous: bool = False) -> None:
    """``torch.save`` a dict of state dicts and tensors with the SHA-256 of its contents,
    atomically; read by :func:`load_checkpoint`. ``keep_previous``: the file it replaces stays
    as :func:`previous_path` (a hard link, so the swap costs no copy; at every instant both
    files are whole)."""
    buffer = io.BytesIO()
    torch.save({**state, DIGEST: state_digest(state)}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
        if keep_previous and path.exists():
            with atomic_path(previous_path(path)) as prev:
                try:
                    os.link(path, prev)
                except OSError:  # a filesystem without hard links
                    shutil.copyfile(path, prev)


def load_checkpoint(
    path: Path,
    map_location: str | torch.device = "cpu",
    remedy: str | Callable[[], str] = "delete it and run again",
) -> dict[str, Any]:
    """A checkpoint of state dicts; never unpickles arbitrary objects (``weights_only=True``).
    A missing, unreadable or damaged file (its contents do not match the SHA-256 stored with
    them) is a one-line :class:`AdeptError` naming it and ``remedy`` (a callable is asked only
    then). Files written before checkpoints carried a digest load unchecked."""
    path = Path(path)

    def damaged(why: str) -> AdeptError:
        return AdeptError(f"{path} {why}; {remedy() if callable(remedy) else remedy}")

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise AdeptError(f"no checkpoint at {path}; train first with 'adept train'") from exc
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():
            raise damaged("is damaged (UnpicklingError)") from exc
        raise damaged(
            "was refused: it holds objects other than tensors and plain values (a damaged "
            "file, or one adept did not write), and adept never unpickles code"
        ) from None
    except Exception as exc:  # torch raises several types for a damaged file
        raise damaged(f"is damaged ({type(exc).__name__})") from exc
    if not isinstance(state, dict):
        raise damaged("does not hold a state dict")
    stored = state.pop(DIGEST, None)
    if stored is not None and stored != state_digest(state):
        raise damaged("is damaged (its contents do not match the SHA-256 stored with them)")
    return state


def load_run_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A run dir's checkpoint; when it cannot be read, the error offers the previous one
    (``checkpoint.prev.pt``) if that one is whole."""
    path = Path(path)
    start_over = f"delete {path.parent} to start the run over"

    def remedy() -> str:
        prev = previous_path(path)
        if not prev.exists():
            return start_over
        try:
            step = load_checkpoint(prev).get("step", "?")
        except AdeptError:
            return f"{prev.name} is damaged too: {start_over}"
        return (
            f"the previous checkpoint (step {step}) is whole: 'mv {prev} {path}' and repeat "
            f"the command to resume from there, or {start_over}"
        )

    return load_checkpoint(path, map_location, remedy)


class MetricsLog:
    """metrics.csv: one row per log event, columns added as new metrics appear.

    The rows also travel in each checkpoint (:meth:`state_dict`): on resume the file is
    rewritten from the checkpoint's rows, so an interrupted-and-resumed run has the same log
    as an uninterrupted one, whatever happened to the file in between (rows logged after the
    checkpoint, a line cut short by a kill, damage). A checkpoint from before rows were kept
    in it resumes from the file's rows up to ``resume_step``.
    """

    def __init__(
        self,
        path: Path,
        resume_step: int | None = None,
        saved: Mapping[str, Any] | None = None,
    ):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = ["step", "wall_time"]
        if resume_step is not None and saved is not None:
            self.restore(saved)
        elif resume_step is not None and path.exists():
            self.columns, self.rows = read_metrics(path, resume_step)
            self._rewrite()
        elif path.exists():
            path.unlink()

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Back to the rows of :meth:`state_dict` ``saved``; the file is rewritten."""
        self.columns = list(saved["columns"])
        self.rows = [dict(row) for row in saved["rows"]]
        self._rewrite()

    def state_dict(self) -> dict[str, Any]:
        """The columns and rows logged so far, for a checkpoint."""
        return {"columns": list(self.columns), "rows": [dict(row) for row in self.rows]}

    def _rewrite(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, text.getvalue().encode())

    def write(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> None:
        row = {"step": step, "wall_time": round(wall_time, 3), **metrics}
        self.rows.append(row)
        new = [k for k in row if k not in self.columns]
        if new or not self.path.exists():
            self.columns += new
            self._rewrite()
            return
        try:
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)
        except OSError as exc:  # a cut-short line is dropped on resume (see read_metrics)
            raise AdeptError(
                f"could not append to {self.path} ({exc.strerror or exc}); free disk space or "
                "make the folder writable, then repeat the command to resume"
            ) from exc

    def last_wall_time(self) -> float:
        return float(self.rows[-1]["wall_time"]) if self.rows else 0.0


def read_metrics(path: Path, up_to: int | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and rows of a metrics.csv (rows with ``step <= up_to``). A last line cut
    short (no newline: its writer was killed) is dropped; any other malformed line is a
    one-line :class:`AdeptError` naming the file."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    remedy = f"delete {path.parent} to start the run over"
    if not header or header[:2] != ["step", "wall_time"]:
        raise AdeptError(f"{path} is damaged (no 'step,wall_time' header); {remedy}")
    rows: list[dict[str, Any]] = []
    last = -1
    for number, fields in enumerate(reader, start=2):
        try:
            step = int(fields[0])
            if len(fields) != len(header) or step < last:
                raise ValueError
        except (ValueError, IndexError):
            raise AdeptError(f"{path} is damaged (line {number} is malformed); {remedy}") from None
        last = step
        if up_to is None or step <= up_to:
            rows.append(dict(zip(header, fields, strict=True)))
    return header, rows
