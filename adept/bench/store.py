"""A grid's folder (bench.json and its lock), the archive of finished cells that lets a grid
continue
on another machine, and the reuse of cells other grids already ran."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from adept.base.atomic import sole_lock
from adept.base.errors import AdeptError, warn
from adept.bench.spec import Cell, GridSpec, now

FORMAT = 1
BENCH_JSON = "bench.json"
LOCK = ".bench.lock"
LOG_TAIL_LINES = 20
MARKER = "bench-cell.json"
"""Written into a cell's run dir at each start: attempts, pid, host, start time."""
STATES = ("queued", "running", "done", "failed")
ARCHIVED = ("config.json", "metrics.csv", "summary.json", "divergence.json")
"""A finished cell's files that ``--archive`` keeps (checkpoints and logs are left out)."""
RECORD = "record.json"
"""The cell's bench.json record, beside its archived files."""


class BenchRoot:
    """The root folder: bench.json (written only by the driver, atomically) and a lock that
    keeps two drivers off one root."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = self.path / BENCH_JSON
        self.state: dict[str, Any] = {}

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """bench.json of ``path``, or a one-line error when it is not a bench root."""
        path = Path(path)
        file = path / BENCH_JSON
        if not path.is_dir():
            raise AdeptError(f"{path} does not exist; give the --root of an 'adept bench' run")
        if not file.exists():
            raise AdeptError(
                f"{path} is not a bench root (no {BENCH_JSON}); "
                "give the --root of an 'adept bench' run"
            )
        try:
            state = json.loads(file.read_text())
            GridSpec.from_json(state["spec"])
            cells = state["cells"]
            assert isinstance(cells, dict)
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            raise AdeptError(
                f"{file} is damaged ({type(exc).__name__}: {exc}); "
                f"restore it, or delete it and re-run the grid's command to rebuild it"
            ) from None
        return state

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the root's lock; a root this call created is removed again when the call fails
        before writing anything else (bad input leaves nothing on disk)."""
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock():
                yield
        except BaseException:
            if created and [p.name for p in self.path.iterdir()] == [LOCK]:
                (self.path / LOCK).unlink()
                self.path.rmdir()
            raise

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return sole_lock(
            self.path / LOCK,
            lambda holder: (
                f"another adept bench ({holder}) is running on {self.path}; "
                "wait for it, or stop it and re-run"
            ),
        )

    def save(self) -> None:
        from adept.store.runs import atomic_write_json

        self.state["updated"] = now()
        atomic_write_json(self.file, self.state)


def check_cell_dir(cell: Cell, config: Any) -> None:
    """Refuse a cell whose run directory does not hold this cell's run (edited by hand, or
    written by another grid), with the fix; an unfinished run is fine (it resumes)."""
    from adept.store.runs import CHECKPOINT, CONFIG, SUMMARY, config_changes
    from adept.training import migrate_config, same_run_fields

    path = Path(config.run_dir)
    fix = f"delete {path} to run that cell again"
    if path.exists() and not path.is_dir():
        raise AdeptError(f"cell {cell.id}: {path} is not a directory; {fix}")
    if not (path / CONFIG).exists():
        if (path / CHECKPOINT).exists() or (path / SUMMARY).exists():
            raise AdeptError(f"cell {cell.id}: {path} has run files but no {CONFIG}; {fix}")
        return
    try:
        changes = config_changes(path, config, same_run_fields(config), migrate_config)
    except ValueError as exc:
        raise AdeptError(f"cell {cell.id}: {path / CONFIG} is unreadable ({exc}); {fix}") from None
    if changes:
        raise AdeptError(
            f"cell {cell.id}: {path} holds a run with another config ({'; '.join(changes[:3])}); "
            f"{fix}"
        )
    if (path / SUMMARY).exists():
        try:
            json.loads((path / SUMMARY).read_text())["normalized_score_last"]
        except (ValueError, KeyError, TypeError):
            raise AdeptError(f"cell {cell.id}: {path / SUMMARY} is damaged; {fix}") from None


def _copy_cell(src: Path, dest: Path, names: Sequence[str], extra: Mapping[str, Any]) -> None:
    """Copy ``names`` (those present) from ``src`` and write ``extra`` as JSON files into
    ``dest``, replacing it whole: everything goes to a temporary sibling first, so a failure
    leaves ``dest`` as it was."""
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.tmp"
    old = dest.parent / f".{dest.name}.{os.getpid()}.old"
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.mkdir()
        for name in names:
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        for name, value in extra.items():
            (tmp / name).write_text(json.dumps(value, indent=2) + "\n")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not dest.exists():
            os.replace(old, dest)
        reason = exc.strerror or exc
        raise AdeptError(f"could not write {dest} ({reason}); nothing was changed") from None
    shutil.rmtree(old, ignore_errors=True)


def _archived_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """What of a cell's bench.json record the archive keeps (the log belongs to the root)."""
    return {k: v for k, v in record.items() if k not in ("log", "log_tail", "path")}


def archive_cell(archive: Path, cell_id: str, run_dir: Path, record: Mapping[str, Any]) -> None:
    """Keep a finished cell's light files and record in ``archive/<cell id>/``."""
    _copy_cell(Path(run_dir), Path(archive) / cell_id, ARCHIVED, {RECORD: _archived_record(record)})


def is_archived(archive: Path, cell_id: str, run_dir: Path) -> bool:
    """Whether ``archive`` holds this finished run (the same summary.json)."""
    from adept.store.runs import SUMMARY

    kept = Path(archive) / cell_id / SUMMARY
    return kept.is_file() and kept.read_bytes() == (Path(run_dir) / SUMMARY).read_bytes()


def _kept_run(src: Path, config: Any) -> tuple[list[str], dict[str, Any]]:
    """How the finished run kept at ``src`` differs from ``config`` (in the fields its run
    reads), and its bench.json outcome; ValueError, KeyError or TypeError when damaged."""
    from adept.store.runs import SUMMARY, config_changes
    from adept.training import migrate_config, same_run_fields

    changes = config_changes(src, config, same_run_fields(config), migrate_config)
    return changes, done_fields(json.loads((src / SUMMARY).read_text()))


def _other_data(src: Path, fingerprint: Callable[[], str]) -> str | None:
    """'other data (…)' when the run kept at ``src`` recorded a data fingerprint that is not
    ``fingerprint()``; None when it is the same data, or not recorded (``runs.fact_changes``)."""
    from adept.store.runs import fact_changes
    from adept.training.run import DATASET_FINGERPRINT

    changed = fact_changes(src, {DATASET_FINGERPRINT: fingerprint()})
    return changed[0] if changed else None


def kept_record(src: Path) -> dict[str, Any]:
    """The bench.json record kept beside an archived run (empty when there is none)."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        return dict(json.loads((src / RECORD).read_text()))
    return {}


def check_archived(
    archive: Path, cell: Cell, config: Any, fingerprint: Callable[[], str]
) -> dict[str, Any] | None:
    """The archive's bench.json record of ``cell`` finished, or None when it does not hold the
    cell finished; a kept run of another config, of other data (``fingerprint``: today's
    dataset's, asked for only when the archive holds the cell), or a damaged one, is refused
    with the fix."""
    from adept.store.runs import CONFIG, SUMMARY

    src = Path(archive) / cell.id
    if not (src / SUMMARY).is_file():
        return None
    fix = f"delete {src} to run that cell again, or give another --archive"
    try:
        changes, record = _kept_run(src, config)
        other = _other_data(src, fingerprint)
    except (ValueError, KeyError, TypeError) as exc:
        raise AdeptError(f"cell {cell.id}: the archive's {src} is damaged ({exc}); {fix}") from None
    if changes:
        raise AdeptError(
            f"cell {cell.id}: the archive's {src / CONFIG} holds another config "
            f"({'; '.join(changes[:3])}); {fix}"
        )
    if other:
        raise AdeptError(
            f"cell {cell.id}: the archive's run was made from {other} than "
            f"{cell.dataset} is on this machine; make that dataset as it was made there "
            f"(same version, seed and threads), or {fix}"
        )
    return {**kept_record(src), **record, "restored": True}


RunKey = tuple[str, str, str, int]
"""What a finished run is looked up by among other grids' runs: dataset, agent, method, seed."""


def reusable_runs(sources: Sequence[Path]) -> dict[RunKey, list[tuple[Path, str]]]:
    """Every finished run held by ``sources`` (other grids' ``--archive`` folders or roots),
    as (source, run's path in it) by :data:`RunKey`; a folder without runs gives none (the
    sources are folders: :func:`check_reuse` refused the others before the grid began)."""
    from adept.store.runs import CONFIG, SUMMARY

    found: dict[RunKey, list[tuple[Path, str]]] = {}
    for source in sources:
        source = Path(source).absolute()
        for summary in sorted(source.rglob(SUMMARY)):
            try:
                c = json.loads((summary.parent / CONFIG).read_text())["config"]
                key = (str(c["dataset"]), str(c["agent"]), str(c["method"]), int(c["seed"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a finished run of adept train
            found.setdefault(key, []).append(
                (source, summary.parent.relative_to(source).as_posix())
            )
    return found


def _shown(path: Path) -> str:
    """``path`` as a report names it: relative to the working directory when inside it."""
    with contextlib.suppress(ValueError):
        return Path(path).relative_to(Path.cwd()).as_posix()
    return str(path)


_OUTCOME: tuple[str, ...] = ("wall_time", "attempts", "finished")
"""What a reused cell's record takes from the other grid's (its names and path stay this grid's)."""


def find_reused(
    candidates: Sequence[tuple[Path, str]], cell: Cell, config: Any, fingerprint: Callable[[], str]
) -> tuple[Path, dict[str, Any]] | None:
    """The first of ``candidates`` (other grids' finished runs of this cell's dataset, agent,
    method and seed, from :func:`reusable_runs`) that is this cell's run — the same config in
    every field the run reads, made from the same data — and the bench.json record it gives
    the cell; None when none is. When none is, each candidate passed over is named in a
    warning with why (damaged, made from other data, or another config: its first
    differences), so a cell that runs again never does so silently; when one is, those passed
    over before it are not (another grid's run of the same key under other options is the
    rule when grids share cells, not news). A run from before runs recorded their data's
    fingerprint is reused with a warning that its data could not be checked."""
    from adept.store.runs import CONFIG
    from adept.training.run import DATASET_FINGERPRINT

    passed_over: list[str] = []
    for source, name in candidates:
        src = source / name
        try:
            changes, record = _kept_run(src, config)
            other = None if changes else _other_data(src, fingerprint)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            passed_over.append(f"cell {cell.id}: {src} is damaged ({exc}); not reused")
            continue
        if changes or other:
            why = other or f"another config: {'; '.join(changes[:3])}"
            passed_over.append(f"cell {cell.id}: {src} was made from {why}; not reused")
            continue
        if DATASET_FINGERPRINT not in json.loads((src / CONFIG).read_text()):  # read above
            warn(
                f"cell {cell.id}: {src} records no data fingerprint (a run from before adept "
                f"recorded it), so its data is taken on trust; delete it there to run the "
                "cell here instead"
            )
        kept = kept_record(src)
        outcome: dict[str, Any] = {k: kept[k] for k in _OUTCOME if k in kept}
        reused = {"archive": _shown(source), "cell": name}
        return src, {**outcome, **record, "restored": True, "reused_from": reused}
    for message in passed_over:
        warn(message)
    return None


PROVENANCE: tuple[str, ...] = ("restored", "reused_from", *_OUTCOME)
"""What a restored cell's record says about where its run came from; kept in the run
directory too (:func:`restore_cell`), so a restore the driver did not live to record in
bench.json still says so on the next start."""


def restore_cell(src: Path, run_dir: Path, record: Mapping[str, Any]) -> None:
    """Put the finished run kept at ``src`` (an archive's or another grid's, checked first by
    :func:`check_archived` or :func:`find_reused`) into ``run_dir``, replacing an unfinished
    one, with ``record``'s provenance beside it."""
    provenance = {k: record[k] for k in PROVENANCE if k in record}
    _copy_cell(Path(src), Path(run_dir), ARCHIVED, {RECORD: provenance})


def check_reuse(sources: Sequence[Path]) -> None:
    """Refuse a ``--reuse`` source that is not a folder, before the grid makes anything."""
    for source in sources:
        if not Path(source).is_dir():
            raise AdeptError(
                f"--reuse {Path(source).absolute()} is not a folder; give another grid's "
                "--archive folder or root"
            )


def done_fields(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The bench.json fields of a finished cell, from its summary.json."""
    return {
        "state": "done",
        "normalized_score_last": summary["normalized_score_last"],
        "normalized_score_best": summary["normalized_score_best"],
        "error": None,
        "log_tail": None,
    }
