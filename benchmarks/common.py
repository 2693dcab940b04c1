"""Helpers shared by the benchmark scripts: parallel training runs, table formatting, results."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adept.data import ReplayBuffer
from adept.data.transitions import Transitions
from adept.datasets import load_dataset
from adept.store.runs import atomic_write_json, read_metrics
from adept.training import TrainConfig, train


def _run(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any]]:
    torch.set_num_threads(1)  # two workers on two cores; default threads would fight
    return config, train(config)


def run_parallel(
    configs: list[TrainConfig], workers: int
) -> Iterator[tuple[TrainConfig, dict[str, Any]]]:
    """Train every config (resuming finished or partial runs), ``workers`` at a time."""
    with mp.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap_unordered(_run, configs)


def updates_per_second(run_dir: Path, start: int, end: int) -> float:
    """Updates/s between the log rows of ``start`` and ``end`` of a run's metrics.csv (the
    set-up, the warm-up and evaluations outside the window left out)."""
    _, rows = read_metrics(run_dir / "metrics.csv")
    times = {int(row["step"]): float(row["wall_time"]) for row in rows}
    return (end - start) / (times[end] - times[start])


def cpu_buffer(dataset: str, threads: int | None) -> tuple[Transitions, ReplayBuffer]:
    """``dataset`` and a replay buffer of it on the CPU, with torch set to ``threads`` threads
    (None: torch's default, all cores): what the speed benchmarks time updates on."""
    if threads is not None:
        torch.set_num_threads(threads)
    data = load_dataset(dataset, progress=False)
    return data, ReplayBuffer.from_transitions(data, device=torch.device("cpu"), seed=0)


def alternating_speeds(
    calls: Mapping[str, Callable[[], Any]], rounds: int, block_seconds: float, warmup: int = 3
) -> dict[str, list[float]]:
    """Calls/s of each of ``calls`` in ``rounds`` rounds of one block each, the calls alternating
    block by block so that a drift of the machine's speed hits all alike. Each call is warmed up
    ``warmup`` times first (the first call last); the block's number of calls is set so that the
    first call's block lasts about ``block_seconds``."""
    for call in reversed(list(calls.values())):
        start = time.perf_counter()
        for _ in range(warmup):
            call()
        first = time.perf_counter() - start
    block = max(1, round(block_seconds * warmup / first))
    speeds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(block):
                call()
            speeds[name].append(block / (time.perf_counter() - start))
    return speeds


def print_results(
    title: str, columns: dict[str, str], rows: list[dict[str, Any]], out: Path | None
) -> None:
    """Print ``title`` and the rows' table, and write the rows as JSON to ``out`` if given."""
    print(f"\n{title}")
    print(format_table(columns, rows))
    if out is not None:
        out.write_text(json.dumps(rows, indent=2))


def mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def table_row(*cells: object) -> str:
    return "| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def format_table(columns: dict[str, str], rows: list[dict[str, Any]]) -> str:
    """A markdown table: one column per ``header → row key``, one line per row."""
    lines = [table_row(*columns), "|---" * len(columns) + "|"]
    lines += [table_row(*(r[key] for key in columns.values())) for r in rows]
    return "\n".join(lines)


def print_table(columns: dict[str, str], rows: list[dict[str, Any]]) -> None:
    print(format_table(columns, rows))


def load_results(out: Path, report: Path | None) -> tuple[Path, dict[str, Any]]:
    """A resumable benchmark's results file and what it holds. With a report the results are
    kept beside it (``REPORT.json``, committed with the report), so the command continues, and
    the report can be rewritten, on any machine; without one they go to ``OUT/results.json``.
    A report's results not kept yet start from ``OUT/results.json`` when that exists."""
    path = out / "results.json" if report is None else report.with_suffix(".json")
    for source in (path, out / "results.json"):
        if source.exists():
            return path, json.loads(source.read_text())
    return path, {}


def save_results(path: Path, results: dict[str, Any]) -> None:
    """Write a benchmark's results.json atomically (a resumable benchmark's state)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, results)
