"""The report as a list of blocks (headings, text, tables, figures), independent of its format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from adept.report.analysis import Analysis
from adept.report.figures import Figure
from adept.report.load import (
    STATES,
    TRUE_ERROR_1STEP,
    Bench,
    first_logged,
    method_label,
    metric_names,
)
from adept.report.paper import SOURCE as PAPER_SOURCE
from adept.report.paper import paper_score
from adept.report.plots import (
    metric_curves,
)


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
            Items(tuple(f"{c.key}: {one_line(c.error or 'no error recorded')}" for c in failed))
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


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
