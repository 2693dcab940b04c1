"""Figures: learning curves of run directories, and a dataset's episode-return histogram."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adept.atomic import atomic_path


def eval_curve(run_dir: Path, key: str = "eval/normalized_score") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric from a run's metrics.csv, rows where it was logged."""
    with (Path(run_dir) / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key) not in (None, "")]
    return np.array([int(r["step"]) for r in rows]), np.array([float(r[key]) for r in rows])


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    _pyplot().close(fig)
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
