"""Every committed report, re-rendered from its archived cells, must come out as it was committed.

A report under ``docs/results/<name>/`` that keeps its grid beside it (``grid.toml``) and its
finished cells (``cells/``, the ``--archive`` of the grid) can be made again without running
anything: this script builds a bench root in a temporary folder — ``bench.json`` from the grid's
spec and each cell's archived record, each cell's archived files as its run directory — renders
the report with the reference it was made with, and compares its tables (``results.csv``,
and the table rows of ``results.md``) with the committed ones, line by line::

    python -m benchmarks.reports                       # every report with a grid and cells
    python -m benchmarks.reports --reports adept-claim-cpu50k

It prints one line per report and exits non-zero when any differs. A change to the code that
reads runs or renders reports (or to the layout of the run files it reads) must leave every
line of every committed report as it is.

``--against REV`` compares with what the code of commit ``REV`` renders from the same rebuilt
roots instead (its ``adept report``, the whole of results.md but the root's provenance line, and
results.csv): the check of a change that must render every report as before, whether or not the
committed reports are up to date with today's report code::

    python -m benchmarks.reports --against 9d284ab

``--write`` puts the re-rendered reports in place of the committed ones (results.md, results.csv,
report.html and the figures; the grid, the cells and the reading stay): the one command that
brings the committed reports up to date with today's report code. Their provenance line then
names the cells they were rendered from (``root docs/results/<name>/cells``)::

    python -m benchmarks.reports --write
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tyro

from adept.bench import GridSpec, load_toml, resolve_spec
from adept.bench.store import BENCH_JSON, FORMAT, RECORD
from adept.report.command import write_report

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "docs" / "results"

REFERENCES = {
    "adept-claim-cpu50k": None,
    "adept-levers-cpu50k": None,
    "precision-table-cpu20k": "fp32",
    "synther-table-cpu50k": "synther",
    "trajectory-table-cpu50k": "none",
}
"""Each report's ``adept report --reference`` as docs/results/README.md gives its command."""


@dataclass(frozen=True)
class Args:
    reports: tuple[str, ...] = tuple(REFERENCES)
    """Reports to re-render (folders of docs/results with a grid.toml and cells/)."""
    against: str | None = None
    """Compare with the reports the code of this commit renders from the same roots (default:
    with the committed reports)."""
    keep: Path | None = None
    """Keep the rebuilt roots and reports here (default: a temporary folder, removed)."""
    write: bool = False
    """Write the re-rendered reports over the committed ones (their grid, cells and reading
    stay as they are)."""


def rebuild_root(spec: GridSpec, cells: Path, root: Path) -> int:
    """A bench root of ``spec`` whose cells are the archived ones; returns how many it holds."""
    entries = {}
    for cell in spec.cells():
        src = cells / cell.id
        if not (src / RECORD).is_file():
            continue
        shutil.copytree(src, root / cell.id, ignore=shutil.ignore_patterns(RECORD))
        kept = json.loads((src / RECORD).read_text())  # the record less its root's paths
        entries[cell.id] = {"path": cell.id, "log": f"logs/{cell.log_name}", **kept}
    bench = {"format": FORMAT, "spec": spec.to_json(), "cells": entries}
    (root / BENCH_JSON).write_text(json.dumps(bench, indent=1))
    return len(entries)


def _lines(path: Path, tables_only: bool) -> list[str]:
    """What a report file holds: every row of results.csv; of results.md the table rows
    (``tables_only``: its prose, which explains the tables, changes with the code that writes
    it), or every line but the root's provenance (its folder, the adept version and the time)."""
    lines = path.read_text().splitlines()
    if path.suffix == ".csv":
        return lines
    if tables_only:
        return [line for line in lines if line.startswith("|")]
    return [line for line in lines if not line.startswith("root ")]


def render_at(tree: Path, root: Path, out: Path, reference: str | None) -> Path:
    """``adept report`` of ``root`` by the code under ``tree``."""
    argv = ["report", str(root), "--out", str(out)]
    if reference is not None:
        argv += ["--reference", reference]
    code = "import sys; from adept.cli import main; main(sys.argv[1:])"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"adept report failed under {tree}:\n{done.stderr[-2000:]}")
    return out


def differences(before: Path, made: Path, tables_only: bool = True) -> list[str]:
    """The first differing line of each compared file (empty: the same)."""
    found = []
    for name in ("results.md", "results.csv"):
        old, new = _lines(before / name, tables_only), _lines(made / name, tables_only)
        if old != new:
            at = next(
                (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
                min(len(old), len(new)),
            )
            shown_old = old[at] if at < len(old) else "(end)"
            shown_new = new[at] if at < len(new) else "(end)"
            found.append(f"{name} line {at + 1}: {shown_old!r} → {shown_new!r}")
    return found


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def main(args: Args) -> int:
    holder = None if args.keep else tempfile.TemporaryDirectory(prefix="adept-reports-")
    top = args.keep or Path(holder.name)  # type: ignore[union-attr]
    tree = None
    if args.against is not None:
        from benchmarks.identity import export

        tree = export(args.against, top / "before-tree")
    failed = 0
    for name in args.reports:
        folder = RESULTS / name
        spec = resolve_spec([(name, load_toml(folder / "grid.toml"))])
        # the root's path relative to the rebuilt tree is the cells' path in the repository, so
        # that a written report's provenance line names where its runs are
        cells = (folder / "cells").relative_to(REPO)
        root = top / name / "tree" / cells
        root.mkdir(parents=True, exist_ok=True)
        held = rebuild_root(spec, folder / "cells", root)
        with _working_directory(top / name / "tree"):
            result = write_report(cells, out=top / name / "report", reference=REFERENCES.get(name))
        if tree is None:
            found = differences(folder, result.out)
        else:
            before = render_at(tree, root, top / name / "before", REFERENCES.get(name))
            found = differences(before, result.out, tables_only=False)
        verdict = "same" if not found else "DIFFERS: " + "; ".join(found)
        if args.write and tree is None:
            for made in sorted(result.out.iterdir()):
                if made.suffix in (".md", ".csv", ".html", ".png"):
                    shutil.copyfile(made, folder / made.name)
            verdict = "written" + ("" if not found else f" (was: {verdict})")
            found = []
        print(f"{name:26s} {held:3d} cells  {verdict}", flush=True)
        failed += bool(found)
    than = "as committed" if tree is None else f"as {args.against}'s code renders them"
    print(f"{len(args.reports) - failed} of {len(args.reports)} reports re-render {than}")
    if holder is not None:
        holder.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(Args)))
