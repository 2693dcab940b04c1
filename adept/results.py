"""The report of an ``adept bench`` root: tables with 95 % CIs, rliable aggregates, figures, one
HTML page.

A bench root holds ``bench.json`` (the spec and every cell's state) and one ordinary run directory
per cell, ``ROOT/<dataset>/<variant>/<agent>/seed<k>/``. A cell counts as finished when its
``summary.json`` exists: the run directory, not bench.json's copy, is the source of the scores.

Statistics follow METHOD.md §5 and Agarwal et al. (2021), "Deep RL at the Edge of the Statistical
Precipice": per dataset the mean over seeds with a percentile-bootstrap CI; across datasets the
IQM and optimality gap with stratified-bootstrap CIs, and the probability of improvement. Point
estimates come from ``rliable.metrics``. The intervals come from :func:`stratified_bootstrap`
below rather than ``rliable.library.get_interval_estimates``: that one draws from NumPy's global
RNG (so a seeded report would have to reseed the process), calls the statistic once per
resample in Python (about 4 s per probability-of-improvement comparison at 2000 resamples, for
its Mann-Whitney call), and does not run on current ``arch`` releases (7.x fails to import
under pandas 3; 8.x rejects its ``random_state`` argument). The resampling scheme is rliable's:
every score matrix [runs, tasks] is resampled independently, runs with replacement within each
task.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import html
import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from adept.base.atomic import atomic_files, make_folder
from adept.base.errors import AdeptError
from adept.paper import SOURCE as PAPER_SOURCE
from adept.paper import paper_score
from adept.report import (
    Band,
    Panel,
    eval_curve,
    metric_curves,
    render_intervals,
    render_panels,
)

BENCH_FORMAT = 1
AGENT_NAMES = {"iql": "IQL", "sac": "SAC", "td3bc": "TD3+BC", "bc": "BC"}
VARIANT_PREFIXES = {
    "none": "",
    "diffusion": "Diff+",
    "adept": "ADEPT+",
    "adept-uniform": "ADEPT-uniform+",
    "synther": "SynthER+",
    "pgd": "PGD+",
    "dydiff": "DyDiff+",
    "dydiff-sampled": "DyDiff-sampled+",
}
STATES = ("queued", "running", "failed")
GAMMA = 100.0
"""Optimality-gap threshold on the 0–100 normalized score: 100 is the expert reference."""
TRUE_ERROR_1STEP = ("world_model/true_error_1step", "pgd/true_error", "dydiff/true_error_1")
"""The true one-step error against MuJoCo of what a method imagines, under the name each method
logs it: a world model's s′ under π (Diff+X, ADEPT), PGD's generated transitions, DyDiff's kept
trajectories at t = 1."""
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

Method = tuple[str, str]  # (variant, agent)


def method_label(variant: str, agent: str) -> str:
    """Table 1's column label: IQL, Diff+IQL, ADEPT+IQL, or ``<variant>+IQL`` for other variants."""
    name = AGENT_NAMES.get(agent, agent.upper())
    prefix = VARIANT_PREFIXES.get(variant, f"{variant}+")
    return f"{prefix}{name}"


@dataclass(frozen=True)
class Cell:
    """One run of the grid, with its scores when it has finished."""

    key: str
    dataset: str
    """The dataset's label (its folder under ROOT)."""
    variant: str
    method: str
    agent: str
    seed: int
    path: Path
    state: str
    """done when summary.json exists; else bench.json's queued, running or failed."""
    error: str | None = None
    last: float | None = None
    best: float | None = None
    auc: float | None = None
    """Mean normalized score over the run's evaluations: the area under its learning curve per
    evaluation, which neither a late collapse (last) nor a lucky peak (best) can hide."""
    commit: str | None = None
    """The adept commit the run was started at (its config.json), when known."""
    reused_from: str | None = None
    """The other grid's archive or root the run was taken from (``adept bench --reuse``)."""


@dataclass(frozen=True)
class Bench:
    """A bench root as read from disk: its spec, and its cells in display order."""

    root: Path
    spec: Mapping[str, Any]
    cells: tuple[Cell, ...]
    datasets: tuple[str, ...]
    methods: tuple[Method, ...]
    """Table 1's columns: grouped by agent, in the spec's variant order within an agent."""
    budget: str
    updated: str | None
    adept_version: str | None

    @property
    def done(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.state == "done")

    def unfinished(self) -> Counter[str]:
        return Counter(c.state for c in self.cells if c.state != "done")

    def runs(self, dataset: str, method: Method) -> list[Cell]:
        return [c for c in self.cells if c.dataset == dataset and (c.variant, c.agent) == method]


def _invalid(path: Path, problem: str) -> AdeptError:
    return AdeptError(
        f"{path} is not a valid bench.json ({problem}); re-run the same 'adept bench' command "
        "to rewrite it"
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _read_cell(root: Path, key: str, entry: Any, spec: Mapping[str, Any], where: Path) -> Cell:
    if not isinstance(entry, dict):
        raise _invalid(where, f"cell {key} is not an object")
    missing = [f for f in ("dataset_label", "variant", "agent", "seed", "path") if f not in entry]
    if missing:
        raise _invalid(where, f"cell {key} lacks {', '.join(missing)}")
    variant = str(entry["variant"])
    method = entry.get("method") or spec.get("variants", {}).get(variant, {}).get("method")
    path = root / str(entry["path"])
    state = str(entry.get("state", "queued"))
    error = entry.get("error")
    reused = entry.get("reused_from")
    cell = Cell(
        key=key,
        dataset=str(entry["dataset_label"]),
        variant=variant,
        method=str(method or variant),
        agent=str(entry["agent"]),
        seed=int(entry["seed"]),
        path=path,
        state=state if state in STATES else "queued",
        error=None if error is None else str(error),
        reused_from=str(reused["archive"])
        if isinstance(reused, dict) and "archive" in reused
        else None,
    )
    summary_path = path / "summary.json"
    if not summary_path.exists():
        if state == "done":
            return replace(
                cell, state="failed", error=f"bench.json says done but {summary_path} is missing"
            )
        return cell
    try:
        summary = json.loads(summary_path.read_text())
        last = _number(summary["normalized_score_last"])
        best = _number(summary["normalized_score_best"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return replace(cell, state="failed", error=f"unreadable {summary_path}: {exc}")
    if last is None or best is None:
        return replace(cell, state="failed", error=f"{summary_path} holds no numeric scores")
    commit = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        commit = json.loads((path / "config.json").read_text()).get("git_sha")
    return replace(
        cell,
        state="done",
        error=None,
        last=last,
        best=best,
        auc=_auc(path),
        commit=str(commit)[:7] if commit else None,
    )


def _auc(run_dir: Path) -> float | None:
    """Mean of the run's evaluations (None without a readable metrics.csv)."""
    try:
        _, scores = eval_curve(run_dir)
    except (OSError, ValueError, KeyError):
        return None
    return float(scores.mean()) if len(scores) else None


def load_bench(root: Path) -> Bench:
    """Read ``ROOT/bench.json`` and every cell's summary.json; AdeptError for a bad root."""
    root = Path(root)
    if not root.is_dir():
        raise AdeptError(
            f"bench root {root} does not exist; give the --root of an 'adept bench' run"
        )
    where = root / "bench.json"
    if not where.is_file():
        raise AdeptError(
            f"{root} is not a bench root (no bench.json); give the --root of an 'adept bench' run"
        )
    try:
        raw = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(where, f"unreadable JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise _invalid(where, "not a JSON object")
    if raw.get("format") != BENCH_FORMAT:
        raise AdeptError(
            f"{where} has format {raw.get('format')!r}, this adept reads format {BENCH_FORMAT}; "
            "report it with the adept version that wrote it"
        )
    spec, cells_raw = raw.get("spec"), raw.get("cells")
    if not isinstance(spec, dict) or not isinstance(cells_raw, dict):
        raise _invalid(where, "no 'spec' or 'cells' object")
    if not isinstance(spec.get("variants", {}), dict):
        raise _invalid(where, "spec.variants is not an object")
    try:
        cells = [_read_cell(root, k, v, spec, where) for k, v in cells_raw.items()]
    except (AttributeError, TypeError, ValueError) as exc:
        raise _invalid(where, f"a cell field has the wrong type: {exc}") from exc

    labels = {c.dataset for c in cells}
    # the spec names datasets as given on the command line; the cells map them to labels
    by_spec = {str(e.get("dataset")): str(e.get("dataset_label")) for e in cells_raw.values()}
    ordered = [by_spec[d] for d in map(str, spec.get("datasets", [])) if by_spec.get(d) in labels]
    datasets = tuple(dict.fromkeys([*ordered, *(c.dataset for c in cells)]))
    variants = list(spec.get("variants", {}))
    agents = list(dict.fromkeys([*map(str, spec.get("agents", [])), *AGENT_NAMES]))
    present = {(c.variant, c.agent) for c in cells}
    order = {m: i for i, m in enumerate((v, a) for a in agents for v in variants)}
    methods = tuple(sorted(present, key=lambda m: (order.get(m, len(order)), m)))
    cells.sort(
        key=lambda c: (datasets.index(c.dataset), methods.index((c.variant, c.agent)), c.seed)
    )
    budget = spec.get("budget") or f"unnamed budget, {spec.get('num_steps', '?')} steps"
    return Bench(
        root=root,
        spec=spec,
        cells=tuple(cells),
        datasets=datasets,
        methods=methods,
        budget=str(budget),
        updated=raw.get("updated"),
        adept_version=raw.get("adept_version"),
    )


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95 % interval; no interval from a single run."""

    value: float
    low: float | None
    high: float | None

    def text(self, digits: int = 1) -> str:
        if self.low is None or self.high is None:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def triple(self) -> tuple[float, float | None, float | None]:
        return self.value, self.low, self.high


Statistic = Callable[..., np.ndarray]


def stratified_bootstrap(
    statistic: Statistic, scores: Sequence[np.ndarray], reps: int, seed: int, size: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` by the stratified bootstrap (rliable's
    StratifiedBootstrap, or StratifiedIndependentBootstrap for several matrices): each
    [runs, tasks] matrix is resampled on its own, runs with replacement within each task.
    ``statistic`` takes the batched resamples, each [reps, runs, tasks], and returns [reps]."""
    rng = np.random.default_rng(seed)
    resampled = []
    for matrix in scores:
        runs, tasks = matrix.shape
        idx = rng.integers(0, runs, size=(reps, runs, tasks))  # [reps, runs, tasks]
        resampled.append(matrix[idx, np.arange(tasks)])  # [reps, runs, tasks]
    samples = statistic(*resampled)  # [reps]
    tail = 100 * (1 - size) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def batched_mean(x: np.ndarray) -> np.ndarray:
    """Mean over runs and tasks of each resample: [reps, runs, tasks] -> [reps]."""
    return x.mean(axis=(1, 2))


def batched_iqm(x: np.ndarray) -> np.ndarray:
    """rliable's aggregate_iqm, per resample: the mean of all runs × tasks once the lowest and
    the highest int(n / 4) scores are cut (scipy's trim_mean at 0.25)."""
    flat = np.sort(x.reshape(len(x), -1), axis=1)  # [reps, runs * tasks]
    cut = flat.shape[1] // 4
    return flat[:, cut : flat.shape[1] - cut].mean(axis=1)


def batched_optimality_gap(x: np.ndarray) -> np.ndarray:
    """rliable's aggregate_optimality_gap at γ = 100: γ − E[min(score, γ)], per resample."""
    return GAMMA - np.minimum(x, GAMMA).mean(axis=(1, 2))


def batched_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's probability_of_improvement, per resample: for each task the Mann-Whitney
    U / (n_x n_y) = P(X > Y) + ½ P(X = Y) over all pairs of runs, averaged over tasks."""
    wins = x[:, :, None, :] > y[:, None, :, :]  # [reps, runs_x, runs_y, tasks]
    ties = x[:, :, None, :] == y[:, None, :, :]
    return (wins + 0.5 * ties).mean(axis=(1, 2)).mean(axis=1)


def estimate(
    point: float, statistic: Statistic, scores: Sequence[np.ndarray], reps: int, seed: int
) -> Estimate:
    """``point`` with its bootstrap interval; none when a matrix has a single run, since
    resampling one run only ever returns it (rliable needs ≥ 2 runs)."""
    if min(m.shape[0] for m in scores) < 2:
        return Estimate(point, None, None)
    low, high = stratified_bootstrap(statistic, scores, reps, seed)
    return Estimate(point, low, high)


@dataclass(frozen=True)
class Row:
    """One dataset × variant × agent: the finished seeds' last and best scores."""

    dataset: str
    variant: str
    method: str
    agent: str
    label: str
    planned: int
    seeds: tuple[int, ...]
    last: Estimate | None
    best: Estimate | None
    auc: Estimate | None = None


@dataclass(frozen=True)
class Aggregate:
    """A method's IQM and optimality gap across datasets, on the last score."""

    label: str
    runs: int
    tasks: int
    iqm: Estimate
    gap: Estimate


@dataclass(frozen=True)
class Improvement:
    """P(reference > other) over the datasets both cover, on the last score."""

    reference: str
    other: str
    probability: Estimate
    tasks: int


@dataclass(frozen=True)
class Verdict:
    """Whether the reference method beats another on one dataset, by 95 % CIs that do not
    overlap, per score (last, auc)."""

    dataset: str
    reference: str
    other: str
    outcomes: Mapping[str, str]
    """score → 'beats', 'loses', 'CIs overlap' or 'no CI' (a side has < 2 seeds)."""


def verdict(x: Estimate | None, y: Estimate | None) -> str:
    """'beats' when x's CI lies wholly above y's, 'loses' when wholly below."""
    if x is None or y is None or x.low is None or x.high is None or y.low is None or y.high is None:
        return "no CI"
    if x.low > y.high:
        return "beats"
    if x.high < y.low:
        return "loses"
    return "CIs overlap"


VERDICT_SCORES = ("last", "auc")


@dataclass(frozen=True)
class Analysis:
    """Every number of a report, before any rendering."""

    rows: tuple[Row, ...]
    aggregates: tuple[Aggregate, ...]
    left_out: Mapping[str, str]
    """label -> why the method has no aggregate."""
    reference: str | None
    improvements: tuple[Improvement, ...]
    improvement_notes: tuple[str, ...]
    verdicts: tuple[Verdict, ...] = ()


def _rliable_metrics() -> Any:
    try:
        from rliable import metrics
    except ImportError as exc:
        raise AdeptError("adept report needs rliable; pip install 'rliable>=1.2'") from exc
    return metrics


def _task_matrix(bench: Bench, method: Method) -> tuple[np.ndarray | None, str]:
    """[seeds, datasets] last scores, or None and why: rliable's matrices need the same runs on
    every task, so a method enters only with the same finished seeds on every dataset."""
    seeds = {}
    for dataset in bench.datasets:
        done = [c for c in bench.runs(dataset, method) if c.state == "done"]
        if not done:
            return None, f"no finished seed on {dataset}"
        seeds[dataset] = tuple(c.seed for c in done)
    if len(set(seeds.values())) > 1:
        shown = "; ".join(f"{d}: {', '.join(map(str, s))}" for d, s in seeds.items())
        return None, f"finished seeds differ across datasets ({shown})"
    columns = [[c.last for c in bench.runs(d, method) if c.state == "done"] for d in bench.datasets]
    return np.array(columns, dtype=float).T, ""


def analyze(bench: Bench, reference: str | None, reps: int, seed: int) -> Analysis:
    """Every number of the report: per-row CIs, aggregates, probabilities of improvement."""
    metrics = _rliable_metrics()

    def over_seeds(values: list[float | None]) -> Estimate | None:
        """Mean over the finished seeds with its CI; None if none, or a seed lacks the score."""
        if not values or any(v is None for v in values):
            return None
        scores = np.array([[v] for v in values], dtype=float)  # [seeds, 1]
        return estimate(float(scores.mean()), batched_mean, [scores], reps, seed)

    rows = []
    for dataset in bench.datasets:
        for variant, agent in bench.methods:
            cells = bench.runs(dataset, (variant, agent))
            if not cells:
                continue
            done = [c for c in cells if c.state == "done"]
            last = over_seeds([c.last for c in done])
            best = over_seeds([c.best for c in done])
            auc = over_seeds([c.auc for c in done])
            rows.append(
                Row(
                    dataset=dataset,
                    variant=variant,
                    method=cells[0].method,
                    agent=agent,
                    label=method_label(variant, agent),
                    planned=len(cells),
                    seeds=tuple(c.seed for c in done),
                    last=last,
                    best=best,
                    auc=auc,
                )
            )

    matrices: dict[Method, np.ndarray] = {}
    left_out = {}
    for method in bench.methods:
        matrix, why = _task_matrix(bench, method)
        if matrix is None:
            left_out[method_label(*method)] = why
        else:
            matrices[method] = matrix
    aggregates = tuple(
        Aggregate(
            label=method_label(*method),
            runs=matrix.shape[0],
            tasks=matrix.shape[1],
            iqm=estimate(float(metrics.aggregate_iqm(matrix)), batched_iqm, [matrix], reps, seed),
            gap=estimate(
                float(metrics.aggregate_optimality_gap(matrix, GAMMA)),
                batched_optimality_gap,
                [matrix],
                reps,
                seed,
            ),
        )
        for method, matrix in matrices.items()
    )

    improvements = []
    notes = []
    if reference is not None:
        for agent in dict.fromkeys(a for _, a in bench.methods):
            ours = (reference, agent)
            others = [m for m in bench.methods if m[1] == agent and m != ours]
            if ours not in bench.methods or not others:
                continue
            if ours not in matrices:
                why = left_out[method_label(*ours)]
                notes.append(f"{method_label(*ours)} is compared with nothing: {why}")
                continue
            for other in others:
                if other not in matrices:
                    why = left_out[method_label(*other)]
                    notes.append(f"{method_label(*ours)} vs {method_label(*other)}: {why}")
                    continue
                x, y = matrices[ours], matrices[other]
                point = float(metrics.probability_of_improvement(x, y))
                improvements.append(
                    Improvement(
                        reference=method_label(*ours),
                        other=method_label(*other),
                        probability=estimate(point, batched_improvement, [x, y], reps, seed),
                        tasks=x.shape[1],
                    )
                )
    return Analysis(
        rows=tuple(rows),
        aggregates=aggregates,
        left_out=left_out,
        reference=reference,
        improvements=tuple(improvements),
        improvement_notes=tuple(notes),
        verdicts=_verdicts(rows, reference),
    )


def _verdicts(rows: Sequence[Row], reference: str | None) -> tuple[Verdict, ...]:
    """Per dataset, the reference variant against every other method of its agent."""
    if reference is None:
        return ()
    out = []
    for ours in (r for r in rows if r.variant == reference and r.last is not None):
        for other in rows:
            if other.dataset != ours.dataset or other.agent != ours.agent or other is ours:
                continue
            if other.last is None:
                continue
            outcomes = {s: verdict(getattr(ours, s), getattr(other, s)) for s in VERDICT_SCORES}
            out.append(Verdict(ours.dataset, ours.label, other.label, outcomes))
    return tuple(out)


def seed_band(curves: Sequence[tuple[np.ndarray, np.ndarray]], reps: int, seed: int) -> Band | None:
    """Mean over seeds at the steps every seed logged, and its 95 % band: a percentile bootstrap
    of the mean, seeds resampled with replacement, read pointwise at each step (none for a
    single seed). None when the seeds share no step."""
    tables = [dict(zip(steps.tolist(), values.tolist(), strict=True)) for steps, values in curves]
    if not tables:
        return None
    common = sorted(set.intersection(*(set(t) for t in tables)))
    if not common:
        return None
    values = np.array([[t[s] for s in common] for t in tables], dtype=float)  # [seeds, points]
    mean = values.mean(axis=0)
    low = high = None
    if len(values) > 1:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(values), size=(reps, len(values)))  # [reps, seeds]
        means = values[idx].mean(axis=1)  # [reps, points]
        low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return Band(np.array(common), mean, low, high, len(values))


def _colors(bench: Bench) -> dict[str, Any]:
    """A method keeps one colour in every figure."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(bench.methods) <= 10 else "tab20"]
    return {method_label(*m): cmap(i % cmap.N) for i, m in enumerate(bench.methods)}


def metric_names(key: str | tuple[str, ...]) -> tuple[str, ...]:
    """The metrics.csv columns a diagnostic's key names: one, or its alternatives."""
    return key if isinstance(key, tuple) else (key,)


def first_logged(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], key: str | tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the first of ``key``'s names logged in ``curves`` (empty if none
    was): one quantity under the name each method gives it."""
    names = metric_names(key)
    return next((curves[n] for n in names if len(curves[n][0])), curves[names[0]])


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
    model_based = [m for m in bench.methods if m in _model_methods(bench)]
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


def _model_methods(bench: Bench) -> set[Method]:
    return {(c.variant, c.agent) for c in bench.cells if c.method != "none"}


@dataclass(frozen=True)
class Heading:
    text: str
    level: int


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Items:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    bold: frozenset[tuple[int, int]] = frozenset()
    """(row, column) of the cells set in bold."""


Block = Heading | Text | Items | Table | Figure


def _score_table(bench: Bench, analysis: Analysis, which: str) -> tuple[Table, bool]:
    """Table 1's layout: datasets as rows, methods as columns; the best mean of a row in bold.
    Also says whether a cell rests on a single seed (so the caller can say it has no CI)."""
    rows = {(r.dataset, r.variant, r.agent): r for r in analysis.rows}
    body, bold = [], set()
    single = False
    for i, dataset in enumerate(bench.datasets):
        texts, means = [dataset], {}
        for j, method in enumerate(bench.methods, start=1):
            row = rows.get((dataset, *method))
            value = getattr(row, which) if row is not None else None
            if row is None or value is None:
                texts.append("–")
                continue
            text = value.text()
            if len(row.seeds) < row.planned:
                text += f" (n={len(row.seeds)})"
            single |= len(row.seeds) == 1
            texts.append(text)
            means[j] = round(value.value, 1)
        if means:
            top = max(means.values())
            bold |= {(i, j) for j, m in means.items() if m == top}
        body.append(tuple(texts))
    header = ("dataset", *(method_label(*m) for m in bench.methods))
    return Table(header, tuple(body), frozenset(bold)), single


def _verdict_blocks(bench: Bench, analysis: Analysis) -> list[Block]:
    """Dataset by dataset: does the reference beat each other method, by non-overlapping CIs?"""
    if not analysis.verdicts:
        return []
    reference = analysis.verdicts[0].reference.split("+")[0]
    blocks: list[Block] = [
        Heading(f"Does {reference} beat the others? Dataset by dataset ({bench.budget} budget)", 2),
        Text(
            "'beats' / 'loses': the two 95 % CIs over seeds do not overlap; 'CIs overlap': no "
            "claim either way at this number of seeds; 'no CI': a side has fewer than 2 "
            "finished seeds. Last: the last evaluation; AUC: the mean over all evaluations."
        ),
        Table(
            ("dataset", "method", "vs", "last", "AUC"),
            tuple(
                (v.dataset, v.reference, v.other, v.outcomes["last"], v.outcomes["auc"])
                for v in analysis.verdicts
            ),
        ),
    ]
    return blocks


COLLAPSE_COLUMNS: tuple[tuple[str, tuple[str | tuple[str, ...], ...]], ...] = (
    ("episode length", ("eval/length",)),
    ("Q model − Q real", ("q/model", "q/real")),
    ("imagined − real return", ("world_model/true_return_gap",)),
    ("true 1-step error", (TRUE_ERROR_1STEP,)),
)
"""(column, metrics) of the rise-and-collapse table; two metrics: their difference; a tuple in
place of a metric: alternative names, the first one the run logged."""
COLLAPSE_METRICS = tuple(
    name for _, keys in COLLAPSE_COLUMNS for key in keys for name in metric_names(key)
)


def _value_at(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    keys: tuple[str | tuple[str, ...], ...],
    step: int,
) -> float:
    """The last value (or difference of two) logged at or before ``step``, or the first after
    it where none was logged before (a peak at an evaluation before the first diagnostics); NaN
    if none was logged at all. A tuple of names reads the first of them the run logged."""
    values = []
    for key in keys:
        steps, logged = first_logged(curves, key)
        before = np.flatnonzero(steps <= step)
        at = before[-1] if len(before) else (0 if len(steps) else None)
        values.append(float("nan") if at is None else float(logged[at]))
    return values[0] - values[1] if len(values) == 2 else values[0]


def _short(value: float) -> str:
    """Three significant digits, without an exponent for values of 100 and more."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def collapse_table(bench: Bench) -> Table | None:
    """Per dataset and method, over finished seeds: the evaluation step of the best score, the
    best and last scores, and each diagnostic at that peak and at the end ("peak → end") —
    what changed while the score fell."""
    rows = []
    for dataset in bench.datasets:
        for method in bench.methods:
            runs = [c for c in bench.runs(dataset, method) if c.state == "done"]
            per_seed = []
            for cell in runs:
                curves = metric_curves(cell.path, ["eval/normalized_score", *COLLAPSE_METRICS])
                steps, scores = curves["eval/normalized_score"]
                if not len(steps):
                    continue
                peak = int(np.argmax(scores))
                diagnostics = [
                    (_value_at(curves, keys, steps[peak]), _value_at(curves, keys, steps[-1]))
                    for _, keys in COLLAPSE_COLUMNS
                ]
                per_seed.append((steps[peak], scores[peak], scores[-1], diagnostics))
            if not per_seed:
                continue
            shown = []
            for i in range(len(COLLAPSE_COLUMNS)):
                at_peak = np.array([d[i][0] for *_, d in per_seed])
                at_end = np.array([d[i][1] for *_, d in per_seed])
                finite = np.isfinite(at_peak) & np.isfinite(at_end)
                shown.append(
                    f"{_short(at_peak[finite].mean())} → {_short(at_end[finite].mean())}"
                    if finite.any()
                    else "–"
                )
            rows.append(
                (
                    dataset,
                    method_label(*method),
                    f"{np.mean([p[0] for p in per_seed]):.0f}",
                    f"{np.mean([p[1] for p in per_seed]):.1f}",
                    f"{np.mean([p[2] for p in per_seed]):.1f}",
                    *shown,
                )
            )
    if not rows:
        return None
    leading = ("dataset", "method", "peak step", "best", "last")
    header = (*leading, *(c for c, _ in COLLAPSE_COLUMNS))
    # a diagnostic no run logged (a model-free grid's, or a metric newer than the runs) goes
    kept = [i for i in range(len(header)) if i < len(leading) or any(row[i] != "–" for row in rows)]
    return Table(tuple(header[i] for i in kept), tuple(tuple(row[i] for i in kept) for row in rows))


def _collapse_blocks(bench: Bench) -> list[Block]:
    table = collapse_table(bench)
    if table is None:
        return []
    return [
        Heading(f"Rise and collapse ({bench.budget} budget)", 2),
        Text(
            "Means over finished seeds: the step of each run's best evaluation, its best and "
            "last normalized scores, and at that peak → at the end (the last value logged at or "
            "before each; for a peak before the first diagnostics, the first one after it): "
            "the evaluation episodes' mean length (1000: π stays up the whole episode, which on "
            "hopper and walker2d can be standing still), then the world-model diagnostics — "
            "critics' mean Q on imagined minus real rows (above 0 and growing: the agent "
            "exploits the model), how much more return the model promises than MuJoCo pays for "
            "π's actions over H steps, and the true one-step error against MuJoCo of what the "
            "method imagines (a world model's s′ under π; PGD's generated transitions; DyDiff's "
            "kept trajectories at t = 1). –: not logged (model-free runs; episode length: runs "
            "from before adept logged it)."
        ),
        table,
    ]


def _paper_blocks(bench: Bench, analysis: Analysis) -> list[Block]:
    """Ours beside the paper's figures, for the datasets and methods the paper reports."""
    body = []
    for r in analysis.rows:
        published = paper_score(r.dataset, r.label)
        if published is None or r.last is None:
            continue
        body.append((r.dataset, r.label, r.last.text(), f"{published:.1f}"))
    if not body:
        return []
    return [
        Heading(f"Beside the paper's figures ({bench.budget} budget)", 2),
        Text(
            f"Ours: last evaluation, {bench.budget} budget, project datasets on Gymnasium v5 "
            f"envs. Paper: {PAPER_SOURCE}. Different env versions and budgets: context, not a "
            "like-for-like comparison."
        ),
        Table(("dataset", "method", "ours (last) [95 % CI]", "paper"), tuple(body)),
    ]


def _commits_line(bench: Bench) -> str | None:
    """Which adept commits the finished cells ran at (a grid continued over sessions from an
    archive may mix them; the report says so)."""
    commits = Counter(c.commit or "unknown" for c in bench.done)
    if not commits:
        return None
    if len(commits) == 1:
        return f"every finished cell ran at adept commit {next(iter(commits))}"
    shown = ", ".join(f"{sha} ({n} cell{'s' if n > 1 else ''})" for sha, n in commits.most_common())
    return f"finished cells ran at adept commits {shown}"


def _reused_line(bench: Bench) -> str | None:
    """Which finished cells were taken from other grids (``adept bench --reuse``): the same
    runs, so their numbers are those grids' too."""
    sources = Counter(c.reused_from for c in bench.done if c.reused_from)
    if not sources:
        return None
    shown = ", ".join(f"{n} from {src}" for src, n in sources.most_common())
    return f"{sum(sources.values())} finished cells are other grids' runs ({shown})"


def _counts_line(bench: Bench) -> str:
    total, done = len(bench.cells), len(bench.done)
    line = f"{done} of {total} cells done."
    unfinished = bench.unfinished()
    if unfinished:
        shown = ", ".join(f"{unfinished[s]} {s}" for s in STATES if unfinished[s])
        line += f" {total - done} of {total} cells not finished: {shown}."
    return line


def document(bench: Bench, analysis: Analysis, figures: Sequence[Figure], reps: int) -> list[Block]:
    """The report's content once, for both the markdown and the HTML renderer."""
    spec = bench.spec
    budget = bench.budget
    seeds = ", ".join(map(str, spec.get("seeds", [])))
    facts = [
        f"root {bench.root}",
        f"adept {bench.adept_version}" if bench.adept_version else None,
        f"bench updated {bench.updated}" if bench.updated else None,
        f"{spec['num_steps']} gradient steps per run" if "num_steps" in spec else None,
        f"evaluated every {spec['eval_every']} steps on {spec.get('eval_episodes', '?')} episodes"
        if "eval_every" in spec
        else None,
        f"seeds {seeds}" if seeds else None,
        _commits_line(bench),
        _reused_line(bench),
    ]
    blocks: list[Block] = [
        Heading(f"Bench report: {budget} budget", 1),
        Text(" · ".join(f for f in facts if f)),
        Text(_counts_line(bench)),
    ]
    if bench.unfinished():
        blocks.append(
            Text(
                "Tables, aggregates and curves use finished cells only (those with a "
                "summary.json); they will change as the other cells finish."
            )
        )
    failed = [c for c in bench.cells if c.state == "failed"]
    if failed:
        blocks.append(Heading("Failed cells", 3))
        blocks.append(
            Items(tuple(f"{c.key}: {_one_line(c.error or 'no error recorded')}" for c in failed))
        )

    ci = f"95 % CI: percentile bootstrap over seeds, {reps} resamples"
    titles = (
        ("last", "normalized score at the last evaluation"),
        ("best", "normalized score at the best evaluation"),
        ("auc", "normalized score averaged over all evaluations (area under the learning curve)"),
    )
    for number, (which, title) in enumerate(titles, start=1):
        table, single = _score_table(bench, analysis, which)
        blocks.append(Heading(f"Table {number}: {title} ({budget} budget)", 2))
        blocks.append(
            Text(
                f"Mean over finished seeds [{ci}]; bold: the best mean of the row; "
                "(n=…): fewer finished seeds than planned; –: no finished seed."
            )
        )
        blocks.append(table)
        if single:
            blocks.append(
                Text(
                    "A single-seed cell shows its score with no CI (a bootstrap "
                    "needs at least 2 seeds)."
                )
            )

    blocks.append(
        Heading(f"Aggregate across {len(bench.datasets)} datasets: last score ({budget} budget)", 2)
    )
    blocks.append(
        Text(
            "Interquartile mean (IQM) and optimality gap of the last normalized score over all "
            "runs × datasets (rliable; the gap is taken at γ = 100, the expert score on the "
            "0–100 scale, so lower is better); 95 % stratified-bootstrap CIs over seeds, "
            f"{reps} resamples. A method enters only with the same finished seeds on every "
            "dataset."
        )
    )
    if analysis.aggregates:
        blocks.append(
            Table(
                ("method", "seeds × datasets", "IQM", "optimality gap"),
                tuple(
                    (a.label, f"{a.runs} × {a.tasks}", a.iqm.text(), a.gap.text())
                    for a in analysis.aggregates
                ),
            )
        )
    else:
        blocks.append(Text("No method has finished seeds on every dataset yet."))
    if analysis.left_out:
        blocks.append(Text("Left out of the aggregates:"))
        blocks.append(Items(tuple(f"{k}: {v}" for k, v in analysis.left_out.items())))

    blocks.append(Heading(f"Probability of improvement: last score ({budget} budget)", 2))
    if analysis.reference is None:
        blocks.append(
            Text("No reference variant: the bench has no 'adept' variant; pass --reference.")
        )
    else:
        blocks.append(
            Text(
                f"P(X > Y): the probability that a run of X (the '{analysis.reference}' variant) "
                "beats a run of Y on a dataset (Mann-Whitney U, ties count ½), averaged over "
                "datasets; above 0.5 favours X; 95 % stratified-bootstrap CIs, "
                f"{reps} resamples."
            )
        )
        if analysis.improvements:
            blocks.append(
                Table(
                    ("X", "Y", "P(X > Y)", "datasets"),
                    tuple(
                        (i.reference, i.other, i.probability.text(2), str(i.tasks))
                        for i in analysis.improvements
                    ),
                )
            )
        else:
            blocks.append(Text("Nothing to compare yet."))
        if analysis.improvement_notes:
            blocks.append(Text("Not compared:"))
            blocks.append(Items(analysis.improvement_notes))

    blocks.extend(_verdict_blocks(bench, analysis))
    blocks.extend(_collapse_blocks(bench))
    blocks.extend(_paper_blocks(bench, analysis))
    blocks.append(Heading("Figures", 2))
    if figures:
        blocks.extend(figures)
    else:
        blocks.append(Text("No figure: no finished cell logged an evaluation."))
    return blocks


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [block.text, ""]
        elif isinstance(block, Items):
            lines += [*(f"- {item}" for item in block.items), ""]
        elif isinstance(block, Table):
            cells = [[_md_cell(c) for c in row] for row in block.rows]
            for i, j in block.bold:
                cells[i][j] = f"**{cells[i][j]}**"
            lines.append("| " + " | ".join(map(_md_cell, block.header)) + " |")
            lines.append("|" + "---|" * len(block.header))
            lines += ["| " + " | ".join(row) + " |" for row in cells]
            lines.append("")
        else:
            lines += [f"![{block.caption}]({block.name})", ""]
    return "\n".join(lines)


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1400px; margin: 2em auto; padding: 0 1em;
       color: #1d1d1f; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d0d5; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
.wide { overflow-x: auto; }
th { background: #f2f2f5; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #e0e0e5; }
figcaption { color: #555; font-size: 0.92em; }
#render-check { font-size: 0.9em; padding: 0.3em 0.6em; display: inline-block; }
#render-check.ok { background: #e6f4ea; color: #1e6b34; }
#render-check.bad { background: #fde8e8; color: #9b1c1c; font-weight: bold; }
"""

RENDER_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); });
  var out = document.getElementById("render-check");
  if (broken.length) {
    out.textContent = broken.length + " of " + images.length + " figures failed to render: " +
      broken.map(function (img) { return img.alt; }).join(", ");
    out.className = "bad";
  } else {
    out.textContent = "all " + images.length + " figures rendered";
    out.className = "ok";
  }
});
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One self-contained page: figures as data URIs, inline style, and a script that checks on
    load that every figure decoded (a broken figure is then visible, and testable)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
    ]
    for n, block in enumerate(blocks):
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
            if n == 0:
                parts.append('<p id="render-check">figures not checked (script did not run)</p>')
        elif isinstance(block, Text):
            parts.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Items):
            parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in block.header)
            body = []
            for i, row in enumerate(block.rows):
                cells = []
                for j, text in enumerate(row):
                    content = f"<strong>{e(text)}</strong>" if (i, j) in block.bold else e(text)
                    cells.append(f"<td>{content}</td>")
                body.append("<tr>" + "".join(cells) + "</tr>")
            parts.append(
                f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table></div>"
            )
        else:
            data = base64.b64encode(block.png).decode()
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{e(block.name)}">'
                f"<figcaption>{e(block.caption)}</figcaption></figure>"
            )
    parts.append(f"<script>{RENDER_CHECK}</script></body></html>")
    return "\n".join(parts) + "\n"


CSV_COLUMNS = (
    "dataset",
    "variant",
    "method",
    "agent",
    "label",
    "seeds",
    "seeds_planned",
    "last_mean",
    "last_ci_low",
    "last_ci_high",
    "best_mean",
    "best_ci_low",
    "best_ci_high",
    "auc_mean",
    "auc_ci_low",
    "auc_ci_high",
    "budget",
)


def to_csv(analysis: Analysis, budget: str) -> str:
    """One row per dataset × variant × agent; empty fields where nothing finished or where a
    single seed leaves no CI."""

    def number(x: float | None) -> str:
        return "" if x is None else f"{x:.4f}"

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in analysis.rows:
        scores = []
        for e in (r.last, r.best, r.auc):
            scores += (
                [number(None), number(None), number(None)]
                if e is None
                else [number(e.value), number(e.low), number(e.high)]
            )
        writer.writerow(
            [
                r.dataset,
                r.variant,
                r.method,
                r.agent,
                r.label,
                len(r.seeds),
                r.planned,
                *scores,
                budget,
            ]
        )
    return text.getvalue()


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
