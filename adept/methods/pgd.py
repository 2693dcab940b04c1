"""Policy-Guided Diffusion (Jackson et al. 2024): a diffusion model of whole trajectory segments
whose sampling is guided toward the current policy, regenerating the agent's synthetic data.

First part (issue 13): the segment model and the way back from segments to transitions.

A segment is L consecutive rows [s, a, r, terminal] of one episode (:mod:`adept.data.segments`,
short episodes padded as an absorbing state). Actions enter through arctanh(clip(a, ±0.999)), so
the model works on an unbounded scale and tanh brings samples back into the action box, as PGD
does; then every channel (the terminal flag too) is standardized with the dataset's per-channel
mean and standard deviation. The network is the temporal U-Net (:mod:`adept.diffusion.unet`)
under EDM. A generated segment of L rows gives L − 1 transitions, each row's next state being the
next row's state; rows after the first terminal (the absorbing padding the model learnt) are
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from adept.data.segments import Segments, gather_segments, segment_starts
from adept.data.transitions import Transitions
from adept.diffusion.edm import EDM, EDMConfig
from adept.diffusion.ema import weight_average
from adept.diffusion.guidance import guidance_schedule, policy_nudge
from adept.diffusion.training import DiffusionTrainer
from adept.diffusion.unet import TemporalUNet, UNetSize
from adept.nets import Actor, DeterministicActor, Normalizer, gaussian_log_prob
from adept.rng import cuda_indices

ACTION_CLIP = 0.999
"""Actions are clipped to ±this before arctanh (arctanh(±1) is infinite)."""
TERMINAL_THRESHOLD = 0.5
"""A generated terminal channel above this reads as a terminal row."""


@dataclass(frozen=True)
class SegmentRows:
    """Segments as tensors ``[B, L, ...]``: the rows a segment model generates."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminals: torch.Tensor

    @staticmethod
    def of(segments: Segments, device: torch.device | str = "cpu") -> SegmentRows:
        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(x, dtype=torch.float32, device=device)

        return SegmentRows(
            tensor(segments.observations),
            tensor(segments.actions),
            tensor(segments.rewards),
            tensor(segments.terminals),
        )


class SegmentModel(nn.Module):
    """p_θ(segment): EDM over standardized rows [s, arctanh(a), r, terminal] of ``data``."""

    def __init__(
        self,
        data: Transitions,
        size: UNetSize,
        edm: EDMConfig | None = None,
        groups: int = 8,
    ):
        super().__init__()
        self.obs_dim, self.act_dim = data.obs_dim, data.act_dim
        self.channels = data.obs_dim + data.act_dim + 2
        rows = self._flatten(
            torch.as_tensor(data.observations),
            torch.as_tensor(data.actions),
            torch.as_tensor(data.rewards),
            torch.as_tensor(data.terminals, dtype=torch.float32),
        )  # [N, C]
        std = rows.std(0)
        std[std < 1e-6] = 1.0  # a constant channel (no terminals in the data) stays as it is
        self.normalizer = Normalizer(rows.mean(0), std, eps=1e-6)
        unet = TemporalUNet(self.channels, size.dim, size.mults, size.kernel, groups)
        self.edm = EDM(unet, edm or EDMConfig())

    def _flatten(
        self, obs: torch.Tensor, act: torch.Tensor, rew: torch.Tensor, term: torch.Tensor
    ) -> torch.Tensor:
        squashed = torch.atanh(act.float().clamp(-ACTION_CLIP, ACTION_CLIP))
        return torch.cat([obs.float(), squashed, rew.float()[..., None], term[..., None]], -1)

    def encode(self, rows: SegmentRows) -> torch.Tensor:
        """Standardized segments ``[B, L, C]``."""
        flat = self._flatten(rows.observations, rows.actions, rows.rewards, rows.terminals)
        return self.normalizer(flat)

    def decode(self, x: torch.Tensor) -> SegmentRows:
        """Rows from standardized segments: actions through tanh, the flag thresholded."""
        raw = x * self.normalizer.std + self.normalizer.mean
        o, a = self.obs_dim, self.act_dim
        return SegmentRows(
            observations=raw[..., :o],
            actions=torch.tanh(raw[..., o : o + a]),
            rewards=raw[..., o + a],
            terminals=(raw[..., o + a + 1] > TERMINAL_THRESHOLD).float(),
        )

    def loss(self, rows: SegmentRows, generator: torch.Generator | None = None) -> torch.Tensor:
        """EDM's weighted denoising loss per segment, ``[B]``."""
        return self.edm.loss(self.encode(rows), generator=generator)


def unstack(rows: SegmentRows, env_id: str | None = None) -> Transitions:
    """The transitions of generated segments: (s_t, a_t, r_t, s_{t+1}, terminal_t) for
    t = 0..L−2, up to and including each segment's first terminal row. Each segment is an
    episode of its own, ending in its terminal or else in a timeout (the agent bootstraps)."""
    obs = rows.observations.detach().cpu().numpy()
    act = rows.actions.detach().cpu().numpy()
    rew = rows.rewards.detach().cpu().numpy()
    term = rows.terminals.detach().cpu().numpy() > 0.5
    steps = obs.shape[1] - 1
    if steps < 1:
        raise ValueError("a segment needs at least 2 rows to give a transition")
    term = term[:, :steps]
    # keep t while no terminal came before it: t ≤ first terminal (or every t without one)
    before: np.ndarray = np.cumsum(term, axis=1) - term
    keep: np.ndarray = before == 0  # [B, L − 1]
    ends = keep & (term | (np.arange(steps) == steps - 1)[None])
    return Transitions(
        observations=obs[:, :steps][keep],
        actions=act[:, :steps][keep],
        rewards=rew[:, :steps][keep],
        next_observations=obs[:, 1:][keep],
        terminals=term[keep],
        timeouts=(ends & ~term)[keep],
        env_id=env_id,
        metadata={"kind": "pgd"},
    )


@dataclass(frozen=True)
class SegmentTraining:
    """How a segment model is trained (PGD's released code: L = 32, stride 8, batch 32, Adam at
    2e-3 warmed up over 10 % of training then cosine, EMA ≈ 0.9995 per step)."""

    size: UNetSize
    length: int = 32
    stride: int = 8
    steps: int = 10_000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_fraction: float = 0.1
    ema_decay: float = 0.9995
    groups: int = 8
    edm: EDMConfig = field(default_factory=EDMConfig)


def train_segment_model(
    data: Transitions, training: SegmentTraining, seed: int, device: torch.device
) -> dict[str, Any]:
    """Train a :class:`SegmentModel` on ``data``'s padded segments; returns the EMA weights'
    state dict (``model``, on the CPU) and the last step's ``metrics``. A pure function of its
    inputs (segments drawn by a seeded numpy generator, the torch RNG forked and seeded), so a
    cached result equals a fresh one and the caller's RNG is left as it was."""
    t = training
    starts = segment_starts(data, t.length, t.stride, short="pad")
    if len(starts) == 0:
        raise ValueError(f"no segment of {t.length} rows fits in the data; use a shorter length")
    pick = np.random.default_rng([seed, 3])
    with torch.random.fork_rng(devices=cuda_indices(device)):
        torch.manual_seed(seed)
        model = SegmentModel(data, t.size, t.edm, t.groups).to(device)
        trainer = DiffusionTrainer(
            model, t.steps, t.lr, warmup=round(t.warmup_fraction * t.steps), prefix="pgd"
        )
        average = weight_average(model, t.ema_decay)
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(t.steps):
            batch = gather_segments(data, pick.choice(starts, t.batch_size), t.length)
            metrics = trainer.step(SegmentRows.of(batch, device))
            average.update_parameters(model)
        state = {k: v.detach().cpu() for k, v in average.module.state_dict().items()}
    return {"model": state, "metrics": {k: float(v) for k, v in metrics.items()}}


def guidance_log_prob(actor: Actor, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """log π(a | s) as PGD guides with it: the actor's own density, except that a deterministic
    actor (TD3+BC) becomes N(μ(s), I) — its exploration noise would make the gradient 1/σ² times
    steeper. ``[batch]``."""
    if isinstance(actor, DeterministicActor):
        mean = actor(obs)
        return gaussian_log_prob(act, mean, torch.zeros_like(mean))
    return actor.log_prob(obs, act)


@torch.no_grad()
def generate(
    model: SegmentModel,
    actor: Actor | None,
    num_segments: int,
    length: int,
    steps: int,
    coeff: float = 0.0,
    cosine_coeff: float = 0.3,
    normalize: bool = False,
    generator: torch.Generator | None = None,
) -> SegmentRows:
    """``num_segments`` segments of ``length`` rows from the Heun sampler over ``steps`` noise
    levels, guided toward ``actor`` with PGD's coefficients λ_i (:func:`guidance_schedule`) on
    the action channels — s and a read from the noisy sample itself; ``coeff = 0`` (or no actor)
    is unguided diffusion, PGD's own baseline. The convolutional network generates any length,
    not only the one it was trained on (PGD trains on 32 rows and generates 129)."""
    shape = (num_segments, length, model.channels)
    nudge = None
    if actor is not None and coeff != 0.0:
        o, a = model.obs_dim, model.act_dim
        channels = torch.zeros(
            model.channels, dtype=torch.bool, device=model.normalizer.mean.device
        )
        channels[o : o + a] = True

        def log_density(x: torch.Tensor) -> torch.Tensor:
            rows = model.decode(x)
            obs = rows.observations.flatten(0, 1)
            act = rows.actions.flatten(0, 1).clamp(-ACTION_CLIP, ACTION_CLIP)
            return guidance_log_prob(actor, obs, act).view(num_segments, length).sum(1)

        schedule = guidance_schedule(steps, coeff, cosine_coeff)
        nudge = policy_nudge(log_density, channels, schedule, normalize)
    return model.decode(model.edm.sample(shape, steps, generator=generator, nudge=nudge))
