"""Same numbers before and after a change: every agent × method trained briefly at a fixed seed
by the code of two commits, their logs and checkpoints compared bit for bit.

A restructuring that moves code but changes no algorithm must leave every run as it was. This
script checks that: it exports ``--against`` (a commit, default ``HEAD``) into a temporary folder,
and runs each case there and in this working tree, one ``adept train`` process each, with
separate data folders (so the artifact cache of one side never serves the other) and the same
environment (fp32, no compile). Each case compares

- ``metrics.csv``, every column but ``wall_time``, value for value;
- every tensor of the final ``checkpoint.pt`` (agent, method, random states), by its key path;
- the data fingerprint recorded in ``config.json`` and ``summary.json`` less its wall time.

Run it alone on the machine (two torch processes at once slow each other down)::

    python -m benchmarks.identity --against 9d284ab            # every case, ≈ 10 min on 2 cores
    python -m benchmarks.identity --against main --cases iql-adept sac-none

It prints one line per case and exits non-zero when any case differs. The same-seed runs of one
commit are bit-identical on one machine; run both sides on the same machine, as this does.

The command line of each side is its own (``BEFORE_FLAGS`` / ``AFTER_FLAGS``): when a change
renames a flag, the new spelling goes into ``AFTER_FLAGS`` and the old one stays in
``BEFORE_FLAGS``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

REPO = Path(__file__).resolve().parent.parent
AGENTS = ("iql", "sac", "td3bc", "bc")
METHODS = ("none", "diffusion", "adept", "synther", "pgd", "dydiff")

RUN_FLAGS = [
    "--dataset", "hopper-random-n5000",
    "--num-steps", "100",
    "--batch-size", "64",
    "--eval-every", "50",
    "--eval-episodes", "1",
    "--log-every", "25",
    "--checkpoint-every", "50",
    "--device", "cpu",
    "--no-progress",
]  # fmt: skip
"""The run itself, the same for every case."""

# Each method at a size that trains in seconds (the bench's smoke preset), as both sides spell it.
# The pre-training and generator seeds are left at their defaults (the run's seed).
BEFORE_FLAGS: dict[str, list[str]] = {
    "none": [],
    "diffusion": [
        "--adept.pretrain-steps", "60",
        "--adept.behavior-steps", "60",
        "--adept.model-batch-size", "64",
        "--adept.select-every", "20",
        "--adept.select-rows", "256",
        "--adept.rollout-every", "25",
        "--adept.rollout-start", "25",
        "--adept.rollout-batch", "64",
        "--adept.model-update-steps", "5",
        "--adept.is-batch-size", "256",
        "--adept.diagnostics-batch", "256",
        "--adept.true-error-every", "2",
        "--adept.true-error-starts", "16",
        "--adept.world-model.hidden", "64",
    ],
    "synther": ["--synther.preset", "smoke", "--synther.num-samples", "2000"],
    "pgd": ["--pgd.preset", "smoke"],
    "dydiff": ["--dydiff.preset", "smoke", "--dydiff.one-step-steps", "60"],
}  # fmt: skip
BEFORE_FLAGS["adept"] = BEFORE_FLAGS["diffusion"]
# ADEPT's options grouped by concern (--adept.pretrain.*, .rollout.*, .refit.*, .mix.*,
# .diagnostics.*); Diff+X reads no --adept.refit.* option and refuses one.
WORLD_MODEL_FLAGS = [
    "--adept.pretrain.steps", "60",
    "--adept.pretrain.behavior-steps", "60",
    "--adept.pretrain.batch-size", "64",
    "--adept.pretrain.select-every", "20",
    "--adept.pretrain.select-rows", "256",
    "--adept.rollout.every", "25",
    "--adept.rollout.start", "25",
    "--adept.rollout.batch-size", "64",
    "--adept.diagnostics.batch-size", "256",
    "--adept.diagnostics.true-error-every", "2",
    "--adept.diagnostics.true-error-samples", "16",
    "--adept.world-model.hidden", "64",
]  # fmt: skip
AFTER_FLAGS: dict[str, list[str]] = {
    **BEFORE_FLAGS,
    "diffusion": WORLD_MODEL_FLAGS,
    "adept": [*WORLD_MODEL_FLAGS, "--adept.refit.steps", "5", "--adept.refit.batch-size", "256"],
}

PACKED = {"iql-adept", "sac-diffusion", "td3bc-none", "bc-synther"}
"""Cases also trained as a pack of two seeds (``--seeds 0 1``), one run directory per seed."""


@dataclass(frozen=True)
class Args:
    against: str = "HEAD"
    """The commit to compare this working tree with."""
    cases: tuple[str, ...] = ()
    """Cases to run, as <agent>-<method> or <agent>-<method>-pack (default: every agent × every
    method, and the packed cases)."""
    keep: Path | None = None
    """Keep both sides' run directories here (default: a temporary folder, removed)."""


def all_cases() -> list[str]:
    cases = [f"{agent}-{method}" for agent in AGENTS for method in METHODS]
    return cases + [f"{case}-pack" for case in cases if case in PACKED]


def export(commit: str, into: Path) -> Path:
    """The tree of ``commit`` (its tracked files) under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_case(root: Path, case: str, flags: Mapping[str, list[str]], out: Path) -> Path:
    """``adept train`` of ``case`` with the code under ``root``; returns its run directory."""
    agent, method, *pack = case.split("-")
    seeds = ["--seeds", "0", "1"] if pack else ["--seed", "0"]
    run_dir = out / "runs" / case
    argv = [
        *RUN_FLAGS,
        "--agent", agent,
        "--method", method,
        *seeds,
        *flags[method],
        "--run-dir", str(run_dir),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "ADEPT_DATA_DIR": str(out / "data"),
        "ADEPT_PRECISION": "fp32",
        "ADEPT_COMPILE": "off",
    }
    code = (
        "import sys; import adept.cli as cli; "
        f"assert cli.__file__.startswith({str(root)!r}), cli.__file__; cli.main(sys.argv[1:])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "train", *argv],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{case} failed under {root}:\n{done.stderr[-3000:]}")
    return run_dir


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in csv.DictReader(f)]


def _tensors(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a checkpoint by its key path (tensors, and plain values beside them)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{prefix}/{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _tensors(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b


def differences(before: Path, after: Path) -> list[str]:
    """What differs between two run directories of one case (empty: nothing)."""
    found: list[str] = []
    if _rows(before / "metrics.csv") != _rows(after / "metrics.csv"):
        found.append("metrics.csv")
    a = torch.load(before / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(after / "checkpoint.pt", map_location="cpu", weights_only=True)
    ignored = {"/wall_time", "/sha256"}  # the digest covers the wall time
    leaves_a = {k: v for k, v in _tensors(a) if k not in ignored}
    leaves_b = {k: v for k, v in _tensors(b) if k not in ignored}
    if leaves_a.keys() != leaves_b.keys():
        only = sorted(leaves_a.keys() ^ leaves_b.keys())
        found.append(f"checkpoint keys ({len(only)} on one side only, e.g. {only[:3]})")
    unequal = [
        key
        for key in sorted(leaves_a.keys() & leaves_b.keys())
        if not (key.startswith("/metrics") and key.endswith("wall_time"))
        and not _same(leaves_a[key], leaves_b[key])
    ]
    if unequal:
        found.append(f"checkpoint: {len(unequal)} values differ, e.g. {unequal[:3]}")
    summaries = [json.loads((d / "summary.json").read_text()) for d in (before, after)]
    for s in summaries:
        s.pop("wall_time", None)
    if summaries[0] != summaries[1]:
        found.append("summary.json")
    prints = [
        json.loads((d / "config.json").read_text()).get("dataset_fingerprint")
        for d in (before, after)
    ]
    if prints[0] != prints[1]:
        found.append("dataset fingerprint")
    return found


def run_dirs(run_dir: Path, case: str) -> list[Path]:
    """The run directories a case wrote: one, or one per seed of a pack."""
    return [run_dir / "seed0", run_dir / "seed1"] if case.endswith("-pack") else [run_dir]


def main(args: Args) -> int:
    cases = list(args.cases) or all_cases()
    unknown = sorted(set(cases) - set(all_cases()))
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {all_cases()}")
    holder = None if args.keep else tempfile.TemporaryDirectory(prefix="adept-identity-")
    top = args.keep or Path(holder.name)  # type: ignore[union-attr]
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", args.against],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    before_root = export(args.against, top / "before-tree")
    print(f"before: {args.against} ({sha}), after: the working tree at {REPO}")
    failed = 0
    for case in cases:
        start = time.perf_counter()
        a = run_case(before_root, case, BEFORE_FLAGS, top / "before")
        b = run_case(REPO, case, AFTER_FLAGS, top / "after")
        found = [
            f"{x.name}: {what}"
            for x, y in zip(run_dirs(a, case), run_dirs(b, case), strict=True)
            for what in differences(x, y)
        ]
        seconds = time.perf_counter() - start
        verdict = "same" if not found else "DIFFERS: " + "; ".join(found)
        print(f"{case:22s} {verdict}  ({seconds:.0f} s)", flush=True)
        failed += bool(found)
    print(f"{len(cases) - failed} of {len(cases)} cases identical")
    if holder is not None:
        holder.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
