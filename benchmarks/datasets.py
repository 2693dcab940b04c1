"""Make the project's D4RL-protocol datasets and measure them: the figures of docs/datasets.md.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.datasets          # the nine env × {random, medium, medium-replay}
    python -m benchmarks.datasets --envs hopper --kinds medium medium-replay

Each dataset is made into the cache (``$ADEPT_DATA_DIR``) exactly as ``adept data make NAME`` makes
it. One already there, made by the current revision of its recipe, is measured, not remade; its
make time is read from the log of the run that made it when this script made it (``times.json``
beside the results), else reported as '—'.
A ``medium`` make includes its SAC run; ``medium-replay`` after it reuses that run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from adept.data import load_hdf5
from adept.datasets import cached_path, make_dataset
from adept.datasets.registry import cache_problem
from adept.datasets.summary import summarize

KINDS = ("random", "medium", "medium-replay")
ENVS = ("hopper", "halfcheetah", "walker2d")


@dataclass(frozen=True)
class Args:
    envs: tuple[str, ...] = ENVS
    """Envs to make."""
    kinds: tuple[str, ...] = KINDS
    """Protocol kinds to make."""
    out_dir: Path = Path("runs/bench-datasets")
    """Results JSON and the make-time log."""
    threads: int | None = None
    """torch threads (None: torch's default, one per core)."""


def measure(name: str, times: dict[str, float]) -> dict[str, Any]:
    path = cached_path(name)
    if cache_problem(name) is not None:
        start = time.perf_counter()
        make_dataset(name, path, progress=False)
        times[name] = time.perf_counter() - start
        print(f"  made {name} in {times[name]:.1f} s", flush=True)
    data = load_hdf5(path)
    s, meta = summarize(data), data.metadata
    return {
        "dataset": name,
        "transitions": s["transitions"],
        "episodes": s["episodes"],
        "score_mean": s["normalized_score_mean"],
        "return_mean": s["return_mean"],
        "return_p10": s["return_p10"],
        "return_p90": s["return_p90"],
        "sac_steps": meta.get("sac_steps"),
        "sac_eval_return": meta.get("sac_eval_return"),
        "sac_wall_time_s": meta.get("sac_wall_time_s"),
        "reached_target": meta.get("reached_target"),
        "make_s": times.get(name),
        "file_mb": path.stat().st_size / 2**20,
    }


def cell(value: Any, fmt: str = "{}") -> str:
    return "—" if value is None else fmt.format(value)


def main(args: Args) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    times_path = args.out_dir / "times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    rows = []
    for env in args.envs:
        for kind in args.kinds:
            rows.append(measure(f"{env}-{kind}", times))
            times_path.write_text(json.dumps(times, indent=2))
    print(
        "\n| dataset | transitions | episodes | behaviour score | return mean [p10, p90] "
        "| SAC steps | SAC eval return at stop | SAC wall (s) | make wall (s) | file (MB) |"
    )
    print("|---" * 10 + "|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['transitions']:,} | {r['episodes']:,} | {r['score_mean']:.1f} "
            f"| {r['return_mean']:.0f} [{r['return_p10']:.0f}, {r['return_p90']:.0f}] "
            f"| {cell(r['sac_steps'], '{:,}')} | {cell(r['sac_eval_return'], '{:.0f}')} "
            f"| {cell(r['sac_wall_time_s'], '{:.0f}')} | {cell(r['make_s'], '{:.0f}')} "
            f"| {r['file_mb']:.0f} |"
        )
    total = sum(r["make_s"] for r in rows if r["make_s"] is not None)
    print(f"\ntotal make time of the datasets made by this script: {total:.0f} s")
    (args.out_dir / "results.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main(tyro.cli(Args))
