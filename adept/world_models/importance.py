"""ADEPT's importance-sampled world-model update, and the controls it is measured against.

The world model is re-fitted on real data from D, each sample weighted by how likely the current
target policy π is to take its action, relative to the behaviour policy β that did:

    w_i = π(a_i | s_i) / β(a_i | s_i),   L(θ) = Σ_i w_i ℓ_i / Σ_i w_i   (self-normalized IS),

so the model's error is minimized under the state-action distribution the rollouts of π query
(the ADEPT paper's IS world-model update, Algorithm 1). Weights are formed in log space. Extreme
weights are truncated (after Ionides 2008, "Truncated importance sampling", whose cap is √N times
the mean weight): the largest weights are lowered to a common level t, chosen so that after
renormalization each weight is at most c / N — by default c = √N. Unlike "cap, then renormalize",
the cap then holds for the final weights, which guarantees ESS ≥ N / c. The effective sample size
ESS = (Σ w)² / Σ w² is logged so the variance the reviewers asked about stays visible.

A re-fit step is one of (:class:`RefitRule`):

* ``is`` + ``weighted`` — the paper's update: one batch of N, loss Σ w_i ℓ_i;
* ``is`` + ``resample`` — sampling-importance-resampling (Rubin 1988): draw a pool of P·N
  samples, weight the pool, resample N of them with replacement ∝ w and train on those with
  equal weights. The gradient's expectation is the same; each sample's (k, ε) draw is spent on a
  sample π actually favours, instead of on near-zero-weight rows;
* ``uniform`` — the same step with every weight 1/N: the control that separates "the weights"
  from "more model training" in the ablation (the weights are still computed and logged).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from adept.agents.base import Agent
from adept.data.buffer import Batch, ReplayBuffer
from adept.world_models.model import WorldModel


@dataclass(frozen=True)
class ImportanceWeights:
    """Normalized weights ``[N]`` (sum 1) and their diagnostics (0-d tensors)."""

    weights: torch.Tensor
    ess: torch.Tensor
    """(Σw)² / Σw² of the final weights, between 1 and N."""
    max_weight: torch.Tensor
    """Largest normalized weight times N (1 for uniform weights)."""
    truncated_fraction: torch.Tensor
    """Share of samples whose weight was truncated."""
    log_ratio_mean: torch.Tensor
    log_ratio_std: torch.Tensor


def importance_weights(
    log_target: torch.Tensor,
    log_behavior: torch.Tensor,
    truncate: bool = True,
    truncate_ratio: float | None = None,
) -> ImportanceWeights:
    """Self-normalized, optionally truncated weights from log π(a|s) and log β(a|s), ``[N]`` each.

    ``truncate_ratio`` c caps each weight at c times the mean weight (c/N after normalization);
    None means c = √N. Degenerate log-ratios: NaN and −∞ get weight 0; if every sample has
    −∞, the weights fall back to uniform rather than dividing by zero; +∞ (β(a|s) = 0 where
    π(a|s) > 0) is the limit where those samples take all the mass, shared equally — softmax
    itself would return NaN there.
    """
    n = len(log_target)
    log_ratio = (log_target - log_behavior).detach()
    log_ratio = torch.nan_to_num(log_ratio, nan=-math.inf, posinf=math.inf)
    finite = log_ratio[torch.isfinite(log_ratio)]
    infinite = torch.isposinf(log_ratio)
    if infinite.any():
        weights = infinite.to(log_ratio.dtype) / infinite.sum()
    elif finite.numel() == 0:
        weights = torch.full_like(log_ratio, 1.0 / n)
    else:
        weights = torch.softmax(log_ratio, dim=0)
    truncated = torch.zeros_like(weights, dtype=torch.bool)
    if truncate:
        ratio = math.sqrt(n) if truncate_ratio is None else truncate_ratio
        if ratio < 1:
            raise ValueError(f"truncate_ratio must be at least 1 (the mean weight), got {ratio}")
        level = truncation_level(weights, ratio)
        truncated = weights > level
        weights = weights.clamp(max=level)
        weights = weights / weights.sum()
    return ImportanceWeights(
        weights=weights,
        ess=1.0 / weights.pow(2).sum(),
        max_weight=weights.max() * n,
        truncated_fraction=truncated.float().mean(),
        log_ratio_mean=finite.mean() if finite.numel() else torch.zeros(()),
        log_ratio_std=finite.std() if finite.numel() > 1 else torch.zeros(()),
    )


def truncation_level(weights: torch.Tensor, ratio: float) -> torch.Tensor:
    """Level t with max_i min(w_i, t) / Σ_j min(w_j, t) = ratio / N (or max w if already below;
    or the smallest positive w when fewer than N / ratio samples have any weight).

    With the k largest weights lowered to t and the rest summing to S, t = ratio·S / (N − ratio·k);
    the right k is the first for which w_(k+1) ≤ t ≤ w_(k) (weights sorted descending).
    """
    n = len(weights)
    w = torch.sort(weights.double(), descending=True).values
    if w[0] <= ratio / n * w.sum():
        return w[0].to(weights.dtype)
    k = torch.arange(1, n + 1, device=w.device, dtype=w.dtype)
    below_next = torch.cat([w[1:], w.new_zeros(1)])
    # S_k = Σ_{j>k} w_(j), summed from the small end so tiny weights are not lost to rounding
    rest = torch.flip(torch.cumsum(torch.flip(below_next, [0]), 0), [0])
    level = ratio * rest / (n - ratio * k)
    valid = (n - ratio * k > 0) & (level > 0) & (level >= below_next) & (level <= w)
    if not valid.any():
        # fewer than N / ratio samples carry any mass: the cap cannot hold, and the closest
        # one can get is to give those samples equal weight
        return w[w > 0].min().to(weights.dtype)
    return level[torch.nonzero(valid)[0, 0]].to(weights.dtype)


class BehaviorModel:
    """log β(a|s): a Gaussian BC policy fitted to D, or the dataset's logged exact log-probs."""

    def __init__(self, kind: str, bc: Agent | None = None):
        if kind not in ("bc", "logged"):
            raise ValueError(f"unknown behaviour model {kind!r}")
        if kind == "bc" and bc is None:
            raise ValueError("the 'bc' behaviour model needs a fitted BC agent")
        self.kind = kind
        self.bc = bc

    @torch.no_grad()
    def log_prob(self, batch: Batch) -> torch.Tensor:
        if self.kind == "logged":
            if batch.action_log_probs is None:
                raise ValueError("batch carries no action_log_probs")
            return batch.action_log_probs
        assert self.bc is not None
        return self.bc.log_prob(batch.observations, batch.actions)


@dataclass(frozen=True)
class RefitRule:
    """How one re-fit step weighs the real data (see the module docstring)."""

    weights: Literal["is", "uniform"] = "is"
    loss: Literal["weighted", "resample"] = "weighted"
    truncate: bool = True
    truncate_ratio: float | None = None


def importance_sampled_update(
    world_model: WorldModel,
    batch: Batch,
    policy: Agent,
    behavior: BehaviorModel,
    rule: RefitRule = RefitRule(),
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """One re-fit step on the real rows ``batch``; returns losses and weight statistics.

    ``weighted``: trains on all of ``batch`` with the weights. ``resample``: ``batch`` is the
    pool; ``batch_size`` rows (default: the pool's size) are drawn from it ∝ w with
    ``generator`` and trained on with equal weights. ``uniform`` trains on ``batch`` with equal
    weights; the IS weights are computed and logged all the same.
    """
    rows, weights, stats = refit_rows(batch, policy, behavior, rule, batch_size, generator)
    return {**world_model.train_step(rows, weights), **stats}


def refit_rows(
    batch: Batch,
    policy: Agent,
    behavior: BehaviorModel,
    rule: RefitRule = RefitRule(),
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Batch, torch.Tensor | None, dict[str, torch.Tensor]]:
    """What one step of :func:`importance_sampled_update` trains on: the rows, their weights
    (None: equal) and the weights' statistics."""
    with torch.no_grad():
        log_pi = policy.log_prob(batch.observations, batch.actions)
    iw = importance_weights(log_pi, behavior.log_prob(batch), rule.truncate, rule.truncate_ratio)
    stats: dict[str, torch.Tensor] = {}
    rows, weights = batch, None
    if rule.weights == "is" and rule.loss == "resample":
        n = len(batch) if batch_size is None else batch_size
        index = torch.multinomial(iw.weights, n, replacement=True, generator=generator)
        rows = batch.take(index)
        stats["world_model/is_resampled_unique"] = torch.tensor(float(len(torch.unique(index))) / n)
    elif rule.weights == "is":
        weights = iw.weights
    stats.update(
        {
            "world_model/is_ess": iw.ess,
            "world_model/is_ess_fraction": iw.ess / len(batch),
            "world_model/is_max_weight": iw.max_weight,
            "world_model/is_truncated_fraction": iw.truncated_fraction,
            "world_model/is_log_ratio_mean": iw.log_ratio_mean,
            "world_model/is_log_ratio_std": iw.log_ratio_std,
        }
    )
    return rows, weights, stats


@dataclass(frozen=True)
class RefitConfig:
    """ADEPT's re-fit of the world model toward the current policy, before each round of
    rollouts: which weights, how many steps of which loss, at which learning rate, averaged how.
    Where the paper gives a value the default is the paper's; the others were measured
    (docs/adept-defaults.md)."""

    rule: Literal["is", "uniform", "none"] = "is"
    """The re-fit's weights: π/β importance weights ('is', the paper's ADEPT); 'uniform' — the
    same steps with equal weights, the control that tells the weights from the extra model
    training; 'none' — no re-fit, the world model stays as pre-trained (Diff+X)."""
    steps: int = 20
    """Re-fit steps per round (docs/adept-defaults.md: 100 scored the same at five times the
    cost)."""
    batch_size: int = 1024
    """Real transitions per re-fit step (the paper: 1024; its appendix tries 256 and 4096)."""
    loss: Literal["weighted", "resample"] = "resample"
    """How the weights enter a step: the weighted loss on one batch (the paper's), or
    sampling-importance-resampling — a pool of ``resample_pool`` batches resampled ∝ w to one
    batch, trained unweighted, which reached a lower error under π (docs/adept-defaults.md)."""
    resample_pool: int = 8
    """Pool size, in batches, of ``loss = 'resample'``."""
    truncate: bool = True
    """Truncate extreme importance weights (Ionides 2008; :func:`importance_weights`)."""
    truncate_ratio: float | None = None
    """Largest allowed weight relative to the mean; None means √(batch), so ESS ≥ √N."""
    lr: float | None = None
    """Adam's learning rate in re-fit steps (None: the world model's pre-training ``lr``)."""
    average: float = 0.99
    """If > 0, the steps train a copy of the world model, and the model rolled out is an
    exponential moving average of the copy's weights with this decay per step (pre-training's
    average carried on; not in the paper); 0: the steps train the rolled-out model itself, which
    undoes pre-training's average (docs/adept-defaults.md)."""


class Refitter:
    """ADEPT's re-fit of the rolled-out world model ``model`` toward the current policy, as
    ``config`` sets it: the weights (IS or uniform), the loss (weighted or resampled), the
    learning rate, and the averaging (a rule of 'none' has no re-fitter).

    With ``config.average`` the steps train a copy of ``model`` (starting from its weights) and
    ``model``'s weights are the EMA of the copy's, updated after every step; otherwise the steps
    train ``model`` itself. The Adam state is the one pre-training left.
    """

    def __init__(self, model: WorldModel, config: RefitConfig):
        c = config
        if c.rule == "none":
            raise ValueError("a re-fit rule of 'none' has no Refitter")
        self.model = model
        self.steps = c.steps
        self.rule = RefitRule(c.rule, c.loss, c.truncate, c.truncate_ratio)
        self.batch_size = c.batch_size
        resampled = c.rule == "is" and c.loss == "resample"
        self.pool = c.batch_size * (c.resample_pool if resampled else 1)
        if c.lr is not None:
            for group in model.optimizer.param_groups:
                group["lr"] = c.lr
        self.online: WorldModel | None = None
        if c.average > 0:
            self.online = copy.deepcopy(model)
            # θ_model ← d θ_model + (1 − d) θ_online, torch's EMA update applied in place
            self.average_into = get_ema_multi_avg_fn(c.average)

    def round(
        self,
        sampler: ReplayBuffer,
        policy: Agent,
        behavior: BehaviorModel,
        steps: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """``steps`` (default ``config.steps``) re-fit steps on real rows drawn from
        ``sampler``; returns the steps' mean losses and weight statistics."""
        trained = self.trained()
        steps = self.steps if steps is None else steps
        sums: dict[str, torch.Tensor] = {}
        for _ in range(steps):
            out = importance_sampled_update(
                trained,
                sampler.sample(self.pool),
                policy,
                behavior,
                self.rule,
                batch_size=self.batch_size,
                generator=sampler.generator,
            )
            if self.online is not None:
                self.average_into(list(self.model.parameters()), list(trained.parameters()), None)
            for key, value in out.items():
                sums[key] = sums.get(key, torch.zeros_like(value)) + value
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def trained(self) -> WorldModel:
        """The model the re-fit steps train: the copy under averaging, else ``model``."""
        return self.model if self.online is None else self.online

    def state_dict(self) -> dict[str, Any]:
        """The trained copy's weights and Adam state (the average is ``model``'s weights)."""
        return {} if self.online is None else {"online": self.online.state_dict_all()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.online is not None:
            self.online.load_state_dict_all(state["online"])
