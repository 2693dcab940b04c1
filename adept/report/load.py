"""Reading a bench root: its spec, its cells and their runs' metrics, checked as they are read."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from adept.agents import AGENTS
from adept.base.errors import AdeptError
from adept.methods import METHODS
from adept.report.plots import (
    eval_curve,
)

BENCH_FORMAT = 1
VARIANT_PREFIXES = {"adept-uniform": "ADEPT-uniform+", "dydiff-sampled": "DyDiff-sampled+"}
"""Labels of the committed reports' named variants; a variant named after a method takes the
method's label (:attr:`adept.methods.Method.label`)."""
STATES = ("queued", "running", "failed")

TRUE_ERROR_1STEP = ("world_model/true_error_1step", "pgd/true_error", "dydiff/true_error_1")
"""The true one-step error against MuJoCo of what a method imagines, under the name each method
logs it: a world model's s′ under π (Diff+X, ADEPT), PGD's generated transitions, DyDiff's kept
trajectories at t = 1."""

Method = tuple[str, str]  # (variant, agent)


def method_label(variant: str, agent: str) -> str:
    """Table 1's column label: IQL, Diff+IQL, ADEPT+IQL (the agent's and the method's labels,
    registered ones' too), or ``<variant>+IQL`` for other variants."""
    known = AGENTS.get(agent)
    name = known.label if known is not None and known.label else agent.upper()
    if variant in VARIANT_PREFIXES:
        return f"{VARIANT_PREFIXES[variant]}{name}"
    method = METHODS.get(variant)
    if method is not None:
        return f"{method.label}+{name}" if method.label else name
    return f"{variant}+{name}"


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
    agents = list(dict.fromkeys([*map(str, spec.get("agents", [])), *AGENTS]))
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


def model_methods(bench: Bench) -> set[Method]:
    return {(c.variant, c.agent) for c in bench.cells if c.method != "none"}
