"""The report's figures: learning curves with seed bands, aggregate intervals, and the world-model
diagnostics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from adept.report.analysis import Analysis
from adept.report.load import (
    TRUE_ERROR_1STEP,
    Bench,
    Method,
    first_logged,
    method_label,
    metric_names,
    model_methods,
)
from adept.report.plots import (
    Band,
    Panel,
    metric_curves,
    render_intervals,
    render_panels,
)
from adept.report.stats import seed_band

DIAGNOSTICS: tuple[tuple[str | tuple[str, ...], str, str, bool], ...] = (
    (TRUE_ERROR_1STEP, "true 1-step error vs MuJoCo", "mean ‖ŝ′ − s′‖₂", True),
    ("world_model/eps_m", "ε_m, π/β-weighted model error", "held-out error", True),
    (
        "world_model/is_ess_fraction",
        "IS effective sample size / rows weighed",
        "ESS / rows",
        True,
    ),
    ("world_model/true_return_gap", "imagined − real return, π's actions", "H-step gap", False),
)
"""(metrics.csv column, or alternative names: the first one a run logged; panel title, y label,
log scale) of the world-model diagnostics. The ESS
is shown as a share of the rows its weights are taken over: a resampling re-fit weighs a pool of
``is_resample_pool`` batches, a weighted or uniform one a single batch, so raw ESS counts of two
rules are not comparable. The shares are close to comparable, not exactly: the truncation cap
(√N times the mean weight by default) is looser on a larger pool."""


def _colors(bench: Bench) -> dict[str, Any]:
    """A method keeps one colour in every figure."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(bench.methods) <= 10 else "tab20"]
    return {method_label(*m): cmap(i % cmap.N) for i, m in enumerate(bench.methods)}


def seed_curves(
    bench: Bench, key: str | tuple[str, ...], methods: Iterable[Method], reps: int, seed: int
) -> dict[str, dict[str, Band]]:
    """{dataset: {label: Band}} of ``key`` over the finished cells' metrics.csv (a running
    cell's partial log would bend the mean's tail towards fewer seeds; tables and curves then
    also count the same seeds). A tuple of names reads, in each run, the first one it logged."""
    out: dict[str, dict[str, Band]] = {}
    for dataset in bench.datasets:
        lines = {}
        for method in methods:
            curves = [
                first_logged(metric_curves(c.path, metric_names(key)), key)
                for c in bench.runs(dataset, method)
                if c.state == "done" and (c.path / "metrics.csv").is_file()
            ]
            band = seed_band([c for c in curves if len(c[0])], reps, seed)
            if band is not None:
                lines[method_label(*method)] = band
        out[dataset] = lines
    return out


@dataclass(frozen=True)
class Figure:
    name: str
    caption: str
    png: bytes


def make_figures(bench: Bench, analysis: Analysis, reps: int, seed: int) -> list[Figure]:
    """Learning curves, aggregate bars and world-model diagnostics; a figure with nothing to
    draw is left out."""
    colors = _colors(bench)
    figures = []
    curves = seed_curves(bench, "eval/normalized_score", bench.methods, reps, seed)
    if any(curves.values()):
        panels = [Panel(d, "normalized score", lines) for d, lines in curves.items()]
        png = render_panels(
            panels,
            f"Normalized score during training ({bench.budget} budget)\n"
            "mean over finished seeds; band: 95 % bootstrap CI",
            colors,
            ncols=3,
        )
        caption = "Learning curves: normalized score vs gradient steps, one panel per dataset."
        figures.append(Figure("learning_curves.png", caption, png))
    if analysis.aggregates:
        iqm = {a.label: a.iqm.triple() for a in analysis.aggregates}
        gap = {a.label: a.gap.triple() for a in analysis.aggregates}
        png = render_intervals(
            [
                ("IQM (higher is better)", "normalized score", iqm),
                ("Optimality gap, γ = 100 (lower is better)", "normalized score", gap),
            ],
            f"Aggregate over {len(bench.datasets)} datasets, last score ({bench.budget} budget)\n"
            "whiskers: 95 % stratified-bootstrap CI",
            colors,
        )
        caption = "IQM and optimality gap of the last normalized score across datasets."
        figures.append(Figure("aggregate_iqm.png", caption, png))
    model_based = [m for m in bench.methods if m in model_methods(bench)]
    by_key = {key: seed_curves(bench, key, model_based, reps, seed) for key, *_ in DIAGNOSTICS}
    # a diagnostic no run logged (a grid from an older adept) gets no column
    shown = [d for d in DIAGNOSTICS if any(by_key[d[0]].values())]
    diagnostics = [
        Panel(f"{dataset}: {title}", ylabel, by_key[key][dataset], log_y)
        for dataset in bench.datasets
        for key, title, ylabel, log_y in shown
    ]  # rows: datasets, columns: the diagnostics shown
    if any(p.lines for p in diagnostics):
        png = render_panels(
            diagnostics,
            f"World-model diagnostics ({bench.budget} budget)\n"
            "mean over finished seeds; band: 95 % bootstrap CI",
            colors,
            ncols=len(shown),
        )
        caption = (
            "World-model diagnostics per dataset: the true 1-step error against MuJoCo of "
            "what the method imagines (a world model's s′ under the current policy, PGD's "
            "generated transitions, DyDiff's kept trajectories at t = 1), the model's "
            "π/β-weighted held-out error ε_m, the "
            "effective sample size of the importance weights (ADEPT only), and how much more "
            "return the model imagines than MuJoCo gives for the same actions over H steps "
            "(above 0: the model flatters the policy)."
        )
        figures.append(Figure("diagnostics.png", caption, png))
    return figures
