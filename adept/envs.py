"""Environments, reference returns, normalized scores and policy evaluation.

Normalized score (D4RL): ``100 · (R − R_random) / (R_expert − R_random)``. The reference returns
below are D4RL's for the v2 envs; the v5 envs used here differ slightly in dynamics, so scores are
comparable across runs of this project, not to published D4RL tables. A dataset whose metadata
carries ``ref_min_score``/``ref_max_score`` overrides them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from adept.base.errors import AdeptError

#: D4RL reference returns (random policy, expert policy) per environment family.
REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
}

#: Project dataset names (``hopper-random``) use these short env names.
ENV_IDS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v5",
    "hopper": "Hopper-v5",
    "walker2d": "Walker2d-v5",
}

#: Episode cap of the D4RL protocol (and of the v5 MuJoCo envs).
MAX_EPISODE_STEPS = 1000

Policy = Callable[[np.ndarray], np.ndarray]
"""Maps a batch of observations ``[batch, obs_dim]`` to actions ``[batch, act_dim]``."""


#: MuJoCo warnings about Gymnasium's own model files, shown once per process instead of at every
#: env construction (HalfCheetah-v5's XML sets a deprecated compiler attribute: evaluating it
#: would print the warning for every episode).
ONCE_PER_PROCESS = ("compiler attribute 'settotalmass' is deprecated",)


_shown: set[str] = set()


def _mujoco_warning(message: str) -> None:
    known = next((m for m in ONCE_PER_PROCESS if message.startswith(m)), None)
    if known is not None:
        if known in _shown:
            return
        _shown.add(known)
    print(f"WARNING: {message}", file=sys.stderr)  # MuJoCo's own format


if mujoco.get_mju_user_warning() is None:  # leave a handler the user installed alone
    mujoco.set_mju_user_warning(_mujoco_warning)


def _family(env_id: str) -> str:
    return env_id.split("-v")[0].split("/")[-1]


def reference_returns(
    env_id: str, metadata: Mapping[str, Any] | None = None
) -> tuple[float, float]:
    """(random, expert) reference returns: the dataset's metadata if it has them, else D4RL's."""
    meta = metadata or {}
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        return float(meta["ref_min_score"]), float(meta["ref_max_score"])
    family = _family(env_id)
    if family not in REFERENCE_RETURNS:
        raise AdeptError(
            f"no reference returns for env {env_id}; supported: {', '.join(REFERENCE_RETURNS)} "
            "(or store ref_min_score/ref_max_score in the dataset metadata)"
        )
    return REFERENCE_RETURNS[family]


def normalized_score(
    returns: np.ndarray | float, env_id: str, metadata: Mapping[str, Any] | None = None
) -> np.ndarray:
    """D4RL normalized score of undiscounted returns, in percent."""
    low, high = reference_returns(env_id, metadata)
    return 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """A Gymnasium env by id, with a clear error for unknown ids or a missing MuJoCo."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise AdeptError(
            f"cannot make env {env_id} ({exc}); use e.g. {', '.join(ENV_IDS.values())}"
        ) from exc
    except ImportError as exc:
        raise AdeptError(
            f"env {env_id} needs MuJoCo ({exc}); pip install 'gymnasium[mujoco]'"
        ) from exc


@dataclass(frozen=True)
class EnvSpaces:
    """What a dataset is checked against: a flat Box env's dims, action box and step limit."""

    obs_dim: int
    act_dim: int
    act_low: np.ndarray
    act_high: np.ndarray
    max_episode_steps: int | None
    """None: the env sets no limit."""


@functools.cache
def env_spaces(env_id: str) -> EnvSpaces:
    """The :class:`EnvSpaces` of ``env_id`` (made once per process)."""
    env = make_env(env_id)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gym.spaces.Box) or not isinstance(act_space, gym.spaces.Box):
            raise AdeptError(f"env {env_id} must have Box observation and action spaces")
        return EnvSpaces(
            obs_dim=int(np.prod(obs_space.shape)),
            act_dim=int(np.prod(act_space.shape)),
            act_low=act_space.low.reshape(-1).copy(),
            act_high=act_space.high.reshape(-1).copy(),
            max_episode_steps=env.spec.max_episode_steps if env.spec is not None else None,
        )
    finally:
        env.close()


def env_dims(env_id: str) -> tuple[int, int]:
    """(obs_dim, act_dim) of a flat Box env."""
    spaces = env_spaces(env_id)
    return spaces.obs_dim, spaces.act_dim


def check_dims(env_id: str, obs_dim: int, act_dim: int, source: str) -> None:
    """Raise if a dataset's dims do not match its env (e.g. a hopper file named as walker2d)."""
    env_obs, env_act = env_dims(env_id)
    if (obs_dim, act_dim) != (env_obs, env_act):
        raise AdeptError(
            f"dataset {source} has obs/action dims {obs_dim}/{act_dim} but {env_id} has "
            f"{env_obs}/{env_act}; pick the matching env (--env-id) or dataset"
        )


@dataclass(frozen=True)
class EvalResult:
    """Undiscounted returns and normalized scores of evaluation episodes, float64 ``[episodes]``."""

    returns: np.ndarray
    normalized_scores: np.ndarray
    lengths: np.ndarray

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def mean_normalized_score(self) -> float:
        return float(self.normalized_scores.mean())


def evaluate(
    policy: Policy,
    env_id: str,
    episodes: int,
    seed: int | Sequence[int],
    metadata: Mapping[str, Any] | None = None,
    max_episode_steps: int = MAX_EPISODE_STEPS,
) -> EvalResult:
    """Run ``episodes`` episodes of ``policy`` and score them.

    Episodes run side by side in lock step so the policy sees one batch per step. Each episode's
    env seed is drawn from ``seed`` (an int or a tuple such as ``(run_seed, step)``) through a
    SeedSequence, so different seeds give fresh start states; pass a new one for every evaluation.
    """
    if episodes < 1:
        raise AdeptError(f"evaluation needs at least one episode, got {episodes}")
    entropy = [seed] if isinstance(seed, int) else list(seed)
    seeds = np.random.SeedSequence(entropy).generate_state(episodes)
    envs = [make_env(env_id, max_episode_steps=max_episode_steps) for _ in range(episodes)]
    try:
        obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds, strict=True)])
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        active = np.ones(episodes, dtype=bool)
        while active.any():
            idx = np.flatnonzero(active)
            actions = np.asarray(policy(obs[idx].astype(np.float32)))
            for row, i in enumerate(idx):
                next_obs, reward, terminated, truncated, _ = envs[i].step(actions[row])
                returns[i] += float(reward)
                lengths[i] += 1
                obs[i] = next_obs
                if terminated or truncated:
                    active[i] = False
    finally:
        for env in envs:
            env.close()
    return EvalResult(returns, normalized_score(returns, env_id, metadata), lengths)
