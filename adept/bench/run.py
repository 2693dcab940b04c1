"""``adept bench``: check the grid against its folder, make the datasets, run the cells that are
not finished on the chosen backend, and record every outcome in bench.json."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from adept.base.errors import AdeptError
from adept.bench.backends import (
    CellTask,
    check_ray_address,
    import_ray,
    pack_tasks,
    run_local,
    run_ray,
)
from adept.bench.spec import Cell, GridSpec, now
from adept.bench.store import (
    BENCH_JSON,
    FORMAT,
    LOCK,
    PROVENANCE,
    STATES,
    BenchRoot,
    archive_cell,
    check_archived,
    check_cell_dir,
    check_reuse,
    done_fields,
    find_reused,
    is_archived,
    kept_record,
    restore_cell,
    reusable_runs,
)


@dataclass(frozen=True)
class BenchOptions:
    """How a grid runs (not part of what it computes)."""

    root: Path
    workers: int | None = None
    """Cells at once; None: one per core (small MLPs use one thread better than two: on 2
    cores, 2 workers × 1 thread ran 30.4 IQL cells/hour, 1 × 2 threads 21.7)."""
    threads: int | None = None
    """Torch threads per cell; None: cores / workers."""
    pack: int = 1
    """Cells that differ only by seed trained in one process, up to this many (``adept train
    --seeds``: their agents' updates batched); 1: every cell its own process."""
    backend: Literal["local", "ray"] = "local"
    address: str | None = None
    gpus_per_cell: float | None = None
    max_retries: int = 3
    extend: bool = False
    progress: bool = True
    archive: Path | None = None
    """Keep each finished cell's light files here, and take the finished cells found here
    instead of running them (a grid continued on another machine)."""
    reuse: tuple[Path, ...] = ()
    """Other grids' archives or roots: a cell that one of them already ran (the same config in
    every field the run reads, the same data) is taken from there instead of run."""


@dataclass
class BenchResult:
    root: Path
    done: int
    failed: int
    skipped: int
    total: int
    wall_time: float
    restored: int = 0
    """Cells taken from the archive."""
    reused: int = 0
    """Cells taken from other grids (``--reuse``)."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def prepare(spec: GridSpec, options: BenchOptions) -> tuple[BenchRoot, GridSpec]:
    """Check the root against ``spec``; returns the root and the spec to run (extended)."""
    root = BenchRoot(options.root)
    if root.path.exists() and not root.path.is_dir():
        raise AdeptError(f"--root {root.path} is a file; give a folder")
    if root.file.exists():
        state = BenchRoot.read(root.path)
        stored = GridSpec.from_json(state["spec"])
        changes = spec.changes_from(stored)
        if changes and options.extend:
            spec = spec.extending(stored)
        elif changes:
            raise AdeptError(
                f"{root.path} holds a grid with another spec ({'; '.join(changes)}); repeat the "
                "original command to resume it, add --extend to add cells, or use a new --root"
            )
        root.state = state
    elif root.path.exists() and any(p.name != LOCK for p in root.path.iterdir()):
        raise AdeptError(
            f"--root {root.path} is a non-empty folder without {BENCH_JSON}, not a bench root; "
            "give a new or empty folder"
        )
    return root, spec


def _preflight(
    spec: GridSpec, root: Path, progress: bool
) -> tuple[list[tuple[Cell, Any]], dict[str, Any]]:
    """Make the datasets, build and check every cell's config, before anything is written;
    returns the cells with their configs, and the datasets by name."""
    from adept.datasets.registry import dataset_label, load_dataset
    from adept.methods import check_method

    labels: dict[str, str] = {}
    for dataset in spec.datasets:
        label = dataset_label(dataset)
        if label in labels:
            raise AdeptError(
                f"datasets {labels[label]} and {dataset} share the folder name '{label}'; "
                "rename one file"
            )
        labels[label] = dataset
    cells = [(cell, spec.cell_config(cell, root)) for cell in spec.cells()]
    for _, config in cells:
        config.validate()
    datasets = {}
    for dataset in spec.datasets:
        data = load_dataset(dataset, progress=progress)
        if data.env_id is None:
            raise AdeptError(
                f"dataset {dataset} names no env; add env_id under [set] (e.g. env_id = "
                '"Hopper-v5") or name the file after its env'
            )
        datasets[dataset] = data
    for cell, config in cells:
        check_method(config, datasets[cell.dataset])
        check_cell_dir(cell, config)
    return cells, datasets


def run_bench(spec: GridSpec, options: BenchOptions) -> BenchResult:
    """Run (or resume) a grid; see the module docstring. SIGTERM stops it as Ctrl-C does (the
    running cells are interrupted, to resume next time): a grid started in the background,
    where SIGINT is ignored, is stopped with ``kill``, not left with orphaned workers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _run_bench(spec, options)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run_bench(spec, options)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_bench(spec: GridSpec, options: BenchOptions) -> BenchResult:
    from tqdm.auto import tqdm

    workers = cpu_count() if options.workers is None else options.workers
    if workers < 1:
        raise AdeptError(f"--workers must be positive, got {workers}")
    threads = max(cpu_count() // workers, 1) if options.threads is None else options.threads
    if threads < 1:
        raise AdeptError(f"--threads must be positive, got {threads}")
    if options.max_retries < 0:
        raise AdeptError(f"--max-retries must be non-negative, got {options.max_retries}")
    if options.pack < 1:
        raise AdeptError(f"--pack must be positive, got {options.pack}")
    if options.backend == "ray":
        import_ray()
        check_ray_address(options.address)
    # cells and Ray workers may run elsewhere than this process's working directory
    options = dataclasses.replace(options, root=Path(options.root).absolute())
    archive = None if options.archive is None else Path(options.archive).absolute()
    if archive is not None and archive.exists() and not archive.is_dir():
        raise AdeptError(f"--archive {archive} is a file; give a folder")
    check_reuse(options.reuse)
    root, spec = prepare(spec, options)
    t0 = time.perf_counter()
    with root.locked():
        cells, datasets = _preflight(spec, root.path, options.progress)
        from adept import __version__
        from adept.store.runs import SUMMARY, to_jsonable

        reusable = reusable_runs(options.reuse)
        kept_runs: dict[str, tuple[Path, dict[str, Any]]] = {}  # all checked before any is restored
        fingerprints: dict[str, str] = {}

        def fingerprint_of(dataset: str) -> str:
            if dataset not in fingerprints:
                fingerprints[dataset] = datasets[dataset].fingerprint()
            return fingerprints[dataset]

        for cell, config in cells:
            if (Path(config.run_dir) / SUMMARY).exists():
                continue
            data = functools.partial(fingerprint_of, cell.dataset)
            kept = None if archive is None else check_archived(archive, cell, config, data)
            if kept is not None:
                kept_runs[cell.id] = (archive / cell.id, kept)  # type: ignore[operator]
                continue
            key = (config.dataset, config.agent, config.method, config.seed)
            found = find_reused(reusable.get(key, []), cell, config, data)
            if found is not None:
                kept_runs[cell.id] = found

        old = root.state.get("cells", {})
        records: dict[str, dict[str, Any]] = {}
        tasks = []
        restored_count = reused_count = 0
        for cell, config in cells:
            record = {
                "dataset": cell.dataset,
                "dataset_label": cell.label,
                "variant": cell.variant,
                "method": cell.method,
                "agent": cell.agent,
                "seed": cell.seed,
                "path": cell.id,
                "log": f"logs/{cell.log_name}",
                "state": "queued",
                "wall_time": None,
                "attempts": 0,
                "normalized_score_last": None,
                "normalized_score_best": None,
                "error": None,
                "log_tail": None,
                **{k: v for k, v in old.get(cell.id, {}).items() if k != "state"},
            }
            summary = Path(config.run_dir) / SUMMARY
            if cell.id in kept_runs:
                src, kept = kept_runs[cell.id]
                restore_cell(src, config.run_dir, kept)
                record.update(kept)
                if archive is not None and src == archive / cell.id:
                    restored_count += 1
                else:
                    reused_count += 1
            elif summary.exists():
                record.update(done_fields(json.loads(summary.read_text())))
                kept_here = kept_record(Path(config.run_dir))  # restored by an earlier start
                record.update({k: kept_here[k] for k in PROVENANCE if k in kept_here})
            else:
                record["state"] = "queued"
                for stale in ("restored", "reused_from"):  # a run from elsewhere is gone
                    record.pop(stale, None)
                tasks.append(
                    CellTask(
                        cell.id,
                        to_jsonable(config),
                        str(root.path / "logs" / cell.log_name),
                        threads,
                    )
                )
            records[cell.id] = record
        tasks = pack_tasks(tasks, {cell.id: (cell, config) for cell, config in cells}, options.pack)
        for task in tasks:  # a pack's cells share its log
            for cell_id in task.members():
                records[cell_id]["log"] = str(Path(task.log).relative_to(root.path))
        root.state = {
            "format": FORMAT,
            "adept_version": __version__,
            "spec": spec.to_json(),
            "created": root.state.get("created", now()),
            "cells": records,
        }
        root.save()
        skipped = len(cells) - len(tasks)

        def keep(cell_id: str) -> None:
            """Archive a finished cell; a failure is reported, never stops the grid (the next
            start archives what is missing)."""
            run_dir = root.path / records[cell_id]["path"]
            try:
                archive_cell(archive, cell_id, run_dir, records[cell_id])  # type: ignore[arg-type]
            except AdeptError as exc:
                print(f"warning: {exc}", file=sys.stderr, flush=True)

        if archive is not None:
            for cell_id, record in records.items():
                run_dir = root.path / record["path"]
                if record["state"] == "done" and not is_archived(archive, cell_id, run_dir):
                    keep(cell_id)
        bar = tqdm(
            total=len(cells),
            initial=skipped,
            unit="cell",
            disable=not options.progress,
            desc="bench",
            dynamic_ncols=True,
        )
        counts = {"running": 0, "failed": 0}

        def show() -> None:
            bar.set_postfix(running=counts["running"], failed=counts["failed"], refresh=True)

        def started(cell_id: str) -> None:
            records[cell_id]["state"] = "running"
            counts["running"] += 1
            root.save()
            show()

        def finished(cell_id: str, record: dict[str, Any]) -> None:
            records[cell_id].update(record)
            records[cell_id]["finished"] = now()
            counts["running"] -= 1
            if record["state"] == "failed":
                counts["failed"] += 1
                bar.write(f"cell {cell_id} failed: {record['error']}")
            root.save()
            if archive is not None and record["state"] == "done":
                keep(cell_id)
            bar.update(1)
            show()

        try:
            if options.backend == "ray":
                run_ray(
                    tasks,
                    options.address,
                    options.gpus_per_cell,
                    options.max_retries,
                    started,
                    finished,
                    num_cpus=workers * threads,
                )
            else:
                run_local(tasks, workers, started, finished)
        except KeyboardInterrupt:
            for record in records.values():
                if record["state"] == "running":
                    record["state"] = "queued"
            root.save()
            bar.close()
            raise
        bar.close()
    done = sum(r["state"] == "done" for r in records.values())
    failed = sum(r["state"] == "failed" for r in records.values())
    return BenchResult(
        root.path,
        done,
        failed,
        skipped,
        len(records),
        time.perf_counter() - t0,
        restored_count,
        reused_count,
    )


def list_cells(root: Path) -> str:
    """A table of a bench root's cells and their states (``adept bench --root R --list``)."""
    state = BenchRoot.read(root)
    lines = [f"{'cell':<60} {'state':<8} {'last':>7} {'wall (s)':>9}"]
    for cell_id, record in state["cells"].items():
        score = record.get("normalized_score_last")
        wall = record.get("wall_time")
        lines.append(
            f"{cell_id:<60} {record['state']:<8} "
            f"{'' if score is None else f'{score:7.1f}':>7} "
            f"{'' if wall is None else f'{wall:9.0f}':>9}"
        )
    counts = {s: sum(r["state"] == s for r in state["cells"].values()) for s in STATES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)
