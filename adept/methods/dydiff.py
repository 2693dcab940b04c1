"""DyDiff (Zhao et al. 2024, "Long-Horizon Rollout via Dynamics Diffusion"): a diffusion model of
state sequences given their actions, used as a long-horizon dynamics model for the current
policy's rollouts.

``--method dydiff`` (:class:`DyDiffMethod`, options ``--dydiff.*``, :class:`DyDiffConfig`). Set-up
trains two models on the dataset, both cached and shared by every run with the same inputs:

- the trajectory model p_θ(s_{0:L−1} | s_0, a_{0:L−1}) (:class:`StateTrajectoryModel`): EDM over
  standardized state sequences of L rows, each row conditioned on its action and on the first
  state (condition channels beside the states, :class:`adept.diffusion.unet.TemporalUNet`'s
  ``cond_channels``); the first row of a sample is set to s_0 exactly;
- a one-step model with reward and terminal heads: the library's world model with the MOPO-style
  Gaussian ensemble (7 members, 5 elites, 4 × 200, as DyDiff's), pre-trained by
  :func:`adept.world_models.pretrain.pretrain` (its terminal head is the learnt terminal
  classifier: no env's termination rule is hand-coded).

Every ``rollout_every`` agent steps (policy injection, DyDiff's Algorithm 1):

    s_0 ~ D;  a_t = π(s_t), s_{t+1} = one-step model(s_t, a_t)   (the initial trajectory)
    repeat iterative_times:
        s′ ~ p_θ(· | s_0, a);  s ← (s′ + s) / 2;  a ← π(s)         (the policy re-queried)
    r_t, done_t from the reward and terminal heads on (s_t, a_t, s_{t+1}); cut at the first done

As DyDiff's code, π is the actor's mode (a stochastic actor's mean; TD3+BC's μ(s) without its
exploration noise) and the one-step model steps to the mean of an elite picked at random
(``deterministic``); without it both are sampled, π's noise drawn once per trajectory and step
and kept through the re-queries. A trajectory's predicted return sums r̂ up to its first
predicted terminal (DyDiff's sums every row; past a terminal the rows are the absorbing
padding the models learnt, not experience).

then the ``keep_fraction`` of trajectories with the highest predicted return ('top', DyDiff's
hardmax filter; or drawn with probabilities softmax(z / T) of the standardized returns, its
softmax filter) go into the model buffer, and agent batches mix ``real_ratio`` real rows
(DyDiff: 0.6) with model rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from adept.nets import Normalizer
from adept.store.artifacts import cached_or_kept
from adept.world_models.model import WorldModel, WorldModelConfig
from adept.world_models.pretrain import PretrainConfig, pretrain, pretrain_key
from adept.world_models.rollout import StateBounds
from adept.world_models.true_dynamics import TrueDynamics, segment_error

IMAGINED_ROWS = Stream("the kept imagined rows the agent samples", 3)


class StateTrajectoryModel(nn.Module):
    """p_θ(s_{0:L−1} | s_0, a_{0:L−1}): EDM over standardized state sequences; each row's
    condition is [a_t, standardized s_0]."""

    def __init__(
        self, data: Transitions, size: UNetSize, edm: EDMConfig | None = None, groups: int = 8
    ):
        super().__init__()
        self.obs_dim, self.act_dim = data.obs_dim, data.act_dim
        obs = torch.as_tensor(data.observations, dtype=torch.float32)
        std = obs.std(0)
        std[std < 1e-6] = 1.0
        self.normalizer = Normalizer(obs.mean(0), std, eps=1e-6)
        net = TemporalUNet(
            self.obs_dim,
            size.dim,
            size.mults,
            size.kernel,
            groups,
            cond_channels=self.act_dim + self.obs_dim,
        )
        self.edm = EDM(net, edm or EDMConfig())

    def condition(self, first: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[B, L, act + obs]``: each row's action beside the standardized first state."""
        start = self.normalizer(first)[:, None].expand(-1, actions.shape[1], -1)
        return torch.cat([actions, start], dim=-1)

    def loss(self, rows: SegmentRows, generator: torch.Generator | None = None) -> torch.Tensor:
        """EDM's weighted denoising loss of the states given s_0 and the actions, ``[B]``."""
        obs = rows.observations
        cond = self.condition(obs[:, 0], rows.actions)
        return self.edm.loss(self.normalizer(obs), cond, generator)

    @torch.no_grad()
    def sample(
        self,
        first: torch.Tensor,
        actions: torch.Tensor,
        steps: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """States ``[B, L, obs]`` for first states ``[B, obs]`` and actions ``[B, L, act]``,
        by the Heun sampler over ``steps`` noise levels; row 0 is ``first`` itself."""
        b, length = actions.shape[:2]
        x = self.edm.sample(
            (b, length, self.obs_dim),
            steps,
            cond=self.condition(first, actions),
            generator=generator,
        )
        states = x * self.normalizer.std + self.normalizer.mean
        states[:, 0] = first
        return states


DYDIFF_EDM = EDMConfig(s_churn=60.0, s_tmin=0.37, s_tmax=52.24, s_noise=1.002)
"""DyDiff's sampler churn (its released configuration; σ_d = 1 for standardized states)."""


@dataclass(frozen=True)
class DyDiffConfig:
    """DyDiff: the trajectory model, the one-step model, policy injection and the data mix. The
    defaults are the 'cpu' preset; ``--dydiff.preset paper|cpu|smoke`` starts from another
    (:data:`PRESETS`), and the options given with it change that preset's values."""

    network: Literal["smoke", "cpu", "dydiff", "pgd"] = "cpu"
    """The temporal U-Net's size (:data:`adept.diffusion.unet.UNET_SIZES`; DyDiff: 'dydiff',
    128 × (1, 4, 8))."""
    length: int = 32
    """Rows of a trajectory, for training and rollouts: length − 1 imagined transitions
    (DyDiff: 100)."""
    train_steps: int = 8_000
    """Trajectory-model training steps (DyDiff: 3,000 kimg at batch 8, 375k)."""
    batch_size: int = 32
    """Trajectories per training batch (DyDiff: 8)."""
    ema_decay: float = 0.999
    """Decay per step of the EMA of the weights that is sampled from (DyDiff: EDM's half-life
    of 500 kimg, ≈ 0.99999 per step)."""
    sample_steps: int = 16
    """Noise levels of the Heun sampler (DyDiff: 34)."""
    rollout_batch: int = 512
    """Start states per rollout round (DyDiff: 2048)."""
    rollout_every: int = 2_500
    """Agent steps between rollout rounds (DyDiff: 500)."""
    model_buffer_size: int = 100_000
    """Capacity of the model buffer, a ring: old rounds are overwritten (DyDiff: 2M)."""
    train_stride: int = 1
    """Rows between the starts of training trajectories of one episode (DyDiff: 1)."""
    lr: float = 2e-3
    """AdamW's learning rate of the trajectory model, warmed up then annealed by a cosine."""
    warmup_fraction: float = 0.1
    """Share of training steps warming the learning rate up from lr/10."""
    iterative_times: int = 2
    """Rounds of (diffuse the states given the actions, average with the previous states,
    re-query the policy) after the one-step model's initial trajectory (DyDiff: 2); 0 keeps the
    one-step model's trajectory."""
    deterministic: bool = True
    """Imagine with π's mode (a stochastic actor's mean, TD3+BC's μ(s) without exploration
    noise) and the one-step model's mean (of an elite drawn at random), as DyDiff's code does;
    False samples both (π's noise of each step kept through the re-queries)."""
    keep: Literal["top", "softmax"] = "top"
    """Which trajectories enter the model buffer: the ``keep_fraction`` with the highest
    predicted return (DyDiff's hardmax filter), or that many drawn without replacement with
    probabilities softmax(z / ``temperature``) of the standardized returns z (its softmax)."""
    keep_fraction: float = 0.6
    """Share of each round's trajectories kept (DyDiff: 0.6)."""
    temperature: float = 0.05
    """Temperature of the softmax filter."""
    real_ratio: float = 0.6
    """Share of real transitions in each agent batch (DyDiff: 0.6); the rest from the model
    buffer."""
    clip_generated: bool = True
    """Clip generated states and rewards to the dataset's per-dimension range (as ADEPT's
    rollouts)."""
    one_step: WorldModelConfig = field(
        default_factory=lambda: WorldModelConfig(dynamics="ensemble", hidden=200, depth=4, lr=1e-3)
    )
    """The one-step model of the initial trajectory, whose reward and terminal heads label the
    rollouts (DyDiff: a 7-member Gaussian ensemble of 4 × 200, 5 elites)."""
    one_step_steps: int = 20_000
    """Most pre-training steps of the one-step model (held-out early stopping ends it sooner)."""
    one_step_patience: int = 5
    """Stop the one-step model's pre-training after this many held-out checks (every 1000
    steps) without a 1 % improvement (MBPO's rule)."""
    generator_seed: int | None = None
    """Seed of both models' training; None: the run's seed. A fixed seed makes a grid's runs
    share the models of a dataset (rollouts still follow each run's own policy)."""
    true_error_samples: int = 256
    """At each round, replay up to this many kept trajectories' actions in MuJoCo from their
    first state and log the open-loop state error (dydiff/true_error_*; 0: never). A diagnostic
    only: it draws no randomness."""
    edm: EDMConfig = field(default_factory=lambda: DYDIFF_EDM)
    """EDM's noise levels and sampler churn (DyDiff's churn 60 inside σ ∈ [0.37, 52.2])."""
    cache: bool = True
    """Keep both trained models in the artifact cache ($ADEPT_DATA_DIR/artifacts/dydiff and
    .../pretrain), shared by every run with the same inputs; without it their weights go into
    the run's checkpoints. Results are identical either way."""

    def training(self) -> SegmentTraining:
        """How the trajectory model is trained."""
        return SegmentTraining(
            size=UNET_SIZES[self.network],
            length=self.length,
            stride=self.train_stride,
            steps=self.train_steps,
            batch_size=self.batch_size,
            lr=self.lr,
            warmup_fraction=self.warmup_fraction,
            ema_decay=self.ema_decay,
            edm=self.edm,
        )

    def one_step_pretrain(self) -> PretrainConfig:
        """The one-step model's pre-training (of the world model ``one_step``), as
        :func:`adept.world_models.pretrain.pretrain` takes it: the world-model benchmark's
        'ensemble' recipe — no EMA, held-out checks every 1000 steps; no β fit, which DyDiff does
        not use."""
        return PretrainConfig(
            steps=self.one_step_steps,
            ema_decay=0.0,
            select_every=1000,
            select_patience=self.one_step_patience,
            behavior_steps=0,
        )


PRESETS: dict[str, DyDiffConfig] = {
    # DyDiff's released configuration, a GPU's work
    "paper": DyDiffConfig(
        network="dydiff",
        length=100,
        train_steps=375_000,
        batch_size=8,
        ema_decay=0.99999,
        sample_steps=34,
        rollout_batch=2048,
        rollout_every=500,
        model_buffer_size=2_000_000,
    ),
    # ≈ 10 minutes of training on 2 CPU cores (docs/results/trajectories.md measures it)
    "cpu": DyDiffConfig(),
    # seconds: tests and quick checks, not a model worth training an agent on
    "smoke": DyDiffConfig(
        network="smoke",
        length=8,
        train_steps=100,
        batch_size=16,
        ema_decay=0.9,
        sample_steps=4,
        rollout_batch=32,
        rollout_every=5,
        model_buffer_size=10_000,
    ),
}
"""``--dydiff.preset``: named starting points for the options (the trajectory model's size,
training and rollout budget)."""


def check_config(config: DyDiffConfig, data: Transitions) -> None:
    """Refuse settings that cannot work, before anything is written."""
    c = config
    positive = (
        "train_steps", "batch_size", "rollout_batch", "rollout_every", "model_buffer_size"
    )  # fmt: skip
    check_generator_sizes("dydiff", c.real_ratio, c, positive)
    if not 0.0 <= c.keep_fraction <= 1.0:
        raise AdeptError(f"--dydiff.keep-fraction must be in [0, 1], got {c.keep_fraction}")
    if c.length < 2:
        raise AdeptError(f"--dydiff.length must be at least 2 rows, got {c.length}")
    if c.iterative_times < 0:
        raise AdeptError(f"--dydiff.iterative-times must be ≥ 0, got {c.iterative_times}")
    if not c.temperature > 0:
        raise AdeptError(f"--dydiff.temperature must be positive, got {c.temperature}")
    if c.one_step.dynamics != "ensemble" and c.one_step.dynamics != "gaussian":
        raise AdeptError(
            "--dydiff.one-step.dynamics must be 'ensemble' or 'gaussian' (a one-step model "
            f"that is quick to roll out), got {c.one_step.dynamics!r}"
        )
    if not c.lr > 0 or c.train_stride < 1 or c.one_step_steps < 1:
        raise AdeptError(
            "--dydiff.lr, --dydiff.train-stride and --dydiff.one-step-steps must be positive"
        )
    check_segments_fit(data, c.training(), "--dydiff.length")


DYDIFF_REVISION = 1
"""Revision of the trajectory model's training recipe, part of its cache key."""


def model_key(
    data: Transitions, config: DyDiffConfig, seed: int, device: torch.device
) -> dict[str, Any]:
    """Everything the trained trajectory model depends on, and nothing else."""
    return training_key(data, config.training(), DYDIFF_REVISION, seed, device)


def train_trajectory_model(
    data: Transitions,
    training: SegmentTraining,
    seed: int,
    device: torch.device,
    snapshots: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Train a :class:`StateTrajectoryModel` on ``data``'s padded trajectories
    (:func:`adept.methods.trajectories.train_on_segments`)."""
    return train_on_segments(
        StateTrajectoryModel, data, training, seed, device, snapshots, prefix="dydiff"
    )


@dataclass(frozen=True)
class Imagined:
    """One round's trajectories ``[N, L, ...]``: states, the actions taken in them, and the
    reward and terminal labels of each row's transition (the last row has none)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    """``[N, L − 1]``"""
    terminals: torch.Tensor
    """``[N, L − 1]`` bool"""
    change: torch.Tensor
    """Mean ‖s_new − s_old‖ per state of the last injection round (0 without one), ``[]``."""

    def alive(self) -> torch.Tensor:
        """``[N, L − 1]`` bool: transitions up to and including each trajectory's first
        terminal."""
        t = self.terminals.long()
        return (torch.cumsum(t, dim=1) - t) == 0

    def returns(self) -> torch.Tensor:
        """Predicted return of each trajectory up to its first terminal, ``[N]``."""
        return (self.rewards * self.alive()).sum(dim=1)


@torch.no_grad()
def imagine(
    agent: Agent,
    trajectory_model: StateTrajectoryModel | None,
    world_model: WorldModel,
    starts: torch.Tensor,
    length: int,
    sample_steps: int,
    iterative_times: int,
    bounds: StateBounds | None = None,
    deterministic: bool = True,
) -> Imagined:
    """DyDiff's policy injection from ``starts`` ``[N, obs]`` (module docstring). With
    ``iterative_times = 0`` (no ``trajectory_model`` needed) it is the plain rollout of the
    policy in ``world_model``, labelled the same way. ``deterministic``: π's mode and the
    one-step model's mean (DyDiff's); else both sampled."""
    if iterative_times and trajectory_model is None:
        raise ValueError("policy injection needs a trajectory model")

    def clip(states: torch.Tensor) -> torch.Tensor:
        if bounds is None:
            return states
        return torch.maximum(torch.minimum(states, bounds.state_high), bounds.state_low)

    # Sampled: one standard normal draw per trajectory and step, kept through every re-query:
    # the re-queried a_t is π's action at the moved s_t with the same noise (the same action
    # where s_t did not move), not a fresh sample that the states, made under the old action,
    # no longer follow.
    dynamics = world_model.dynamics
    step = dynamics.mode if deterministic else dynamics.sample
    noise = None
    if not deterministic:
        noise = torch.randn(starts.shape[0], length, dynamics.act_dim, device=starts.device)

    def act(states: torch.Tensor, steps: int | slice) -> torch.Tensor:
        """π at ``states`` of the step(s) ``steps``: ``[N, obs]`` or ``[N, T, obs]``."""
        z = None if noise is None else noise[:, steps].flatten(0, -2)
        flat = agent.sample_actions(states.flatten(0, -2), deterministic, noise=z)
        return flat.view(*states.shape[:-1], -1)

    rows, taken = [starts], []
    for t in range(length - 1):
        taken.append(act(rows[-1], t))  # made the next states
        rows.append(clip(step(rows[-1], taken[-1])))
    taken.append(act(rows[-1], length - 1))
    states = torch.stack(rows, dim=1)  # [N, L, obs]
    actions = torch.stack(taken, dim=1)  # [N, L, act]
    change = torch.zeros((), device=starts.device)
    for _ in range(iterative_times):
        assert trajectory_model is not None
        diffused = clip(trajectory_model.sample(starts, actions, sample_steps))
        averaged = (diffused + states) / 2
        change = (averaged - states)[:, 1:].norm(dim=-1).mean()
        states = averaged
        actions = act(states, slice(None))
    obs, nxt = states[:, :-1].flatten(0, 1), states[:, 1:].flatten(0, 1)
    reward, logit = world_model.reward(obs, actions[:, :-1].flatten(0, 1), nxt)
    if bounds is not None:
        reward = reward.clamp(bounds.reward_low, bounds.reward_high)
    n, steps = starts.shape[0], length - 1
    return Imagined(states, actions, reward.view(n, steps), (logit > 0).view(n, steps), change)


def select(
    returns: torch.Tensor,
    fraction: float,
    rule: Literal["top", "softmax"],
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices of the kept trajectories: the ``round(fraction · N)`` highest ``returns``
    ('top'), or that many drawn without replacement with probabilities softmax(z / T) of the
    standardized returns ('softmax'); sorted."""
    n = len(returns)
    k = min(max(round(fraction * n), 0), n)
    if k == 0:
        return torch.zeros(0, dtype=torch.long, device=returns.device)
    if rule == "top":
        kept = torch.topk(returns, k).indices
    else:
        z = (returns - returns.mean()) / returns.std().clamp_min(1e-8) if n > 1 else returns * 0
        # draws without replacement ∝ softmax(z / T) by the Gumbel-top-k trick, in log space:
        # exp(z / T) underflows at DyDiff's T = 0.05 where the top-k of these keys does not
        u = torch.rand(n, generator=generator, device=returns.device).clamp(1e-12, 1 - 1e-7)
        kept = torch.topk(z / temperature - torch.log(-torch.log(u)), k).indices
    return torch.sort(kept).values


def to_batch(imagined: Imagined, kept: torch.Tensor) -> Batch:
    """The kept trajectories' transitions up to each first terminal; a trajectory that
    reaches its last row alive ends there in a timeout."""
    alive = imagined.alive()[kept]  # [K, L − 1]
    obs = imagined.observations[kept]
    terminals = imagined.terminals[kept]
    last = torch.zeros_like(alive)
    last[:, -1] = True
    timeouts = last & ~terminals
    return Batch(
        observations=obs[:, :-1][alive],
        actions=imagined.actions[kept][:, :-1][alive],
        rewards=imagined.rewards[kept][alive],
        next_observations=obs[:, 1:][alive],
        terminals=terminals[alive].float(),
        timeouts=timeouts[alive].float(),
    )


class DyDiffMethod(Method):
    """DyDiff+X: every ``rollout_every`` steps the current policy is rolled out by policy
    injection into the trajectory model, and the best share of the trajectories is added to the
    model buffer, mixed with real data at ``real_ratio``."""

    name = "dydiff"
    options = "dydiff"
    options_type = DyDiffConfig
    label = "DyDiff"
    presets = PRESETS

    def __init__(
        self,
        data: Transitions,
        buffer: ReplayBuffer,
        batch_size: int,
        config: DyDiffConfig,
        seed: int = 0,
        num_steps: int | None = None,
    ):
        super().__init__(data, buffer, batch_size)
        check_config(config, data)
        self.config = config
        self.seed = seed
        self.num_steps = num_steps
        self.device = buffer.device
        self.model_seed = seed if config.generator_seed is None else config.generator_seed
        self.n_real = round(batch_size * config.real_ratio)
        self.trajectory_model = build_model(StateTrajectoryModel, data, config.training())
        self.trajectory_model.to(self.device)
        self.trajectory_model.requires_grad_(False)
        self.world_model = WorldModel(data, config.one_step, self.device)
        self.world_model.requires_grad_(False)
        self.bounds = StateBounds(data.stats(), self.device) if config.clip_generated else None
        self.model_buffer = ReplayBuffer(
            self.config.model_buffer_size,
            data.obs_dim,
            data.act_dim,
            device=self.device,
            seed=IMAGINED_ROWS.offset(seed),
        )
        self.start_states = torch.as_tensor(data.observations, device=self.device)
        self.kept: dict[str, Any] | None = None  # both trained models, kept only without the cache
        self.truth = TrueDynamics.of(data.env_id, wanted=bool(config.true_error_samples))

    @staticmethod
    def check(config: Any, data: Transitions) -> None:
        check_config(config, data)

    def _load_models(self, kept: dict[str, Any] | None = None) -> dict[str, float]:
        """Train (or load) the trajectory model and the one-step model; returns their last
        training metrics."""
        c, data, device, seed = self.config, self.data, self.device, self.model_seed
        one_step = c.one_step_pretrain()
        kept = kept or {}
        trajectories, kept_trajectories = cached_or_kept(
            "dydiff",
            lambda: model_key(data, c, seed, device),
            lambda: train_trajectory_model(data, c.training(), seed, device),
            c.cache,
            kept.get("trajectory_model"),
        )
        world, kept_world = cached_or_kept(
            "pretrain",
            lambda: pretrain_key(data, c.one_step, one_step, seed, device),
            lambda: pretrain(data, c.one_step, one_step, seed, device),
            c.cache,
            kept.get("one_step"),
        )
        if not c.cache:
            self.kept = {"trajectory_model": kept_trajectories, "one_step": kept_world}
        metrics: dict[str, float] = {}
        self.trajectory_model.load_state_dict(trajectories["model"])
        self.world_model.load_state_dict_all(world["world_model"])
        metrics.update(trajectories["metrics"])
        metrics.update(
            {f"one_step/{k.split('/')[-1]}": float(v) for k, v in world["metrics"].items()}
        )
        return metrics

    def setup(self, agent: Agent) -> dict[str, float]:
        metrics = self._load_models()
        metrics.update({k: float(v) for k, v in self._rollouts(agent).items()})
        return metrics

    def _rollouts(self, agent: Agent) -> dict[str, torch.Tensor]:
        """One round: imagine from dataset states, keep the best share, add it to the buffer."""
        c = self.config
        pick = torch.randint(len(self.start_states), (c.rollout_batch,), device=self.device)
        imagined = imagine(
            agent,
            self.trajectory_model,
            self.world_model,
            self.start_states[pick],
            c.length,
            c.sample_steps,
            c.iterative_times,
            self.bounds,
            c.deterministic,
        )
        returns = imagined.returns()
        kept = select(returns, c.keep_fraction, c.keep, c.temperature)
        batch = to_batch(imagined, kept)
        if len(batch):
            self.model_buffer.add(batch)
        lengths = imagined.alive().sum(dim=1).float()
        metrics = {
            "dydiff/return_all": returns.mean(),
            "dydiff/return_kept": returns[kept].mean() if len(kept) else returns.new_zeros(()),
            "dydiff/length": lengths.mean(),
            "dydiff/injection_change": imagined.change,
            "dydiff/buffer_size": torch.tensor(float(len(self.model_buffer))),
        }
        if self.truth is not None and len(kept):
            n = min(c.true_error_samples, len(kept))
            obs = imagined.observations[kept[:n]].cpu().numpy()
            act = imagined.actions[kept[:n]].cpu().numpy()
            along, _ = segment_error(self.truth, obs, act)
            for t in (1, 5, 10):
                if t <= len(along) and np.isfinite(along[t - 1]):
                    metrics[f"dydiff/true_error_{t}"] = torch.tensor(float(along[t - 1]))
        return metrics

    def sample(self, step: int) -> Batch:
        return mixed_sample(self.buffer, self.model_buffer, self.batch_size, self.n_real)

    def after_update(self, step: int, agent: Agent) -> dict[str, torch.Tensor]:
        done = step + 1
        if done % self.config.rollout_every != 0:
            return {}
        if self.num_steps is not None and done >= self.num_steps:
            return {}  # no agent step would train on it
        return self._rollouts(agent)

    def state_dict(self) -> dict[str, Any]:
        state = {
            **super().state_dict(),
            "model_buffer": self.model_buffer.state_dict(include_data=True),
        }
        if self.kept is not None:
            state["models"] = self.kept
        return state

    def load_state_dict(self, state: dict[str, Any], agent: Agent) -> None:
        super().load_state_dict(state, agent)
        self._load_models(state.get("models"))
        self.model_buffer.load_state_dict(state["model_buffer"])
