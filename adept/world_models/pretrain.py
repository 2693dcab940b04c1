"""The set-up of the world-model methods: β's BC fit and the world model's pre-training with an
EMA and held-out selection — a pure function of the data, the world-model config, the
pre-training fields and the seed, cached in the artifact store (:mod:`adept.store.artifacts`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np
import torch

from adept.agents import BC, AgentSpec, BCConfig
from adept.base.rng import Stream, cuda_indices
from adept.data.buffer import Batch, ReplayBuffer
from adept.data.transitions import Transitions
from adept.diffusion.ema import load_parameters, parameters_of, weight_average
from adept.world_models.model import GaussianEnsemble, WorldModel, WorldModelConfig

BEHAVIOR_FIT = Stream("β's BC fit", 0)
WORLD_MODEL_FIT = Stream("the world model's pre-training", 1)
SELECTION_ROWS = Stream("the held-out rows of the selection loss", 2)


@dataclass(frozen=True)
class PretrainConfig:
    """The set-up of a world-model method: β's fit and the world model's pre-training on D, with
    an average of its weights and selection on held-out rows. Where the paper gives a value the
    default is the paper's; the others were measured (docs/adept-defaults.md)."""

    steps: int = 40_000
    """World-model pre-training steps on D, once per dataset, seed and config (then cached); a
    cap when ``select_patience`` stops early. Its length and cost: docs/adept-defaults.md."""
    batch_size: int = 256
    """Batch size of pre-training (the paper: 256)."""
    ema_decay: float = 0.999
    """Keep an exponential moving average of the weights with this decay per step (0: none);
    the average is what is selected and rolled out, as in SynthER and PGD (not in the paper;
    docs/adept-defaults.md)."""
    select_every: int = 2000
    """Every N steps (and at the last), score the (averaged) weights on held-out rows and keep
    the best; 0 keeps the last. The score is the conditional denoising + reward + terminal loss
    with fixed noise draws, so candidates are compared on equal terms; the held-out rows
    (``holdout_fraction`` of D) are never trained on."""
    select_rows: int = 8192
    """Held-out rows (a fixed random subset) of the selection score."""
    select_patience: int = 0
    """Stop once this many held-out scores in a row improved on the best by less than 1 %
    (MBPO's early stopping); 0: never stop early. The 'ensemble' dynamics keep each member's
    best weights and pick elites here."""
    behavior: Literal["bc", "logged"] = "bc"
    """β, the behaviour policy of the importance weights and of the π-weighted diagnostics: a
    Gaussian BC fit on D (the paper), or the dataset's exact logged log-probabilities
    ('logged'; needs action_log_probs in the data)."""
    behavior_steps: int = 10_000
    """Gradient steps of β's BC fit."""
    holdout_fraction: float = 0.05
    """Share of D held out from world-model training: the selection score and the
    diagnostics' ε_m and ε_r are measured on it."""


PRETRAIN_REVISION = 2
"""Revision of :func:`pretrain`'s recipe, part of its cache key: bump it whenever the function
computes something else for the same inputs, so that entries made by older code go unused."""

BEHAVIOR_BATCH_SIZE = 256
"""Batch size of the BC fit of β."""


def holdout_mask(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which of ``n`` transitions are held out from world-model training (bool ``[n]``)."""
    return np.random.default_rng(seed).random(n) < fraction


def pretrain_key(
    data: Transitions,
    world_model: WorldModelConfig,
    config: PretrainConfig,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Everything :func:`pretrain`'s result depends on, and nothing else (no agent, no rollout
    or schedule field): runs that differ only elsewhere share one cache entry.

    Both configs enter the key whole, every field by name (:func:`adept.store.artifacts.key_hash`):
    a field added to either changes every key, so a new knob never reuses an entry made without
    it. The device type is in it because
    CPU and CUDA kernels round differently, the torch version because its kernels may change
    between releases. Hashing the data costs one pass over it (:meth:`Transitions.fingerprint`,
    ≈ 0.2 s for 1M hopper rows).
    """
    return {
        "revision": PRETRAIN_REVISION,
        "data": data.fingerprint(),
        "world_model": world_model,
        "pretrain": config,
        "seed": seed,
        "device": device.type,
        "torch": torch.__version__,
    }


def pretrain(
    data: Transitions,
    world_model: WorldModelConfig,
    config: PretrainConfig,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """Fit β (BC, unless β is logged) and pre-train a world model on D's training part.

    The world model (``world_model``) is trained for ``config.steps`` steps; its weights are
    averaged (EMA, ``ema_decay``) and the average is scored on
    the held-out split every ``select_every`` steps; the best-scoring weights are the result.
    A pure function of :func:`pretrain_key`'s inputs, so that a cached result equals a fresh one
    bit for bit: fresh modules, batches from a sampler of its own, and the global torch RNG
    forked and seeded inside, which also leaves the caller's RNG as it was — agents consume it
    differently before their method is built. β and the world model draw from separate streams
    (0 and 1), so the world model does not change with β's settings.
    Returns CPU state dicts (``world_model``: :meth:`WorldModel.state_dict_all`; ``behavior``:
    the BC agent's, when fitted) and ``metrics``, the setup metrics logged at step 0.
    """
    c = config
    holdout = holdout_mask(len(data), c.holdout_fraction, seed)
    train_part = data.subset(~holdout)
    sampler = ReplayBuffer.from_transitions(train_part, device=device)
    metrics: dict[str, float] = {}
    result: dict[str, Any] = {"metrics": metrics}
    with torch.random.fork_rng(devices=cuda_indices(device)):
        # β is fitted for Diff+X too: it only trains ADEPT, but ε_m and ε_r are π-weighted for both
        if c.behavior == "bc":
            _seed_stream(BEHAVIOR_FIT.mixed(seed), sampler)
            bc = BC(AgentSpec.from_data(data, max(c.behavior_steps, 1), device), BCConfig())
            for _ in range(c.behavior_steps):
                out = bc.update(sampler.sample(BEHAVIOR_BATCH_SIZE))
            if c.behavior_steps:
                metrics["behavior/nll"] = float(out["train/actor_loss"])
            result["behavior"] = _to_cpu(bc.state_dict())
        _seed_stream(WORLD_MODEL_FIT.mixed(seed), sampler)
        model = WorldModel(train_part, world_model, device)
        ema = weight_average(model, c.ema_decay) if c.ema_decay > 0 else None
        selector = (
            HeldOutSelector(data.subset(holdout), c.select_rows, seed, device)
            if c.select_every > 0
            else None
        )
        for step in range(1, c.steps + 1):
            last = model.train_step(sampler.sample(c.batch_size))
            if ema is not None:
                ema.update_parameters(model)
            if selector is not None and (step % c.select_every == 0 or step == c.steps):
                scored = model if ema is None else cast(WorldModel, ema.module)
                selector.consider(step, scored)
                if c.select_patience and selector.stale >= c.select_patience:
                    break
        if c.steps:
            metrics.update({k: float(v) for k, v in last.items()})
            metrics["world_model/pretrain_steps"] = float(step)
        if selector is not None:
            selector.restore(model)
            metrics["world_model/heldout_loss"] = selector.best_loss
            metrics["world_model/selected_step"] = float(selector.best_step)
        elif ema is not None:
            load_parameters(model, parameters_of(ema.module))
        result["world_model"] = _to_cpu(model.state_dict_all())
    return result


class HeldOutSelector:
    """Keeps the weights with the lowest held-out world-model loss seen so far.

    The loss is :meth:`WorldModel.heldout_loss` on a fixed random subset of the held-out rows,
    with noise draws fixed by ``seed``, so every candidate is scored on the same terms. For the
    'ensemble' dynamics each member keeps its own best weights by its held-out error (MBPO), the
    elites are the best members, and the reward model is the last candidate's.
    :attr:`stale` counts the measurements since one last improved a best by more than 1 %.
    """

    def __init__(self, held: Transitions, rows: int, seed: int, device: torch.device):
        pick = SELECTION_ROWS.numpy(seed).permutation(len(held))[:rows]
        self.rows = Batch.of(held.subset(np.sort(pick)), device)
        self.seed = seed
        self.best: dict[str, torch.Tensor] | None = None
        self.best_loss = float("inf")
        self.best_step = 0
        self.stale = 0
        self.last_loss = float("nan")
        self.member_best: torch.Tensor | None = None  # [E] held-out error per member
        self.member_weights: list[list[torch.Tensor]] = []

    def consider(self, step: int, model: WorldModel) -> None:
        """Score ``model`` (the EMA's, when pre-training averages) as the candidate of ``step``."""
        loss = model.heldout_loss(self.rows, self.seed)
        self.last_loss = loss
        lower = loss < self.best_loss
        keep = lower
        if isinstance(model.dynamics, GaussianEnsemble):
            # members keep their own bests; the rest of the model is the last candidate's
            improved = self._consider_members(model.dynamics)
            keep = True
        else:
            improved = loss < self.best_loss * (1 - 0.01)
        if lower:
            self.best_loss, self.best_step = loss, step
        if keep:
            self.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.stale = 0 if improved else self.stale + 1

    def _consider_members(self, ensemble: GaussianEnsemble) -> bool:
        rows = self.rows
        errors = ensemble.member_errors(rows.observations, rows.actions, rows.next_observations)
        weights = ensemble.member_weights()
        if self.member_best is None:
            self.member_best = errors.clone()
            self.member_weights = [weights] * len(errors)
            return True
        better = errors < self.member_best
        for member in torch.nonzero(better).flatten().tolist():
            self.member_weights[member] = weights
        improved = bool((errors < self.member_best * (1 - 0.01)).any())
        self.member_best = torch.where(better, errors, self.member_best)
        return improved

    def restore(self, model: WorldModel) -> None:
        """Load the selected weights into ``model`` (per member, and elites, for an ensemble)."""
        if self.best is None:
            return
        model.load_state_dict(self.best)
        if isinstance(model.dynamics, GaussianEnsemble) and self.member_best is not None:
            for member, weights in enumerate(self.member_weights):
                model.dynamics.load_member(member, weights)
            model.dynamics.set_elites(self.member_best)


def _seed_stream(derived: int, sampler: ReplayBuffer) -> None:
    """Seed torch's global RNG and ``sampler`` for one part of :func:`pretrain`."""
    torch.manual_seed(derived)
    sampler.generator.manual_seed(derived)


def _to_cpu(state: Any) -> Any:
    """A nested state dict with every tensor on the CPU (a stored and a fresh result agree)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_cpu(v) for v in state)
    return state
