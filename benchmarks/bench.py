"""What the bench layer costs and saves: its overhead, workers × threads, the shared cache.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.bench                                  # all three parts
    python -m benchmarks.bench --parts overhead
    python -m benchmarks.bench --parts throughput --throughput-seeds 0 1 2 3

- overhead: the smoke preset's wall time with ``--workers 1`` against the sum of its cells run
  alone with ``adept train`` (same configs, world-model cache off on both sides so both
  pre-train every cell's model).
- throughput: cells/hour of a 20k-step IQL grid (``--throughput-dataset``, one cell per seed)
  with ``--workers 1 --threads 2`` and with ``--workers 2 --threads 1``.
- cache: a grid of Diff+IQL, ADEPT+IQL and ADEPT+SAC (one seed, full-size pre-training, a short
  RL budget so set-up dominates) with the shared world-model cache and without it.

Every part runs ``adept bench`` as a user would (a subprocess), on fresh roots under
``--out-dir``, with an artifact cache of its own (datasets are linked from the user's cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tyro

from adept.bench import PRESETS, GridSpec, resolve_spec
from adept.data.cache import data_dir
from adept.datasets.registry import load_dataset
from adept.store.runs import to_jsonable
from benchmarks.common import print_table


@dataclass(frozen=True)
class Args:
    parts: tuple[str, ...] = ("overhead", "cache", "throughput")
    """Parts to run: overhead, cache, throughput."""
    out_dir: Path = Path("/tmp/adept-bench-benchmark")
    """Scratch folder (roots and artifact caches; removed part by part before each run)."""
    throughput_dataset: str = "hopper-random"
    """Dataset of the throughput grid."""
    throughput_seeds: tuple[int, ...] = (0, 1, 2, 3)
    """Seeds (cells) of the throughput grid."""
    throughput_steps: int = 20_000
    """IQL steps per throughput cell."""
    cache_dataset: str = "hopper-random"
    """Dataset of the cache grid."""
    cache_steps: int = 1000
    """RL steps per cache cell (short: the part measures set-up)."""


def _data_dir_for(scratch: Path, datasets: list[str]) -> Path:
    """An ADEPT_DATA_DIR with an empty artifact cache and links to the user's dataset files."""
    target = scratch / "data"
    target.mkdir(parents=True, exist_ok=True)
    for name in datasets:
        load_dataset(name, progress=False)  # made in the user's cache if missing
        src = data_dir() / f"{name}.hdf5"
        if src.exists() and not (target / src.name).exists():
            (target / src.name).symlink_to(src)
    return target


def _run(args: list[str], data: Path) -> float:
    env = {**os.environ, "ADEPT_DATA_DIR": str(data)}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "adept", *args], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"adept {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def _train_args(config: Any) -> list[str]:
    """``adept train`` options that rebuild ``config`` (flattened dotted fields)."""
    out: list[str] = []

    def walk(value: Any, prefix: str) -> None:
        for key, item in value.items():
            if isinstance(item, dict):
                walk(item, f"{prefix}{key}.")
            elif item is None:
                continue
            elif isinstance(item, bool):
                out.append(f"--{prefix}{'' if item else 'no-'}{key}".replace("_", "-"))
            else:
                out.extend([f"--{prefix}{key}".replace("_", "-"), str(item)])

    walk(to_jsonable(config), "")
    return out


def _grid(scratch: Path, dataset: str, *options: list[str]) -> tuple[float, Path]:
    """Run a fresh one-dataset grid under ``scratch`` with its own artifact cache; returns the
    wall time and that ADEPT_DATA_DIR."""
    shutil.rmtree(scratch, ignore_errors=True)
    data = _data_dir_for(scratch, [dataset])
    args = ["bench", "--datasets", dataset, "--root", str(scratch / "grid"), "--no-progress"]
    return _run(args + [o for group in options for o in group], data), data


def overhead(args: Args) -> None:
    scratch = args.out_dir / "overhead"
    shutil.rmtree(scratch, ignore_errors=True)
    smoke = resolve_spec([("preset", PRESETS["smoke"])])
    data = _data_dir_for(scratch, [])
    common = ["--preset", "smoke", "--set", "adept.cache=false", "--no-progress"]
    grid = _run(["bench", *common, "--root", str(scratch / "grid"), "--workers", "1"], data)
    spec = GridSpec.from_json(json.loads((scratch / "grid" / "bench.json").read_text())["spec"])
    alone = 0.0
    for cell in smoke.cells():
        config = spec.cell_config(cell, scratch / "alone")
        alone += _run(["train", *_train_args(config)], data)
    print(f"\noverhead, smoke preset ({len(smoke.cells())} cells, --workers 1, cache off)")
    row = {"grid": grid, "alone": alone, "over": grid - alone, "pct": 100 * (grid / alone - 1)}
    print_table(
        {
            "grid wall (s)": "grid",
            "sum of cells alone (s)": "alone",
            "overhead (s)": "over",
            "overhead (%)": "pct",
        },
        [{k: f"{v:.1f}" for k, v in row.items()}],
    )


def throughput(args: Args) -> None:
    rows = []
    for workers, threads in ((1, 2), (2, 1)):
        scratch = args.out_dir / f"throughput-w{workers}t{threads}"
        wall, _ = _grid(
            scratch,
            args.throughput_dataset,
            ["--agents", "iql", "--methods", "none"],
            ["--seeds", *map(str, args.throughput_seeds)],
            ["--num-steps", str(args.throughput_steps)],
            ["--workers", str(workers), "--threads", str(threads)],
        )
        cells = len(args.throughput_seeds)
        state = json.loads((scratch / "grid" / "bench.json").read_text())
        per_cell = [r["wall_time"] for r in state["cells"].values()]
        rows.append(
            {
                "layout": f"--workers {workers} --threads {threads}",
                "wall": f"{wall:.0f}",
                "cell": f"{sum(per_cell) / cells:.0f}",
                "rate": f"{3600 * cells / wall:.1f}",
            }
        )
    print(
        f"\nthroughput, {len(args.throughput_seeds)} IQL cells of {args.throughput_steps} steps "
        f"on {args.throughput_dataset}"
    )
    print_table(
        {
            "layout": "layout",
            "grid wall (s)": "wall",
            "mean cell wall (s)": "cell",
            "cells/hour": "rate",
        },
        rows,
    )


def cache(args: Args) -> None:
    rows = []
    for cached in (True, False):
        scratch = args.out_dir / f"cache-{'on' if cached else 'off'}"
        wall, data = _grid(
            scratch,
            args.cache_dataset,
            ["--agents", "iql", "sac", "--seeds", "0", "--workers", "1"],
            ["--variant", "diffusion:method=diffusion,agents=iql", "adept:method=adept"],
            ["--num-steps", str(args.cache_steps), "--eval-every", str(args.cache_steps)],
            ["--set", f"adept.cache={str(cached).lower()}"],
        )
        entries = len(list((data / "artifacts").rglob("*.pt")))
        rows.append(
            {"grid": f"cache {'on' if cached else 'off'}", "wall": f"{wall:.0f}", "n": entries}
        )
    print(
        f"\nshared world-model cache: Diff+IQL, ADEPT+IQL, ADEPT+SAC on {args.cache_dataset}, "
        f"seed 0, {args.cache_steps} RL steps each, default pre-training, --workers 1"
    )
    print_table({"grid": "grid", "wall (s)": "wall", "cache entries": "n"}, rows)


def main() -> None:
    args = tyro.cli(Args)
    parts = {"overhead": overhead, "throughput": throughput, "cache": cache}
    for part in args.parts:
        if part not in parts:
            raise SystemExit(f"unknown part {part}; parts: {', '.join(parts)}")
        parts[part](args)


if __name__ == "__main__":
    main()
