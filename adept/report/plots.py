"""Figures: learning curves of run directories, a dataset's episode-return histogram, and the
panels and interval bars of a bench report (:mod:`adept.report.figures` decides what they show)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from adept.base.atomic import atomic_path


def eval_curve(run_dir: Path, key: str = "eval/normalized_score") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric from a run's metrics.csv, rows where it was logged."""
    return metric_curves(run_dir, [key])[key]


def metric_curves(run_dir: Path, keys: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`eval_curve` of each of ``keys``, from one read of the run's metrics.csv."""
    with (Path(run_dir) / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for key in keys:
        logged = [r for r in rows if r.get(key) not in (None, "")]
        out[key] = (
            np.array([int(r["step"]) for r in logged]),
            np.array([float(r[key]) for r in logged]),
        )
    return out


DPI = 110
"""Resolution of the report's multi-panel figures."""


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _render(fig: Any, fmt: str = "png") -> bytes:
    """The figure as file bytes, then closed; rendering in memory lets a caller write a set of
    files only once all of them exist (a report is never half-written)."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt)
    _pyplot().close(fig)
    return buffer.getvalue()


def _save(fig: Any, out: Path) -> Path:
    payload = _render(fig, out.suffix.lstrip(".").lower() or "png")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_bytes(payload)
    return out


def plot_learning_curves(
    runs: Mapping[str, Path | list[Path]],
    out: Path,
    title: str,
    key: str = "eval/normalized_score",
) -> Path:
    """One line per label (mean over its runs, shaded ± std when several); written atomically."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=120)
    for label, dirs in runs.items():
        curves = [eval_curve(d, key) for d in (dirs if isinstance(dirs, list) else [dirs])]
        length = min(len(steps) for steps, _ in curves)
        steps = curves[0][0][:length]
        values = np.stack([v[:length] for _, v in curves])
        mean = values.mean(0)
        ax.plot(steps, mean, marker="o", label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            std = values.std(0)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("gradient steps")
    ax.set_ylabel(key.split("/")[-1].replace("_", " "))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out)


def plot_return_histogram(
    returns: np.ndarray, out: Path, title: str, scores: np.ndarray | None = None
) -> Path:
    """Histogram of episode returns (with the normalized-score axis on top when ``scores``, the
    same episodes' normalized scores, are given); written atomically."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=120)
    ax.hist(returns, bins=min(50, max(10, len(returns) // 20)), color="tab:blue", alpha=0.8)
    ax.axvline(float(np.mean(returns)), color="black", linestyle="--", label="mean")
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    if scores is not None and len(returns) > 1 and np.ptp(returns) > 0:
        # the normalized score is affine in the return: map the axis through two episodes
        i, j = int(np.argmin(returns)), int(np.argmax(returns))
        slope = (scores[j] - scores[i]) / (returns[j] - returns[i])
        offset = scores[i] - slope * returns[i]
        top = ax.secondary_xaxis(
            "top", functions=(lambda r: offset + slope * r, lambda s: (s - offset) / slope)
        )
        top.set_xlabel("normalized score")
    return _save(fig, out)


@dataclass(frozen=True)
class Band:
    """One method's curve in a panel: the mean over seeds, and its 95 % interval when there are
    several seeds (``low``/``high`` are None for one)."""

    steps: np.ndarray  # [points]
    mean: np.ndarray  # [points]
    low: np.ndarray | None  # [points]
    high: np.ndarray | None  # [points]
    runs: int


@dataclass(frozen=True)
class Panel:
    """One axes of a panel figure: a line (and band) per method label."""

    title: str
    ylabel: str
    lines: Mapping[str, Band]
    log_y: bool = False
    """Log scale when every value is positive (model errors span orders of magnitude)."""


def render_panels(
    panels: Sequence[Panel],
    title: str,
    colors: Mapping[str, Any],
    ncols: int,
    xlabel: str = "gradient steps",
) -> bytes:
    """PNG of a grid of panels with one legend for the figure (a method keeps its colour in
    every panel, so one legend serves all); an empty panel says so instead of staying blank."""
    plt = _pyplot()
    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(4.6 * ncols, 3.4 * nrows + 0.9),
        dpi=DPI,
        squeeze=False,
        layout="constrained",
    )
    handles: dict[str, Any] = {}
    for ax, panel in zip(axes.flat, panels, strict=False):
        for label, band in panel.lines.items():
            color = colors.get(label)
            (line,) = ax.plot(band.steps, band.mean, marker="o", markersize=3, color=color)
            handles.setdefault(label, line)
            if band.low is not None and band.high is not None:
                ax.fill_between(band.steps, band.low, band.high, color=color, alpha=0.2, lw=0)
        values = [b.mean for b in panel.lines.values() if len(b.mean)]
        if panel.log_y and values and min(float(v.min()) for v in values) > 0:
            ax.set_yscale("log")
        if not panel.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="outside lower center",
            ncol=min(len(handles), 5),
        )
    return _render(fig)


def render_intervals(
    panels: Sequence[tuple[str, str, Mapping[str, tuple[float, float | None, float | None]]]],
    title: str,
    colors: Mapping[str, Any],
) -> bytes:
    """PNG of horizontal bars side by side, one panel per (title, x label, {label: (value, low,
    high)}): each bar is a point estimate, its whisker the interval (none when low is None)."""
    plt = _pyplot()
    labels = list(dict.fromkeys(label for _, _, values in panels for label in values))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4.4 * len(panels), max(3.0, 0.45 * len(labels) + 1.8)),
        dpi=DPI,
        squeeze=False,
        layout="constrained",
    )
    for ax, (panel_title, xlabel, values) in zip(axes[0], panels, strict=True):
        shown = [label for label in labels if label in values]
        y = np.arange(len(shown))
        points = np.array([values[label][0] for label in shown])
        ax.barh(y, points, height=0.6, color=[colors.get(k) for k in shown])
        for yi, label in zip(y, shown, strict=True):
            point, low, high = values[label]
            # drawn from its own ends, not as ± from the point: a percentile interval of a
            # skewed statistic need not contain the point estimate
            if low is not None and high is not None:
                ax.plot([low, high], [yi, yi], color="black", lw=1.5, marker="|", markersize=12)
            # the value sits just above its bar's end, clear of the whisker
            ax.text(point, yi - 0.32, f"{point:.1f}", ha="right", va="bottom", fontsize=8)
        ax.set_yticks(y, shown)
        ax.set_ylim(len(shown) - 0.3, -0.7)  # first label on top; one bar stays a bar
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    return _render(fig)
