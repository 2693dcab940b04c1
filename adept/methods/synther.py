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

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from adept.agents import Agent
from adept.base.errors import AdeptError
from adept.base.rng import Stream, cuda_indices
from adept.data.buffer import Batch, ReplayBuffer
from adept.data.hdf5 import load_hdf5, save_hdf5
from adept.data.transitions import Transitions
from adept.diffusion.denoisers import ResidualMLP
from adept.diffusion.edm import EDM, EDMConfig
from adept.diffusion.training import train_averaged
from adept.methods.base import Method, check_generator_sizes, mixed_sample
from adept.nets import Normalizer
from adept.store.artifacts import cached_file, cached_or_kept
from adept.world_models.model import RewardTerminalModel

TERMINAL_THRESHOLD = 0.5
"""A sampled terminal flag above this reads as a terminal transition."""

SAMPLING = Stream("the generator's samples", 1)
CLASSIFIER = Stream("the terminal classifier's training", 2)
SYNTHETIC_ROWS = Stream("the synthetic rows the agent samples", 1)


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
    def sample(self, n: int, steps: int, generator: torch.Generator | None = None) -> Batch:
        """``n`` synthetic transitions (Heun sampler over ``steps`` noise levels)."""
        return self.decode(self.edm.sample((n, self.dim), steps, generator=generator))


@dataclass(frozen=True)
class SynthERConfig:
    """SynthER: its generator, training, upsampling and the agent's data mix. The defaults are
    the 'cpu' preset; ``--synther.preset paper|cpu|smoke`` starts from another (:data:`PRESETS`),
    and the options given with it change that preset's values."""

    hidden: int = 256
    """Width of the residual MLP (SynthER: 2048)."""
    depth: int = 3
    """Residual blocks (SynthER: 6)."""
    block_layers: int = 2
    """Linear layers per residual block."""
    train_steps: int = 15_000
    """Generator training steps (SynthER: 100k)."""
    batch_size: int | None = 256
    """Training batch; None: SynthER's rule, 256 for datasets under 800k transitions, else 1024."""
    lr: float = 3e-4
    """AdamW's learning rate, annealed to 0 by a cosine over the training steps."""
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    """Largest gradient norm."""
    ema_decay: float = 0.999
    """Decay per step of the EMA of the weights that is sampled from (SynthER: 0.995 every 10
    steps, ≈ 0.9995 per step)."""
    edm: EDMConfig = field(default_factory=EDMConfig)
    """EDM's noise levels and sampler churn (σ_d = 1 for the standardized transitions)."""
    num_samples: int = 300_000
    """Synthetic transitions generated once after training (SynthER: 5M)."""
    sample_steps: int = 32
    """Noise levels of the Heun sampler, 2N − 1 denoiser calls per sample (SynthER: 128)."""
    sample_batch: int = 1024
    """Transitions sampled per batch while upsampling; on a CPU, batches that fit the caches
    run faster (docs/results/synther.md)."""
    clip_actions: bool = True
    """Clip each generated action to the dataset's per-dimension range (the env's action box,
    which the simulator applies too): the generator smooths the box's hard edge and puts actions
    outside it (docs/results/synther.md)."""
    terminals: Literal["generated", "classifier"] = "classifier"
    """Where synthetic terminal flags come from. 'generated': the generator's own flag
    (SynthER's recipe); 'classifier': relabelled by a terminal classifier of (s, a, s′) trained
    on the dataset (r_φ's terminal head, as ADEPT's world model predicts terminals), because the
    generated flag missed falls through which IQL's critic bootstrapped and ran away
    (docs/results/README.md, the SynthER table's reading)."""
    terminal_steps: int = 5_000
    """Training steps of the terminal classifier, Adam at batch 256."""
    real_ratio: float = 0.0
    """Share of real transitions in each agent batch; the rest are synthetic. 0: synthetic data
    only, SynthER's offline setting (the paper); its online setting mixes 0.5."""
    generator_seed: int | None = None
    """Seed of the generator's training and sampling; None: the run's seed. A fixed seed makes
    the runs of a grid share one generator and one synthetic dataset per dataset."""
    cache: bool = True
    """Keep the trained generator and the synthetic dataset in the artifact cache
    ($ADEPT_DATA_DIR/artifacts/synther*), shared by every run with the same inputs; without it
    the generator's weights go into the run's checkpoints and the data is sampled again on
    resume. Results are identical either way."""

    def generator(self, num_rows: int) -> SynthERGenerator:
        """What the generator's training reads, for a dataset of ``num_rows`` transitions."""
        batch = self.batch_size
        if batch is None:
            batch = 1024 if num_rows >= LARGE_DATASET else 256
        return SynthERGenerator(
            hidden=self.hidden,
            depth=self.depth,
            block_layers=self.block_layers,
            train_steps=self.train_steps,
            batch_size=batch,
            lr=self.lr,
            weight_decay=self.weight_decay,
            grad_clip=self.grad_clip,
            ema_decay=self.ema_decay,
            edm=self.edm,
        )

    def sampling(self) -> SynthERSampling:
        """What the upsampling reads."""
        return SynthERSampling(
            num_samples=self.num_samples,
            sample_steps=self.sample_steps,
            sample_batch=self.sample_batch,
            clip_actions=self.clip_actions,
            terminals=self.terminals,
            terminal_steps=self.terminal_steps,
        )


@dataclass(frozen=True)
class SynthERGenerator:
    """Everything :func:`train_generator` reads: the generator's size and training. The
    generator's cache key holds it whole (:func:`generator_key`)."""

    hidden: int
    depth: int
    block_layers: int
    train_steps: int
    batch_size: int
    lr: float
    weight_decay: float
    grad_clip: float
    ema_decay: float
    edm: EDMConfig


@dataclass(frozen=True)
class SynthERSampling:
    """Everything :func:`synthesize` reads beyond the trained generator: how many transitions,
    sampled how, and where their terminal flags come from. The synthetic dataset's cache key
    holds it whole with the generator's (:func:`samples_key`)."""

    num_samples: int
    sample_steps: int
    sample_batch: int
    clip_actions: bool
    terminals: Literal["generated", "classifier"]
    terminal_steps: int


PRESETS: dict[str, SynthERConfig] = {
    # SynthER's released configuration, a GPU's work (docs/results/synther.md times it on a CPU)
    "paper": SynthERConfig(
        hidden=2048,
        depth=6,
        train_steps=100_000,
        batch_size=None,
        ema_decay=0.9995,
        sample_steps=128,
        num_samples=5_000_000,
        sample_batch=100_000,
        terminal_steps=10_000,
    ),
    # ≲ 10 minutes on 2 CPU cores for a 1M-transition dataset (docs/results/synther.md)
    "cpu": SynthERConfig(),
    # seconds: tests and quick checks, not a generator worth training an agent on
    "smoke": SynthERConfig(
        hidden=32,
        depth=1,
        train_steps=200,
        batch_size=64,
        ema_decay=0.9,
        sample_steps=8,
        num_samples=4_096,
        sample_batch=1024,
        terminal_steps=50,
    ),
}
"""``--synther.preset``: named starting points for the options (the generator's size, training
and upsampling budget)."""

LARGE_DATASET = 800_000
"""SynthER trains with batch 1024 on datasets of at least this many transitions, else 256."""


def check_config(config: SynthERConfig, data: Transitions) -> None:
    """Refuse settings that cannot work, before anything is written."""
    c = config
    positive = (
        "hidden", "depth", "train_steps", "batch_size", "num_samples", "sample_batch",
        "terminal_steps",
    )  # fmt: skip
    sized = replace(c, batch_size=c.generator(len(data)).batch_size)  # SynthER's batch rule
    check_generator_sizes("synther", c.real_ratio, sized, positive, ema_zero_ok=True)
    if c.block_layers < 1:
        raise AdeptError(f"--synther.block-layers must be positive, got {c.block_layers}")
    if not c.lr > 0:
        raise AdeptError(f"--synther.lr must be positive, got {c.lr}")


SYNTHER_REVISION = 1
"""Revision of the generator's training and sampling recipe, part of the cache keys: bump it
whenever :func:`train_generator` or :func:`upsample` compute something else for the same inputs."""


def generator_key(
    data: Transitions, generator: SynthERGenerator, seed: int, device: torch.device
) -> dict[str, Any]:
    """Everything :func:`train_generator`'s result depends on, and nothing else (no agent, no
    sampling field): runs that differ only elsewhere share one trained generator. ``generator``
    enters whole, so a field added to it changes the key."""
    return {
        "revision": SYNTHER_REVISION,
        "data": data.fingerprint(),
        "generator": generator,
        "seed": seed,
        "device": device.type,
        "torch": torch.__version__,
    }


def samples_key(generator: dict[str, Any], sampling: SynthERSampling) -> dict[str, Any]:
    """Everything the synthetic dataset depends on: the generator's key (:func:`generator_key`)
    and the sampling, whole."""
    return {"generator": generator, "sampling": sampling}


def build_model(data: Transitions, generator: SynthERGenerator) -> TransitionModel:
    """The (untrained) generator of ``generator``'s size for ``data``."""
    g = generator
    return TransitionModel(data, g.hidden, g.depth, g.edm, g.block_layers)


def train_generator(
    data: Transitions, generator: SynthERGenerator, seed: int, device: torch.device
) -> dict[str, Any]:
    """Train SynthER's generator on ``data``; returns the EMA weights' state dict (``model``, on
    the CPU) and the last step's ``metrics``. A pure function of :func:`generator_key`'s inputs
    (its own batches and a forked, seeded torch RNG, which leaves the caller's as it was), so a
    cached result equals a fresh one."""
    g = generator
    sampler = ReplayBuffer.from_transitions(data, device=device, seed=seed)
    return train_averaged(
        lambda: build_model(data, g), lambda: sampler.sample(g.batch_size), g.train_steps,
        seed, device, lr=g.lr, ema_decay=g.ema_decay, weight_decay=g.weight_decay,
        grad_clip=g.grad_clip, prefix="synther",
    )  # fmt: skip


@torch.no_grad()
def upsample(
    model: TransitionModel,
    n: int,
    batch_size: int,
    steps: int,
    generator: torch.Generator | None = None,
    env_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    action_bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> Transitions:
    """``n`` synthetic transitions, sampled ``batch_size`` at a time over ``steps`` noise
    levels, as a dataset in the project's format (``save_hdf5`` writes it in D4RL layout, so it
    can be inspected with ``adept data info`` and reused). Synthetic transitions are independent
    draws, so each is a one-step episode of its own: terminal where the sampled flag says so,
    else a timeout (a truncation: the agent bootstraps from s′ as usual). ``action_bounds``
    (low, high per dimension): actions are clipped to them, and the share of transitions that
    had an action outside is recorded as the ``actions_clipped`` metadata."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"upsample needs n ≥ 1 and batch_size ≥ 1, got {n} and {batch_size}")
    parts = [
        model.sample(min(batch_size, n - start), steps, generator)
        for start in range(0, n, batch_size)
    ]
    batch = Batch.cat(parts)
    terminals = batch.terminals.bool().cpu().numpy()
    actions = batch.actions.cpu().numpy()
    extra: dict[str, Any] = {}
    if action_bounds is not None:
        low, high = action_bounds
        outside = ((actions < low) | (actions > high)).any(axis=1)
        extra["actions_clipped"] = float(outside.mean())
        actions = np.clip(actions, low, high)
    return Transitions(
        observations=batch.observations.cpu().numpy(),
        actions=actions,
        rewards=batch.rewards.cpu().numpy(),
        next_observations=batch.next_observations.cpu().numpy(),
        terminals=terminals,
        timeouts=~terminals,
        env_id=env_id,
        metadata={"kind": "synther", **(metadata or {}), **extra},
    )


def terminal_classifier(
    data: Transitions, steps: int, seed: int, device: torch.device
) -> RewardTerminalModel:
    """A classifier of ``data``'s terminal flags from (s, a, s′): the terminal head of
    :class:`adept.world_models.model.RewardTerminalModel` trained ``steps`` Adam steps on its binary
    cross-entropy (batch 256). A pure function of its inputs: its own batches and a forked,
    seeded torch RNG."""
    with torch.random.fork_rng(devices=cuda_indices(device)):
        torch.manual_seed(seed)
        model = RewardTerminalModel(data.obs_dim, data.act_dim, data.stats()).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
        sampler = ReplayBuffer.from_transitions(data, device=device, seed=seed)
        for _ in range(steps):
            b = sampler.sample(256)
            _, loss = model.loss(
                b.observations, b.actions, b.next_observations, b.rewards, b.terminals
            )
            optimizer.zero_grad(set_to_none=True)
            loss.mean().backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def relabel_terminals(
    synthetic: Transitions, classifier: RewardTerminalModel, device: torch.device
) -> Transitions:
    """``synthetic`` with its terminal flags (and so its timeouts: one-step episodes) from
    ``classifier``; the share of flags it changed is recorded as ``terminals_relabelled``."""
    flags = []
    for start in range(0, len(synthetic), 65_536):
        obs, act, next_obs = (
            torch.as_tensor(x[start : start + 65_536], device=device)
            for x in (synthetic.observations, synthetic.actions, synthetic.next_observations)
        )
        _, logit = classifier(obs, act, next_obs)
        flags.append((logit > 0).cpu().numpy())
    terminals = np.concatenate(flags)
    changed = float((terminals != synthetic.terminals).mean())
    return synthetic.replace(
        terminals=terminals,
        timeouts=~terminals,
        metadata={**synthetic.metadata, "terminals_relabelled": changed},
    )


def synthesize(
    data: Transitions,
    generator: SynthERGenerator,
    sampling: SynthERSampling,
    model_state: dict[str, torch.Tensor],
    seed: int,
    device: torch.device,
) -> Transitions:
    """The synthetic dataset of a trained generator (``model_state``: :func:`train_generator`'s
    ``model``): a pure function of :func:`samples_key`'s inputs (a generator of its own, seeded
    from ``seed``'s sampling stream); the caller's torch RNG is left as it was, so a run that
    finds the samples in the cache goes on exactly as one that made them."""
    with torch.random.fork_rng(devices=cuda_indices(device)):  # the init draws are overwritten
        model = build_model(data, generator).to(device)
    model.load_state_dict(model_state)
    rng = torch.Generator(device=device)
    rng.manual_seed(SAMPLING.mixed(seed))
    synthetic = upsample(
        model,
        sampling.num_samples,
        sampling.sample_batch,
        sampling.sample_steps,
        rng,
        env_id=data.env_id,
        metadata={"source_dataset": data.source or "", "source_fingerprint": data.fingerprint()},
        action_bounds=(data.actions.min(0), data.actions.max(0)) if sampling.clip_actions else None,
    )
    if sampling.terminals == "generated":
        return synthetic
    classifier_seed = CLASSIFIER.mixed(seed)
    classifier = terminal_classifier(data, sampling.terminal_steps, classifier_seed, device)
    return relabel_terminals(synthetic, classifier, device)


class SynthERMethod(Method):
    """SynthER+X: the agent trains on an upsampled synthetic dataset (mixed with real data at
    ``real_ratio``). Set-up trains the generator and samples the dataset once, both cached."""

    name = "synther"
    options = "synther"
    options_type = SynthERConfig
    label = "SynthER"
    presets = PRESETS

    def __init__(
        self,
        data: Transitions,
        buffer: ReplayBuffer,
        batch_size: int,
        config: SynthERConfig,
        seed: int = 0,
        num_steps: int | None = None,
    ):
        super().__init__(data, buffer, batch_size)
        check_config(config, data)
        self.config = config
        self.seed = seed
        self.device = buffer.device
        self.generator_seed = seed if config.generator_seed is None else config.generator_seed
        self.n_real = round(batch_size * config.real_ratio)
        self.kept: dict[str, Any] | None = (
            None  # the trained generator, kept only without the cache
        )
        self.synthetic: ReplayBuffer | None = None
        self.recorded: dict[str, float] = {}  # what sampling recorded: shares clipped, relabelled

    @staticmethod
    def check(config: Any, data: Transitions) -> None:
        check_config(config, data)

    def setup(self, agent: Agent) -> dict[str, float]:
        metrics = self._load_synthetic()
        assert self.synthetic is not None
        s = self.synthetic
        metrics["synther/num_samples"] = float(len(s))
        metrics["synther/terminal_fraction"] = float(s.terminals[: len(s)].mean())
        metrics["synther/reward_mean"] = float(s.rewards[: len(s)].mean())
        metrics.update(self.recorded)
        return metrics

    def _load_synthetic(self, kept: dict[str, Any] | None = None) -> dict[str, float]:
        """Train (or load) the generator and sample (or load) the synthetic data into
        :attr:`synthetic`; returns the generator's last training metrics."""
        c, data, device, seed = self.config, self.data, self.device, self.generator_seed
        generator, sampling = c.generator(len(data)), c.sampling()
        key = generator_key(data, generator, seed, device) if c.cache else {}  # hashes the data
        trained, self.kept = cached_or_kept(
            "synther",
            lambda: key,
            lambda: train_generator(data, generator, seed, device),
            c.cache,
            kept,
        )

        def synthetic_data() -> Transitions:
            return synthesize(data, generator, sampling, trained["model"], seed, device)

        if c.cache:

            def write(path: Path) -> None:
                save_hdf5(synthetic_data(), path)

            path = cached_file("synther-samples", samples_key(key, sampling), ".hdf5", write)
            synthetic = load_hdf5(path)
        else:
            synthetic = synthetic_data()
        self.synthetic = ReplayBuffer.from_transitions(
            synthetic, self.device, seed=SYNTHETIC_ROWS.offset(self.seed)
        )
        self.recorded = {
            f"synther/{name}": float(synthetic.metadata[name])
            for name in ("actions_clipped", "terminals_relabelled")
            if name in synthetic.metadata
        }
        return dict(trained["metrics"])

    def sample(self, step: int) -> Batch:
        assert self.synthetic is not None, "setup() or load_state_dict() first"
        return mixed_sample(self.buffer, self.synthetic, self.batch_size, self.n_real)

    def state_dict(self) -> dict[str, Any]:
        assert self.synthetic is not None
        state = {**super().state_dict(), "synthetic": self.synthetic.state_dict()}
        if self.kept is not None:
            state["generator"] = self.kept
        return state

    def load_state_dict(self, state: dict[str, Any], agent: Agent) -> None:
        super().load_state_dict(state, agent)
        self._load_synthetic(state.get("generator"))
        assert self.synthetic is not None
        self.synthetic.load_state_dict(state["synthetic"])
