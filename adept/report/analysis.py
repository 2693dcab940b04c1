"""What a report concludes: per-dataset scores with CIs, aggregates across datasets, and the
verdicts of each method against its agent alone."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adept.base.errors import AdeptError
from adept.report.load import Bench, Method, method_label
from adept.report.stats import (
    GAMMA,
    Estimate,
    batched_improvement,
    batched_iqm,
    batched_mean,
    batched_optimality_gap,
    estimate,
)


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
