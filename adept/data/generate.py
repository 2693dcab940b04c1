"""Make D4RL-protocol datasets on the Gymnasium v5 MuJoCo envs.

Every kind is a *recipe*: a function from a :class:`MakeRequest` to the recorded transitions
plus metadata (and, for learned behaviour policies, their weights). Recipes share
:func:`collect`, which rolls a behaviour policy in the env with the D4RL episode cap and records
exact per-step log-probabilities. Adding a kind (medium, expert, ...) means adding one recipe to
:data:`RECIPES`.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from adept import __version__
from adept.data.hdf5 import check_writable, save_hdf5
from adept.data.transitions import Transitions
from adept.envs import ENV_IDS, MAX_EPISODE_STEPS, make_env
from adept.errors import AdeptError


class BehaviorPolicy(Protocol):
    """Acts on one observation; returns the action and its exact log-probability log β(a|s)."""

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, float]: ...


class UniformPolicy:
    """Uniform actions on the Box ``[low, high]``; log β(a|s) = −Σ log(high − low) (= −|A| log 2).

    Actions are drawn in blocks so the per-step cost is one array read.
    """

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator, block: int = 65536):
        self.low = space.low.astype(np.float64)
        self.high = space.high.astype(np.float64)
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise AdeptError("uniform actions need a bounded action space")
        self.log_prob = float(-np.log(self.high - self.low).sum())
        self.rng = rng
        self.block = block
        self._buffer = np.empty((0, *space.shape), dtype=np.float32)
        self._next = 0

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, float]:
        if self._next == len(self._buffer):
            draws = self.rng.uniform(self.low, self.high, size=(self.block, *self.low.shape))
            self._buffer = draws.astype(np.float32)
            self._next = 0
        action = self._buffer[self._next]
        self._next += 1
        return action, self.log_prob


def collect(
    env: gym.Env,
    policy: BehaviorPolicy,
    num_steps: int,
    seed: int,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    progress: bool = True,
    desc: str = "collect",
) -> Transitions:
    """Record ``num_steps`` transitions of ``policy`` in ``env`` (the unwrapped MuJoCo env).

    Episodes end at true termination (``terminals``) or after ``max_episode_steps`` steps
    (``timeouts``, as in D4RL). The last transition is marked as a timeout when the data ends
    mid-episode, so every episode in the file is closed. ``env`` is reset with ``seed`` once;
    later resets continue its RNG stream, which makes the whole dataset a function of ``seed``.
    """
    obs_dim = int(np.prod(env.observation_space.shape or ()))
    act_dim = int(np.prod(env.action_space.shape or ()))
    observations = np.empty((num_steps, obs_dim), dtype=np.float32)
    next_observations = np.empty((num_steps, obs_dim), dtype=np.float32)
    actions = np.empty((num_steps, act_dim), dtype=np.float32)
    rewards = np.empty(num_steps, dtype=np.float32)
    terminals = np.zeros(num_steps, dtype=bool)
    timeouts = np.zeros(num_steps, dtype=bool)
    log_probs = np.empty(num_steps, dtype=np.float32)

    obs, _ = env.reset(seed=seed)
    episode_step = 0
    report_every = 10_000
    with tqdm(
        total=num_steps, desc=desc, unit="step", disable=not progress, mininterval=1.0
    ) as bar:
        for t in range(num_steps):
            action, log_prob = policy(obs)
            next_obs, reward, terminated, _, _ = env.step(action)
            episode_step += 1
            observations[t] = obs
            actions[t] = action
            rewards[t] = reward
            next_observations[t] = next_obs
            log_probs[t] = log_prob
            if terminated:
                terminals[t] = True
            elif episode_step >= max_episode_steps:
                timeouts[t] = True
            if terminals[t] or timeouts[t]:
                obs, _ = env.reset()
                episode_step = 0
            else:
                obs = next_obs
            if (t + 1) % report_every == 0:
                bar.update(report_every)
        bar.update(num_steps - bar.n)
    if not terminals[-1]:
        timeouts[-1] = True
    return Transitions(
        observations=observations,
        actions=actions,
        rewards=rewards,
        next_observations=next_observations,
        terminals=terminals,
        timeouts=timeouts,
        action_log_probs=log_probs,
    )


@dataclass(frozen=True)
class MakeRequest:
    """What to make: environment, protocol kind, size and seed."""

    env_id: str
    kind: str
    num_steps: int
    seed: int
    progress: bool = True


@dataclass
class Made:
    """A recipe's result: the data, extra metadata, and the behaviour policy's weights if any."""

    data: Transitions
    metadata: dict[str, Any] = field(default_factory=dict)
    behavior_policy: dict[str, np.ndarray] = field(default_factory=dict)


def make_random(request: MakeRequest) -> Made:
    """D4RL ``random``: uniform actions in the action box, episodes capped at 1000 steps."""
    env_seed, action_seed = np.random.SeedSequence(request.seed).spawn(2)
    env = make_env(request.env_id, disable_env_checker=True).unwrapped
    try:
        assert isinstance(env.action_space, gym.spaces.Box)
        policy = UniformPolicy(env.action_space, np.random.default_rng(action_seed))
        data = collect(
            env,
            policy,
            request.num_steps,
            seed=int(env_seed.generate_state(1)[0]),
            progress=request.progress,
            desc=f"{request.env_id} random",
        )
    finally:
        env.close()
    return Made(data, {"behavior": "uniform", "behavior_log_prob": policy.log_prob})


#: Protocol kinds that can be made, by name. Later kinds (medium, expert, ...) slot in here.
RECIPES: dict[str, Callable[[MakeRequest], Made]] = {"random": make_random}

DEFAULT_NUM_STEPS = 1_000_000
DEFAULT_SEED = 0


def dataset_names() -> list[str]:
    """Project dataset names: ``<env>-<kind>`` for every env and every kind with a recipe."""
    return [f"{env}-{kind}" for env in ENV_IDS for kind in RECIPES]


def parse_name(name: str) -> tuple[str, str]:
    """``hopper-medium-replay`` → (``Hopper-v5``, ``medium-replay``), or a clear error."""
    env, _, kind = name.partition("-")
    if env not in ENV_IDS or kind not in RECIPES:
        raise AdeptError(
            f"unknown dataset name '{name}'; valid names: {', '.join(dataset_names())}"
        )
    return ENV_IDS[env], kind


def _versions() -> dict[str, str]:
    out = {"adept_version": __version__}
    for package in ("gymnasium", "mujoco"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[f"{package}_version"] = importlib.metadata.version(package)
    return out


def make_dataset(
    name: str,
    out: str | Path,
    num_steps: int = DEFAULT_NUM_STEPS,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
) -> Path:
    """Make project dataset ``name`` (e.g. ``hopper-random``) and write it to ``out`` atomically."""
    env_id, kind = parse_name(name)
    if num_steps < 1:
        raise AdeptError(f"--num-steps must be positive, got {num_steps}")
    out = check_writable(out)
    made = RECIPES[kind](MakeRequest(env_id, kind, num_steps, seed, progress))
    metadata = {
        "name": name,
        "env_id": env_id,
        "kind": kind,
        "seed": seed,
        "num_steps": num_steps,
        "max_episode_steps": MAX_EPISODE_STEPS,
        "protocol": "d4rl",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **_versions(),
        **made.metadata,
    }
    data = made.data.replace(env_id=env_id, metadata=metadata, source=str(out))
    return save_hdf5(data, out, behavior_policy=made.behavior_policy)
