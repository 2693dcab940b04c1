"""``adept report``: a bench root in, report.md, report.html, results.csv and the figures out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from adept.base.atomic import atomic_files, make_folder
from adept.base.errors import AdeptError
from adept.report.analysis import analyze
from adept.report.document import document
from adept.report.figures import make_figures
from adept.report.load import STATES, load_bench
from adept.report.render import to_csv, to_html, to_markdown

FIGURE_NAMES = ("learning_curves.png", "aggregate_iqm.png", "diagnostics.png")


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote, and how much of the grid it covers."""

    out: Path
    files: tuple[Path, ...]
    cells_done: int
    cells_total: int
    unfinished: Mapping[str, int]
    """Cells not finished, by state (queued, running, failed)."""


def write_report(
    root: Path,
    out: Path | None = None,
    reference: str | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> ReportResult:
    """Write results.csv, results.md, the figures and report.html for a bench root into ``out``
    (default ROOT/report). Everything is computed, then written to temporaries, before the
    first file is replaced, so an error (a full disk too) leaves the previous report as it was,
    never half of one and half of another. ``seed`` fixes the
    bootstrap, so the same root gives the same report."""
    if reps < 100:
        raise AdeptError(f"--reps {reps} is too few for a 95 % interval; use at least 100")
    bench = load_bench(Path(root))
    variants = list(bench.spec.get("variants", {}))
    if reference is not None and reference not in variants:
        raise AdeptError(
            f"--reference {reference!r} names no variant of this bench; "
            f"choose one of: {', '.join(variants)}"
        )
    if reference is None and "adept" in variants:
        reference = "adept"
    if not bench.cells:
        raise AdeptError(
            f"{bench.root / 'bench.json'} lists no cells; re-run the 'adept bench' command"
        )
    if not bench.done:
        counts = bench.unfinished()
        shown = ", ".join(f"{counts[s]} {s}" for s in STATES if counts[s])
        raise AdeptError(
            f"no cell has finished yet; {shown} of {len(bench.cells)} cells; wait for "
            "'adept bench' to finish one, then report again"
        )
    out = Path(out) if out is not None else bench.root / "report"
    if out.exists() and not out.is_dir():
        raise AdeptError(f"report folder {out} is a file; give another --out")

    analysis = analyze(bench, reference, reps, seed)
    figures = make_figures(bench, analysis, reps, seed)
    blocks = document(bench, analysis, figures, reps)
    payloads = {
        "results.csv": to_csv(analysis, bench.budget).encode(),
        "results.md": to_markdown(blocks).encode(),
        **{f.name: f.png for f in figures},
        "report.html": to_html(blocks, f"Bench report: {bench.budget}").encode(),
    }
    make_folder(out, "report folder", "give another --out")
    atomic_files(out, payloads)  # all or none: a full disk leaves the previous report whole
    # a figure this report skipped must not survive from an earlier report of the same root
    for name in FIGURE_NAMES:
        if name not in payloads:
            (out / name).unlink(missing_ok=True)
    return ReportResult(
        out=out,
        files=tuple(out / name for name in payloads),
        cells_done=len(bench.done),
        cells_total=len(bench.cells),
        unfinished=dict(bench.unfinished()),
    )


@dataclass(frozen=True)
class Report:
    """Report an 'adept bench' root: tables with 95 % CIs, IQM and probability of improvement
    (rliable), learning curves and diagnostics, as results.csv, results.md and report.html."""

    root: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="ROOT")]
    """The --root of an 'adept bench' run (the folder holding bench.json)."""
    out: Path | None = None
    """Folder for the report's files. Default: ROOT/report."""
    reference: str | None = None
    """Variant whose probability of improvement over the others (same agent) is reported.
    Default: 'adept' when the bench has it."""
    reps: int = 2000
    """Bootstrap resamples per confidence interval (the report is seeded, so deterministic)."""

    def run(self) -> None:
        result = write_report(self.root, self.out, self.reference, self.reps)
        print(f"report: {result.out}")
        for path in result.files:
            print(f"  {path.name}")
        line = f"cells: {result.cells_done} of {result.cells_total} done"
        if result.unfinished:
            shown = ", ".join(
                f"{result.unfinished[s]} {s}" for s in STATES if s in result.unfinished
            )
            line += f"; {result.cells_total - result.cells_done} not finished ({shown})"
        print(line)
