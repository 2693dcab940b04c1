"""SynthER (Lu et al. 2023, "Synthetic Experience Replay"): an unconditional diffusion model of
whole transitions, sampled once to upsample the dataset the agent trains on.

A transition is the flat vector x = [s, a, r, s′, terminal]. Every dimension but the terminal
flag is standardized with the data's mean and standard deviation; the flag stays in {0, 1} and is
read back as terminal where the sample exceeds 0.5 (as SynthER does). The generator is EDM
(:mod:`adept.diffusion.edm`, σ_d = 1 for standardized data) over a residual MLP
(:class:`adept.diffusion.denoisers.ResidualMLP`), trained with AdamW, a cosine learning-rate
schedule and gradient clipping, and sampled from an EMA of its weights with the Heun sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from adept.data.buffer import Batch, ReplayBuffer
from adept.data.transitions import Transitions
from adept.diffusion.denoisers import ResidualMLP
from adept.diffusion.edm import EDM, EDMConfig
from adept.diffusion.ema import weight_average
from adept.nets import Normalizer
from adept.rng import cuda_indices

TERMINAL_THRESHOLD = 0.5
"""A sampled terminal flag above this reads as a terminal transition."""


class TransitionModel(nn.Module):
    """p_θ([s, a, r, s′, terminal]): EDM over standardized transitions of ``data``'s shape."""

    def __init__(
        self,
        data: Transitions,
        hidden: int,
        depth: int,
        edm: EDMConfig | None = None,
        block_layers: int = 2,
    ):
        super().__init__()
        self.obs_dim, self.act_dim = data.obs_dim, data.act_dim
        self.dim = 2 * self.obs_dim + self.act_dim + 2  # [s, a, r, s′, terminal]
        flat = self._flatten(Batch.of(data))
        mean, std = flat.mean(0), flat.std(0)
        mean[-1], std[-1] = 0.0, 1.0  # the terminal flag is modelled as it is
        self.normalizer = Normalizer(mean, std)
        self.edm = EDM(ResidualMLP(self.dim, hidden, depth, block_layers), edm or EDMConfig())

    def _flatten(self, batch: Batch) -> torch.Tensor:
        parts = [
            batch.observations,
            batch.actions,
            batch.rewards[:, None],
            batch.next_observations,
            batch.terminals[:, None],
        ]
        return torch.cat(parts, dim=1)  # [batch, dim]

    def encode(self, batch: Batch) -> torch.Tensor:
        """Standardized flat transitions ``[batch, dim]``."""
        return self.normalizer(self._flatten(batch))

    def decode(self, x: torch.Tensor) -> Batch:
        """Transitions from standardized flat vectors; the terminal flag thresholded. Timeouts
        are all 0: a synthetic transition belongs to no episode."""
        raw = x * self.normalizer.std + self.normalizer.mean
        o, a = self.obs_dim, self.act_dim
        terminals = (raw[:, -1] > TERMINAL_THRESHOLD).float()
        return Batch(
            observations=raw[:, :o],
            actions=raw[:, o : o + a],
            rewards=raw[:, o + a],
            next_observations=raw[:, o + a + 1 : 2 * o + a + 1],
            terminals=terminals,
            timeouts=torch.zeros_like(terminals),
        )

    def loss(self, batch: Batch, generator: torch.Generator | None = None) -> torch.Tensor:
        """EDM's weighted denoising loss per transition, ``[batch]``."""
        return self.edm.loss(self.encode(batch), generator=generator)

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, steps: int | None = None
    ) -> Batch:
        """``n`` synthetic transitions (Heun sampler, ``steps`` noise levels)."""
        return self.decode(self.edm.sample((n, self.dim), generator=generator, steps=steps))


@dataclass(frozen=True)
class SynthERConfig:
    """SynthER's generator, its training and the upsampling. The defaults are the paper's sizes
    (its released configuration: a GPU's work, hours on a CPU)."""

    hidden: int = 2048
    """Width of the residual MLP."""
    depth: int = 6
    """Residual blocks."""
    block_layers: int = 2
    """Linear layers per residual block."""
    train_steps: int = 100_000
    """Generator training steps."""
    batch_size: int = 256
    """Training batch (SynthER: 256 for datasets under 800k transitions, 1024 above)."""
    lr: float = 3e-4
    """AdamW's learning rate, annealed to 0 by a cosine over ``train_steps``."""
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    """Largest gradient norm."""
    ema_decay: float = 0.9995
    """Decay per step of the EMA that is sampled from (SynthER: 0.995 every 10 steps)."""
    num_samples: int = 5_000_000
    """Synthetic transitions generated once after training."""
    sample_batch: int = 100_000
    """Transitions sampled per batch while upsampling."""
    edm: EDMConfig = field(default_factory=EDMConfig)
    """EDM's noise levels and Heun sampler (σ_d = 1 for the standardized transitions; SynthER's
    128 sampling steps are EDMConfig's default)."""


def train_generator(
    data: Transitions, config: SynthERConfig, seed: int, device: torch.device
) -> dict[str, Any]:
    """Train SynthER's generator on ``data``; returns the EMA weights' state dict (``model``, on
    the CPU) and the last step's ``metrics``. A pure function of its inputs (its own batches and
    a forked, seeded torch RNG, which leaves the caller's as it was), so a cached result equals
    a fresh one."""
    c = config
    with torch.random.fork_rng(devices=cuda_indices(device)):
        torch.manual_seed(seed)
        model = TransitionModel(data, c.hidden, c.depth, c.edm, c.block_layers).to(device)
        trainer = GeneratorTrainer(model, c.train_steps, c.lr, c.weight_decay, c.grad_clip)
        average = weight_average(model, c.ema_decay)
        sampler = ReplayBuffer.from_transitions(data, device=device, seed=seed)
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(c.train_steps):
            metrics = trainer.step(sampler.sample(c.batch_size))
            average.update_parameters(model)
        state = {k: v.detach().cpu() for k, v in average.module.state_dict().items()}
    return {"model": state, "metrics": {k: float(v) for k, v in metrics.items()}}


class GeneratorTrainer:
    """AdamW (β = (0.9, 0.99), as SynthER) on :meth:`TransitionModel.loss` with the learning
    rate annealed by a cosine from ``lr`` to 0 over ``num_steps``, the gradient's norm clipped
    at ``grad_clip``."""

    def __init__(
        self,
        model: TransitionModel,
        num_steps: int,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
    ):
        self.model = model
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99)
        )
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / num_steps, 1)))
        )

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        loss = self.model.loss(batch).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.schedule.step()
        return {
            "synther/loss": loss.detach(),
            "synther/grad_norm": grad_norm.detach(),
            "synther/lr": torch.tensor(self.schedule.get_last_lr()[0]),
        }


@torch.no_grad()
def upsample(
    model: TransitionModel,
    n: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    steps: int | None = None,
    env_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Transitions:
    """``n`` synthetic transitions, sampled ``batch_size`` at a time, as a dataset in the
    project's format (``save_hdf5`` writes it in D4RL layout, so it can be inspected with
    ``adept data info`` and reused). Synthetic transitions are independent draws, so each is a
    one-step episode of its own: terminal where the sampled flag says so, else a timeout (a
    truncation: the agent bootstraps from s′ as usual)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"upsample needs n ≥ 1 and batch_size ≥ 1, got {n} and {batch_size}")
    parts = [
        model.sample(min(batch_size, n - start), generator, steps)
        for start in range(0, n, batch_size)
    ]
    batch = Batch.cat(parts)
    terminals = batch.terminals.bool().cpu().numpy()
    return Transitions(
        observations=batch.observations.cpu().numpy(),
        actions=batch.actions.cpu().numpy(),
        rewards=batch.rewards.cpu().numpy(),
        next_observations=batch.next_observations.cpu().numpy(),
        terminals=terminals,
        timeouts=~terminals,
        env_id=env_id,
        metadata={"kind": "synther", **(metadata or {})},
    )
