"""Training a diffusion model: the optimizer, learning-rate schedule and gradient clipping shared
by the generators of the synthetic-data methods (SynthER's transitions, PGD's and DyDiff's
segments), and the one seeded training loop with a weight average they all run."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from adept.base.rng import cuda_indices
from adept.diffusion.ema import weight_average


class DiffusionModel(Protocol):
    """Anything with parameters and a per-sample training loss of a batch."""

    def parameters(self) -> Any: ...

    def loss(self, batch: Any) -> torch.Tensor: ...


class DiffusionTrainer:
    """AdamW (β = (0.9, 0.99), as SynthER) on ``model.loss(batch).mean()``, the learning rate
    warmed up linearly over ``warmup`` steps from ``lr / 10`` (none by default) and then annealed
    by a cosine to 0 at ``num_steps``, the gradient's norm clipped at ``grad_clip``. Metrics are
    named ``<prefix>/loss``, ``/grad_norm`` and ``/lr``."""

    def __init__(
        self,
        model: DiffusionModel,
        num_steps: int,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        warmup: int = 0,
        prefix: str = "diffusion",
    ):
        self.model = model
        self.grad_clip = grad_clip
        self.prefix = prefix
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99)
        )

        def factor(step: int) -> float:
            if step < warmup:
                return 0.1 + 0.9 * step / warmup
            progress = min((step - warmup) / max(num_steps - warmup, 1), 1.0)
            return 0.5 * (1 + math.cos(math.pi * progress))

        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def step(self, batch: Any) -> dict[str, torch.Tensor]:
        loss = self.model.loss(batch).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return {
            f"{self.prefix}/loss": loss.detach(),
            f"{self.prefix}/grad_norm": grad_norm.detach(),
            f"{self.prefix}/lr": torch.tensor(self.schedule.get_last_lr()[0]),
        }


def train_averaged(
    build: Callable[[], nn.Module],
    next_batch: Callable[[], Any],
    steps: int,
    seed: int,
    device: torch.device,
    *,
    lr: float,
    ema_decay: float,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    warmup: int = 0,
    prefix: str = "diffusion",
    snapshots: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Build a model (``build()``, under the torch RNG seeded with ``seed``) and train it
    ``steps`` times on ``next_batch()`` with a :class:`DiffusionTrainer`, keeping an EMA of its
    weights (decay ``ema_decay`` per step). Returns the average's state dict (``model``, on the
    CPU), the last step's ``metrics`` (named ``<prefix>/...``) and, under ``snapshots``, the
    average after each of those step counts. The global torch RNG is forked, so the caller's is
    left as it was; with ``next_batch`` drawing from a seeded stream of its own, the result is a
    pure function of the inputs (a cached result equals a fresh one)."""
    with torch.random.fork_rng(devices=cuda_indices(device)):
        torch.manual_seed(seed)
        model: Any = build().to(device)  # an nn.Module with a per-sample loss(batch)
        trainer = DiffusionTrainer(model, steps, lr, weight_decay, grad_clip, warmup, prefix)
        average = weight_average(model, ema_decay)

        def weights() -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in average.module.state_dict().items()}

        metrics: dict[str, torch.Tensor] = {}
        taken: dict[int, dict[str, torch.Tensor]] = {}
        for step in range(1, steps + 1):
            metrics = trainer.step(next_batch())
            average.update_parameters(model)
            if step in snapshots:
                taken[step] = weights()
        state = weights()
    result: dict[str, Any] = {"model": state, "metrics": {k: float(v) for k, v in metrics.items()}}
    if snapshots:
        result["snapshots"] = taken
    return result
