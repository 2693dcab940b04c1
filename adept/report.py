"""Reading run directories back: learning curves as numbers and as a PNG."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from adept.atomic import atomic_path


def eval_curve(run_dir: Path, key: str = "eval/normalized_score") -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric from a run's metrics.csv, rows where it was logged."""
    with (Path(run_dir) / "metrics.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get(key) not in (None, "")]
    return np.array([int(r["step"]) for r in rows]), np.array([float(r[key]) for r in rows])


def plot_learning_curves(
    runs: Mapping[str, Path | list[Path]],
    out: Path,
    title: str,
    key: str = "eval/normalized_score",
) -> Path:
    """One line per label (mean over its runs, shaded ± std when several); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
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
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return out
