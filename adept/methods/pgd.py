"""Policy-Guided Diffusion (Jackson et al. 2024): a diffusion model of whole trajectory segments
whose sampling is guided toward the current policy, regenerating the agent's synthetic data.

``--method pgd`` (:class:`PGDMethod`, options ``--pgd.*``, :class:`PGDConfig`): set-up trains the
segment model once on the dataset (cached, shared by every run with the same inputs) and
samples the first synthetic data unguided (PGD's code: the actor is untrained then); every
``regenerate_every`` agent steps the synthetic data is replaced by segments sampled with the
current actor's guidance, cut into transitions; each agent batch mixes
``real_ratio`` real transitions with synthetic ones (PGD: 16 real + 240 synthetic of 256).
Guidance 0 is unguided diffusion, the paper's own baseline.

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

from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from adept.agents import Agent
from adept.base.errors import AdeptError
from adept.base.rng import Stream
from adept.data.buffer import Batch, ReplayBuffer
from adept.data.transitions import Transitions
from adept.diffusion.edm import EDM, EDMConfig
from adept.diffusion.guidance import guidance_schedule, policy_nudge
from adept.diffusion.unet import UNET_SIZES, TemporalUNet, UNetSize
from adept.methods.base import Method, check_generator_sizes, mixed_sample
from adept.methods.trajectories import (
    SegmentRows,
    SegmentTraining,
    build_model,
    check_segments_fit,
    train_on_segments,
    training_key,
)
from adept.nets import Actor, DeterministicActor, Normalizer, gaussian_log_prob
from adept.store.artifacts import cached_or_kept
from adept.world_models.true_dynamics import TrueDynamics, transition_error

ACTION_CLIP = 0.999
"""Actions are clipped to ±this before arctanh (arctanh(±1) is infinite)."""
TERMINAL_THRESHOLD = 0.5
"""A generated terminal channel above this reads as a terminal row."""

SYNTHETIC_ROWS = Stream("the generated rows the agent samples", 1)
GENERATION = Stream("each generation round's sampling", 5)


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


def train_segment_model(
    data: Transitions,
    training: SegmentTraining,
    seed: int,
    device: torch.device,
    snapshots: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Train a :class:`SegmentModel` on ``data``'s padded segments
    (:func:`adept.methods.trajectories.train_on_segments`: the EMA weights, the last metrics,
    optional snapshots; a pure function of its inputs)."""
    return train_on_segments(SegmentModel, data, training, seed, device, snapshots, prefix="pgd")


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


@dataclass(frozen=True)
class PGDConfig:
    """Policy-Guided Diffusion: the segment model, its guidance and the agent's data mix. The
    defaults are the 'cpu' preset; ``--pgd.preset paper|cpu|smoke`` starts from another
    (:data:`PRESETS`), and the options given with it change that preset's values."""

    network: Literal["smoke", "cpu", "dydiff", "pgd"] = "cpu"
    """The temporal U-Net's size (:data:`adept.diffusion.unet.UNET_SIZES`; PGD: 'pgd', 1024 ×
    (1, 2, 4))."""
    train_steps: int = 8_000
    """Segment-model training steps (PGD: 10k epochs over the segments, ≈ 40M steps on 1M rows;
    its 'paper' preset: 1M)."""
    batch_size: int = 32
    """Segments per training batch (PGD: 32)."""
    ema_decay: float = 0.999
    """Decay per step of the EMA of the weights that is sampled from (PGD: 0.9995)."""
    sample_steps: int = 32
    """Noise levels of the Heun sampler, 2N − 1 denoiser calls per segment (PGD: 256)."""
    num_segments: int = 1024
    """Segments generated at each regeneration (PGD: 8192)."""
    segment_length: int = 33
    """Rows per generated segment, length − 1 transitions each (PGD: 129). The network is
    convolutional, so it generates segments longer than the ones it trained on (PGD: trains on
    32, generates 129)."""
    regenerate_every: int = 5_000
    """Agent steps between regenerations of the synthetic data (PGD: 10k)."""
    sample_batch: int = 256
    """Segments sampled per batch while generating."""
    train_length: int = 32
    """Rows per training segment (PGD: 32)."""
    train_stride: int = 8
    """Rows between the starts of training segments of one episode (PGD: 8)."""
    lr: float = 2e-3
    """AdamW's learning rate (PGD: 2e-3), warmed up then annealed to 0 by a cosine."""
    warmup_fraction: float = 0.1
    """Share of training steps warming the learning rate up from lr/10."""
    guidance: float = 0.1
    """λ, the policy-guidance coefficient: before each sampler step the noisy sample's actions
    move by λ_i ∇_a log π(a | s) (λ_i: PGD's schedule, off at the last step); the set-up's
    segments, made before the actor has trained, are unguided. 0: unguided diffusion, PGD's
    own baseline. The default is where π's log-likelihood of the generated actions has risen
    and the dynamics error has not yet (docs/results/trajectories.md, the guidance sweep)."""
    guidance_cosine: float = 0.3
    """Amplitude of the sine bump of PGD's λ_i schedule."""
    guidance_normalize: bool = False
    """Scale each segment's guidance gradient to unit norm (PGD's option)."""
    real_ratio: float = 0.0625
    """Share of real transitions in each agent batch (PGD: 16 of 256); the rest synthetic."""
    generator_seed: int | None = None
    """Seed of the segment model's training; None: the run's seed. A fixed seed makes a grid's
    runs share one model per dataset (generation still follows each run's own policy)."""
    true_error_samples: int = 2048
    """At each regeneration, check up to this many generated transitions against one simulator
    step (logged as pgd/true_error; 0: never). A diagnostic only: it draws no randomness."""
    edm: EDMConfig = field(default_factory=EDMConfig)
    """EDM's noise levels and sampler churn (σ_d = 1 for the standardized rows)."""
    cache: bool = True
    """Keep the trained segment model in the artifact cache ($ADEPT_DATA_DIR/artifacts/pgd),
    shared by every run with the same inputs; without it the weights go into the run's
    checkpoints. Results are identical either way."""

    def training(self) -> SegmentTraining:
        """How the segment model is trained: everything :func:`train_segment_model` reads (its
        cache key holds it whole)."""
        return SegmentTraining(
            size=UNET_SIZES[self.network],
            length=self.train_length,
            stride=self.train_stride,
            steps=self.train_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_fraction=self.warmup_fraction,
            ema_decay=self.ema_decay,
            edm=self.edm,
        )


PRESETS: dict[str, PGDConfig] = {
    # PGD's released configuration, a GPU's work; its training runs 10k epochs over the segments
    # (≈ 40M steps on a 1M-row dataset), 1M steps here
    "paper": PGDConfig(
        network="pgd",
        train_steps=1_000_000,
        ema_decay=0.9995,
        sample_steps=256,
        num_segments=8192,
        segment_length=129,
        regenerate_every=10_000,
    ),
    # ≈ 7 minutes of training on 2 CPU cores (docs/results/trajectories.md measures it)
    "cpu": PGDConfig(),
    # seconds: tests and quick checks, not a model worth training an agent on
    "smoke": PGDConfig(
        network="smoke",
        train_steps=100,
        batch_size=16,
        ema_decay=0.9,
        sample_steps=4,
        num_segments=32,
        segment_length=9,
        regenerate_every=100,
        sample_batch=32,
    ),
}
"""``--pgd.preset``: named starting points for the options (the segment model's size, training
and generation budget)."""


def check_config(config: PGDConfig, data: Transitions) -> None:
    """Refuse settings that cannot work, before anything is written."""
    c = config
    positive = ("train_steps", "batch_size", "num_segments", "regenerate_every", "sample_batch")
    check_generator_sizes("pgd", c.real_ratio, c, positive)
    if c.segment_length < 2:
        raise AdeptError(f"--pgd.segment-length must be at least 2 rows, got {c.segment_length}")
    if not c.lr > 0:
        raise AdeptError(f"--pgd.lr must be positive, got {c.lr}")
    if not 0.0 <= c.warmup_fraction < 1.0:
        raise AdeptError(f"--pgd.warmup-fraction must be in [0, 1), got {c.warmup_fraction}")
    if c.guidance < 0:
        raise AdeptError(f"--pgd.guidance must be ≥ 0 (0: unguided), got {c.guidance}")
    if c.train_length < 2 or c.train_stride < 1:
        raise AdeptError(
            "--pgd.train-length must be at least 2 and --pgd.train-stride positive, got "
            f"{c.train_length} and {c.train_stride}"
        )
    check_segments_fit(data, c.training(), "--pgd.train-length")


PGD_REVISION = 1
"""Revision of the segment model's training recipe, part of the cache key: bump it whenever
:func:`train_segment_model` computes something else for the same inputs."""


def model_key(
    data: Transitions, config: PGDConfig, seed: int, device: torch.device
) -> dict[str, Any]:
    """Everything :func:`train_segment_model`'s result depends on, and nothing else (no agent,
    no generation field): runs that differ only elsewhere share one trained model."""
    return training_key(data, config.training(), PGD_REVISION, seed, device)


class PGDMethod(Method):
    """PGD+X: the agent trains on segments generated with its own policy's guidance, replaced
    every ``regenerate_every`` steps, mixed with real data at ``real_ratio``."""

    name = "pgd"
    options = "pgd"
    options_type = PGDConfig
    label = "PGD"
    presets = PRESETS

    def __init__(
        self,
        data: Transitions,
        buffer: ReplayBuffer,
        batch_size: int,
        config: PGDConfig,
        seed: int = 0,
        num_steps: int | None = None,
    ):
        super().__init__(data, buffer, batch_size)
        check_config(config, data)
        self.config = config
        self.seed = seed
        self.device = buffer.device
        self.model_seed = seed if config.generator_seed is None else config.generator_seed
        self.n_real = round(batch_size * config.real_ratio)
        self.num_steps = num_steps
        self.model = build_model(SegmentModel, data, config.training()).to(self.device)
        self.model.requires_grad_(False)
        self.kept: dict[str, Any] | None = None  # the trained model, kept only without the cache
        capacity = self.config.num_segments * (self.config.segment_length - 1)
        self.synthetic = ReplayBuffer(
            capacity,
            data.obs_dim,
            data.act_dim,
            device=self.device,
            seed=SYNTHETIC_ROWS.offset(seed),
        )
        self.truth = TrueDynamics.of(data.env_id, wanted=bool(config.true_error_samples))

    @staticmethod
    def check(config: Any, data: Transitions) -> None:
        check_config(config, data)

    def _load_model(self, kept: dict[str, Any] | None = None) -> dict[str, float]:
        """Train (or load) the segment model; returns its last training metrics."""
        c, data, device, seed = self.config, self.data, self.device, self.model_seed
        trained, self.kept = cached_or_kept(
            "pgd",
            lambda: model_key(data, c, seed, device),
            lambda: train_segment_model(data, c.training(), seed, device),
            c.cache,
            kept,
        )
        self.model.load_state_dict(trained["model"])
        return dict(trained["metrics"])

    def setup(self, agent: Agent) -> dict[str, float]:
        metrics = self._load_model()
        metrics.update({k: float(v) for k, v in self._regenerate(0, agent).items()})
        return metrics

    def _regenerate(self, round_: int, agent: Agent) -> dict[str, torch.Tensor]:
        """Replace the synthetic data with segments guided toward ``agent``'s actor now; the
        first round's (at set-up) are unguided, as PGD's code makes them: the actor is
        untrained then, and guiding toward it would pull every synthetic action toward a
        random policy until the first regeneration."""
        c = self.config
        guidance = c.guidance if round_ > 0 else 0.0
        rng = torch.Generator(device=self.device)
        rng.manual_seed(GENERATION.mixed(self.seed, round_))
        parts = []
        for start in range(0, c.num_segments, c.sample_batch):
            n = min(c.sample_batch, c.num_segments - start)
            parts.append(
                generate(
                    self.model,
                    agent.actor,
                    n,
                    c.segment_length,
                    c.sample_steps,
                    guidance,
                    c.guidance_cosine,
                    c.guidance_normalize,
                    rng,
                )
            )
        rows = SegmentRows(
            *(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(SegmentRows))
        )
        new = unstack(rows, self.data.env_id)
        self.synthetic.clear()
        self.synthetic.add(Batch.of(new, self.device))
        obs = torch.as_tensor(new.observations, device=self.device)
        act = torch.as_tensor(new.actions, device=self.device).clamp(-ACTION_CLIP, ACTION_CLIP)
        with torch.no_grad():
            log_pi = guidance_log_prob(agent.actor, obs, act)
        metrics = {
            "pgd/transitions": torch.tensor(float(len(new))),
            "pgd/terminal_fraction": torch.tensor(float(new.terminals.mean())),
            "pgd/reward_mean": torch.tensor(float(new.rewards.mean())),
            "pgd/log_pi": log_pi.mean().cpu(),
        }
        if self.truth is not None:
            n = min(c.true_error_samples, len(new))
            err = transition_error(
                self.truth,
                new.observations[:n],
                new.actions[:n],
                new.rewards[:n],
                new.next_observations[:n],
                new.terminals[:n],
            )
            if err.checked:
                metrics["pgd/true_error"] = torch.tensor(float(err.state_error.mean()))
                metrics["pgd/true_reward_error"] = torch.tensor(float(err.reward_error.mean()))
        return metrics

    def sample(self, step: int) -> Batch:
        return mixed_sample(self.buffer, self.synthetic, self.batch_size, self.n_real)

    def after_update(self, step: int, agent: Agent) -> dict[str, torch.Tensor]:
        done = step + 1
        if done % self.config.regenerate_every != 0:
            return {}
        if self.num_steps is not None and done >= self.num_steps:
            return {}  # no agent step would train on it
        return self._regenerate(done // self.config.regenerate_every, agent)

    def state_dict(self) -> dict[str, Any]:
        state = {**super().state_dict(), "synthetic": self.synthetic.state_dict(include_data=True)}
        if self.kept is not None:
            state["model"] = self.kept
        return state

    def load_state_dict(self, state: dict[str, Any], agent: Agent) -> None:
        super().load_state_dict(state, agent)
        self._load_model(state.get("model"))
        self.synthetic.load_state_dict(state["synthetic"])
