"""Make D4RL-protocol datasets on the Gymnasium v5 MuJoCo envs (docs/datasets.md).

Every kind is a *recipe*: a function from a :class:`MakeRequest` to the recorded transitions
plus metadata (and, for learned behaviour policies, their weights). Recipes share
:func:`collect`, which rolls a behaviour policy in the env with the D4RL episode cap and records
exact per-step log-probabilities. Adding a kind means adding one recipe to :data:`RECIPES`.

Kinds: ``random`` (uniform actions); ``medium``, ``medium-replay``, ``expert`` and
``medium-expert`` from one cached online-SAC run per env and seed
(:mod:`adept.datasets.online_sac`).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from adept import __version__
from adept.base.atomic import discard_temporaries, exclusive_lock
from adept.base.errors import AdeptError
from adept.data.hdf5 import check_writable, save_hdf5
from adept.data.transitions import Transitions
from adept.envs import ENV_IDS, MAX_EPISODE_STEPS, make_env

if TYPE_CHECKING:  # adept.datasets.online_sac imports the agents, which import this package
    from adept.datasets.online_sac import OnlineSACConfig


class BehaviorPolicy(Protocol):
    """Acts on one observation; returns the action and its exact log-probability log β(a|s)."""

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, float]: ...


P = TypeVar("P", bound=BehaviorPolicy)


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
    """What to make: environment, protocol kind, size, seed and (learned kinds) SAC budget."""

    env_id: str
    kind: str
    num_steps: int | None = None
    """Transitions to record; None: the default (1M). Fixed by the SAC run for medium-replay."""
    seed: int = 0
    progress: bool = True
    sac_steps: int | None = None
    """SAC budget of the learned kinds; None: the default
    (adept.datasets.online_sac.DEFAULT_SAC_STEPS)."""
    sac_config: OnlineSACConfig | None = None
    """The online SAC run's settings; None: the defaults."""

    @property
    def steps(self) -> int:
        return DEFAULT_NUM_STEPS if self.num_steps is None else self.num_steps


@dataclass
class Made:
    """A recipe's result: the data, extra metadata, and the behaviour policy's weights if any."""

    data: Transitions
    metadata: dict[str, Any] = field(default_factory=dict)
    behavior_policy: dict[str, np.ndarray] = field(default_factory=dict)


#: Random streams of the recording recipes, so that no two kinds of one seed share draws (the
#: online SAC run of a seed uses ``SeedSequence(seed)`` itself, whose warm-up is uniform too).
_STREAM = {"medium": 1, "expert": 2, "random": 3}

#: Revision of each recipe's draws: bumped when a recipe records different data for the same
#: seed, so that cached files made by an older revision are remade (see ``recipe_revision``).
#: random 2: its own stream (revision 1 shared the SAC run's warm-up draws).
RECIPE_REVISION = {"random": 2, "medium": 1, "medium-replay": 1, "expert": 1, "medium-expert": 1}


def recipe_revision(metadata: dict[str, Any]) -> int:
    """The recipe revision a file was made by (files from before revisions were recorded: 1)."""
    return int(metadata.get("recipe_revision", 1))


def _streams(seed: int, kind: str) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
    """(env seed, action seed) sequences of a recording."""
    env_seed, action_seed = np.random.SeedSequence([seed, _STREAM[kind]]).spawn(2)
    return env_seed, action_seed


def _recording(
    request: MakeRequest, kind: str, make_policy: Callable[[Any, np.random.SeedSequence], P]
) -> tuple[Transitions, P]:
    """``request.steps`` transitions of the behaviour policy ``make_policy(env, policy_seed)``
    builds, in a fresh env, from the kind's own random stream."""
    env_seed, policy_seed = _streams(request.seed, kind)
    env = make_env(request.env_id, disable_env_checker=True).unwrapped
    try:
        policy = make_policy(env, policy_seed)
        data = collect(
            env,
            policy,
            request.steps,
            seed=int(env_seed.generate_state(1)[0]),
            progress=request.progress,
            desc=f"{request.env_id} {kind}",
        )
    finally:
        env.close()
    return data, policy


def make_random(request: MakeRequest) -> Made:
    """D4RL ``random``: uniform actions in the action box, episodes capped at 1000 steps."""

    def uniform(env: Any, seed: np.random.SeedSequence) -> UniformPolicy:
        assert isinstance(env.action_space, gym.spaces.Box)
        return UniformPolicy(env.action_space, np.random.default_rng(seed))

    data, policy = _recording(request, "random", uniform)
    return Made(data, {"behavior": "uniform", "behavior_log_prob": policy.log_prob})


class ActorPolicy:
    """A stochastic SAC actor on one observation at a time, with the exact log-density of the
    action it returns (see :meth:`adept.nets.TanhGaussianActor.sample_with_log_prob`)."""

    def __init__(self, actor: Any, generator: torch.Generator):
        self.actor = actor
        self.generator = generator

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, float]:
        obs_t = torch.as_tensor(obs, dtype=torch.float32)[None]
        action, log_prob = self.actor.sample_with_log_prob(obs_t, self.generator)
        return action[0].numpy(), float(log_prob[0])


def _sac_run(request: MakeRequest) -> Any:
    from adept.datasets.online_sac import DEFAULT_SAC_STEPS, OnlineSACConfig, SACRun

    budget = DEFAULT_SAC_STEPS if request.sac_steps is None else request.sac_steps
    config = request.sac_config or OnlineSACConfig()
    return SACRun(request.env_id, request.seed, budget, config, progress=request.progress)


def _record(snapshot: Any, request: MakeRequest, kind: str) -> Transitions:
    """``request.steps`` transitions of the snapshot's stochastic policy, on the CPU."""

    def actor(env: Any, seed: np.random.SeedSequence) -> ActorPolicy:
        generator = torch.Generator().manual_seed(int(seed.generate_state(1)[0]))
        return ActorPolicy(snapshot.actor("cpu"), generator)

    return _recording(request, kind, actor)[0]


def _sac_metadata(
    snapshot: Any, run: Any, prefix: str = "", with_target: bool = False
) -> dict[str, Any]:
    """The SAC run's facts for a snapshot; ``with_target`` adds the medium stop's target and
    whether it was reached (for data from the medium stop)."""
    meta = {
        "sac_steps": snapshot.step,
        "sac_budget": run.budget,
        "sac_eval_return": snapshot.eval_return,
        "sac_wall_time_s": round(snapshot.wall_time, 1),
        "sac_compute": "; ".join(snapshot.compute) or "unknown",
    }
    if with_target and snapshot.target_return is not None:
        meta["target_return"] = snapshot.target_return
        meta["reached_target"] = bool(snapshot.reached_target)
    return {f"{prefix}{k}": v for k, v in meta.items()}


def _policy_metadata(snapshot: Any) -> dict[str, Any]:
    return {
        "behavior": "sac",
        "behavior_policy_class": "TanhGaussianActor",
        "behavior_policy_hidden": snapshot.sac.hidden,
        "behavior_policy_depth": snapshot.sac.depth,
    }


def make_medium(request: MakeRequest) -> Made:
    """D4RL ``medium``: the SAC run's policy at the medium stop, recorded stochastically."""
    run = _sac_run(request)
    snapshot = run.medium()
    data = _record(snapshot, request, "medium")
    meta = {**_policy_metadata(snapshot), **_sac_metadata(snapshot, run, with_target=True)}
    return Made(data, meta, snapshot.weights())


def make_medium_replay(request: MakeRequest) -> Made:
    """D4RL ``medium-replay``: every transition of the SAC run up to the medium stop, with the
    log-probability of each action under the policy that took it."""
    if request.num_steps is not None:
        raise AdeptError(
            "medium-replay's size is the SAC run's length up to the medium stop; drop "
            "--num-steps (cap the run with --sac-steps instead)"
        )
    run = _sac_run(request)
    snapshot = run.medium()
    assert snapshot.replay is not None
    meta = {
        "behavior": "sac-replay",
        "warmup_steps": run.config.start_steps,
        **_sac_metadata(snapshot, run, with_target=True),
    }
    return Made(snapshot.replay, meta)


def make_expert(request: MakeRequest) -> Made:
    """D4RL ``expert``: the SAC run's policy at the end of its budget, recorded stochastically."""
    run = _sac_run(request)
    snapshot = run.expert()
    data = _record(snapshot, request, "expert")
    return Made(
        data, {**_policy_metadata(snapshot), **_sac_metadata(snapshot, run)}, snapshot.weights()
    )


def make_medium_expert(request: MakeRequest) -> Made:
    """D4RL ``medium-expert``: the ``medium`` data followed by the ``expert`` data (each
    ``num_steps`` long, recorded exactly as those kinds record them)."""
    run = _sac_run(request)
    medium, expert = run.medium(), run.expert()
    data = Transitions.concatenate(
        [_record(medium, request, "medium"), _record(expert, request, "expert")]
    )
    meta = {
        **_policy_metadata(expert),
        "behavior": "sac-medium+sac-expert",
        **_sac_metadata(medium, run, "medium_", with_target=True),
        **_sac_metadata(expert, run, "expert_"),
        "sac_steps": expert.step,
    }
    weights = {
        **{f"medium/{k}": v for k, v in medium.weights().items()},
        **{f"expert/{k}": v for k, v in expert.weights().items()},
    }
    return Made(data, meta, weights)


#: Protocol kinds that can be made, by name.
RECIPES: dict[str, Callable[[MakeRequest], Made]] = {
    "random": make_random,
    "medium": make_medium,
    "medium-replay": make_medium_replay,
    "expert": make_expert,
    "medium-expert": make_medium_expert,
}
LEARNED_KINDS = ("medium", "medium-replay", "expert", "medium-expert")

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
    num_steps: int | None = None,
    seed: int = DEFAULT_SEED,
    progress: bool = True,
    sac_steps: int | None = None,
    sac_config: OnlineSACConfig | None = None,
    reuse: Callable[[], bool] | None = None,
) -> Path:
    """Make project dataset ``name`` (e.g. ``hopper-random``) and write it to ``out`` atomically.

    Two processes making one ``out`` take turns (a lock beside it, ``.<file name>.lock``); the
    one that waited keeps the file its turn found when ``reuse()`` says it will do (the cache's
    check), and makes it again otherwise.

    ``num_steps``: transitions to record (None: 1M; medium-replay's size is its SAC run's).
    ``sac_steps``: SAC budget of the learned kinds (None: 1M; ``medium`` stops earlier at its
    target, and says in its metadata when the budget ran out first). ``sac_config``: the online
    SAC run's settings (None: :class:`adept.datasets.online_sac.OnlineSACConfig` defaults).
    """
    env_id, kind = parse_name(name)
    if num_steps is not None and num_steps < 1:
        raise AdeptError(f"--num-steps must be positive, got {num_steps}")
    if seed < 0:
        raise AdeptError(f"--seed must be a non-negative integer, got {seed}")
    if kind not in LEARNED_KINDS and (sac_steps is not None or sac_config is not None):
        raise AdeptError(f"{kind} data has no SAC run; drop --sac-steps and --sac-run.*")
    if sac_steps is not None and sac_steps < 1:
        raise AdeptError(f"--sac-steps must be positive, got {sac_steps}")
    out = check_writable(out)
    with exclusive_lock(out.parent / f".{out.name}.lock", "dataset folder"):
        discard_temporaries(out.parent, out)  # a killed maker's half-written file
        if reuse is not None and reuse():
            return out
        request = MakeRequest(env_id, kind, num_steps, seed, progress, sac_steps, sac_config)
        return _make(name, out, request)


def _make(name: str, out: Path, request: MakeRequest) -> Path:
    env_id, kind = request.env_id, request.kind
    made = RECIPES[kind](request)
    metadata = {
        "name": name,
        "env_id": env_id,
        "kind": kind,
        "seed": request.seed,
        "num_steps": len(made.data),
        "max_episode_steps": MAX_EPISODE_STEPS,
        "protocol": "d4rl",
        "recipe_revision": RECIPE_REVISION[kind],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **_versions(),
        **made.metadata,
    }
    data = made.data.replace(env_id=env_id, metadata=metadata, source=str(out))
    return save_hdf5(data, out, behavior_policy=made.behavior_policy)
