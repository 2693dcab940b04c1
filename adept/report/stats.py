"""Bootstrap confidence intervals over seeds and tasks, as rliable computes them.

Per dataset the mean over seeds with a percentile-bootstrap CI; across datasets the IQM and
optimality gap with stratified-bootstrap CIs, and the probability of improvement (Agarwal et al.
2021, "Deep RL at the Edge of the Statistical Precipice"). Point estimates come from
``rliable.metrics``. The intervals come from :func:`stratified_bootstrap` below rather than
``rliable.library.get_interval_estimates``: that one draws from NumPy's global RNG (so a seeded
report would have to reseed the process), calls the statistic once per resample in Python (about
4 s per probability-of-improvement comparison at 2000 resamples, for its Mann-Whitney call), and
does not run on current ``arch`` releases (7.x fails to import under pandas 3; 8.x rejects its
``random_state`` argument). The resampling scheme is rliable's: every score matrix [runs, tasks]
is resampled independently, runs with replacement within each task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from adept.report.plots import (
    Band,
)

GAMMA = 100.0
"""Optimality-gap threshold on the 0–100 normalized score: 100 is the expert reference."""


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
