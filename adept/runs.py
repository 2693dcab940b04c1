"""A run directory: resolved config, metrics log, checkpoints and the final summary.

RUN_DIR/
  config.json      resolved config + package version + git SHA
  metrics.csv      one row per log event (train averages, eval scores), long format
  checkpoint.pt    latest state (torch.save of state dicts; loaded with weights_only=True)
  summary.json     written when the run finishes
  tb/              TensorBoard events (optional)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from adept import __version__
from adept.atomic import atomic_path
from adept.errors import AdeptError

CONFIG = "config.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"


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


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {a!r} → {b!r}"]


def _ignored(key: str, ignore: tuple[str, ...]) -> bool:
    return any(key == name or key.startswith(f"{name}.") for name in ignore)


def config_changes(path: Path, config: Any, ignore: tuple[str, ...] = ()) -> list[str]:
    """How ``config`` differs from the run stored at ``path`` ('field: old → new'), fields in
    ``ignore`` aside; raises ValueError when config.json is not valid JSON."""
    stored = json.loads((Path(path) / CONFIG).read_text())
    return [
        change
        for change in _diff(stored.get("config", {}), to_jsonable(config))
        if not _ignored(change.split(":")[0], ignore)
    ]


class RunDir:
    """Creates or reopens a run directory; refuses a config that differs from the stored one."""

    def __init__(
        self,
        path: Path,
        config: Any,
        ignore: tuple[str, ...] = (),
        hint: str = "use a new --run-dir or repeat the original command to resume",
    ):
        """``ignore`` names config fields that may change between sessions (device, logging);
        nested ones as ``parent.field``. ``hint``: what to do when the configs differ."""
        self.path = Path(path)
        self.config = to_jsonable(config)
        stored_path = self.path / CONFIG
        self.resumed = False
        if stored_path.exists():
            changes = config_changes(self.path, self.config, ignore)
            if changes:
                shown = "; ".join(changes[:3]) + ("; ..." if len(changes) > 3 else "")
                raise AdeptError(
                    f"run dir {self.path} holds a run with a different config ({shown}); {hint}"
                )
            self.resumed = True
        else:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AdeptError(
                    f"cannot create run dir {self.path} ({exc.strerror}); choose another --run-dir"
                ) from exc
            atomic_write_json(
                stored_path,
                {"config": self.config, "adept_version": __version__, "git_sha": git_sha()},
            )

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.exists()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        save_state(self.checkpoint_path, state)

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.checkpoint_path, map_location)

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / SUMMARY, dict(summary))

    def read_summary(self) -> dict[str, Any]:
        return dict(json.loads((self.path / SUMMARY).read_text()))

    def is_finished(self) -> bool:
        return (self.path / SUMMARY).exists()


def save_state(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` a dict of state dicts and tensors, atomically; read by load_checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint of state dicts; never unpickles arbitrary objects (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as exc:
        raise AdeptError(f"no checkpoint at {path}; train first with 'adept train'") from exc
    except Exception as exc:  # torch raises several types for a damaged file
        raise AdeptError(
            f"checkpoint {path} could not be read ({type(exc).__name__}); it may be damaged"
        ) from exc
    if not isinstance(state, dict):
        raise AdeptError(f"checkpoint {path} does not hold a state dict")
    return state


class MetricsLog:
    """metrics.csv: one row per log event, columns added as new metrics appear.

    On resume, rows after the checkpoint's step are dropped, so an interrupted-and-resumed run
    has the same log as an uninterrupted one.
    """

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        self.rows: list[dict[str, Any]] = []
        self.columns: list[str] = ["step", "wall_time"]
        if resume_step is not None and path.exists():
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                self.columns = list(reader.fieldnames or self.columns)
                self.rows = [r for r in reader if int(r["step"]) <= resume_step]
            self._rewrite()
        elif path.exists():
            path.unlink()

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
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.columns, extrasaction="ignore").writerow(row)

    def last_wall_time(self) -> float:
        return float(self.rows[-1]["wall_time"]) if self.rows else 0.0
