"""Online SAC: the trainer of the behaviour policies behind the learned-policy datasets.

The D4RL protocol (docs/datasets.md): ``medium`` is a SAC policy stopped when its evaluation return
reaches about 1/3 of the expert reference return, ``medium-replay`` is that run's replay buffer up
to the stop, and ``expert`` is a fully trained SAC policy. Here one SAC run per (env, seed, budget)
serves all of them: it passes the medium stop on its way to the expert budget. The run lives in the
cache:

    <data dir>/sac/<env>-seed<seed>[-sac<budget>][-cfg<hash of a non-default config>]/
        config.json     the run's config (another config in the same folder is refused)
        checkpoint.pt   the latest state: an interrupted run resumes exactly where it stopped
        metrics.csv     evaluation and training returns along the run
        medium.pt       policy and replay buffer at the medium stop (or at the budget, if the
                        target was never reached)
        expert.pt       policy at the end of the budget

Whichever kind is made first trains; the others reuse the run (``medium`` after ``expert`` costs
nothing, ``expert`` after ``medium`` resumes from the medium checkpoint).

The loop is the standard one (SAC paper; CleanRL's ``sac_continuous_action.py`` schedule): uniform
random actions for ``start_steps``, then one env step and one SAC update per step, batches drawn
uniformly from everything seen. Every action's exact log-probability under the policy that took it
is stored with the transition, so ``medium-replay`` knows its (many) behaviour policies exactly.

A run is a function of its seed on one kind of device (CPU and GPU round differently; resume a
run where it started). Concurrent makes of the same run take turns on a lock file in its folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
import torch
from tqdm.auto import tqdm

from adept.agents import SAC, AgentSpec, SACConfig
from adept.base.atomic import exclusive_lock
from adept.base.errors import AdeptError
from adept.base.rng import rng_state, set_rng_state
from adept.data.buffer import Batch, resolve_device
from adept.data.cache import sac_runs_dir
from adept.data.transitions import Transitions
from adept.envs import MAX_EPISODE_STEPS, env_dims, evaluate, make_env, reference_returns
from adept.nets import Normalizer, TanhGaussianActor
from adept.store.runs import MetricsLog, RunDir, load_checkpoint, save_state, to_jsonable

DEFAULT_SAC_STEPS = 1_000_000
"""The SAC budget: the expert policy's training steps (the SAC paper's MuJoCo curves reach
expert level within 1M steps on Hopper, HalfCheetah and Walker2d) and the cap on the search for
the medium stop. At ≈ 165 steps/s on 2 CPU cores, 1M steps take ≈ 1.7 h."""

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


@dataclass(frozen=True)
class OnlineSACConfig:
    """The online SAC run (hyper-parameters of the SAC paper and CleanRL's MuJoCo defaults)."""

    sac: SACConfig = field(default_factory=SACConfig)
    start_steps: int = 5_000
    """Uniform-random steps before the first update (CleanRL: 5k). Their log-probability is
    that of the uniform policy, −|A| log 2."""
    batch_size: int = 256
    """SAC batch size."""
    eval_every: int = 5_000
    """Env steps between evaluations; the medium stop is checked at each."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    eval_deterministic: bool = False
    """Evaluate the policy's mean action instead of the stochastic policy. Off: the stochastic
    policy is what the datasets record, so the stop rule judges the data's own return."""
    medium_fraction: float = 1 / 3
    """The medium stop: the first evaluation whose mean return is at least this fraction of the
    env's expert reference return (D4RL: 'about 1/3 of the expert'); e.g. Hopper 1078,
    HalfCheetah 4045, Walker2d 1531."""
    checkpoint_every: int = 50_000
    """Env steps between checkpoints (a multiple of ``eval_every``); the run also checkpoints
    at every stop. A checkpoint holds the whole replay buffer (≈ 180 MB at 1M HalfCheetah steps)."""

    def tag(self) -> str | None:
        """None for settings that make the default run, else ``cfg<hash>``: names the cached
        runs and datasets made with other settings, so they never mix with the default ones.
        Fields that do not change the run's results (:data:`RESULT_NEUTRAL`) are left out."""
        settings = self._result_settings()
        if settings == OnlineSACConfig()._result_settings():
            return None
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        return f"cfg{digest.hexdigest()[:8]}"

    def _result_settings(self) -> dict[str, Any]:
        return {k: v for k, v in to_jsonable(self).items() if k not in RESULT_NEUTRAL}


#: OnlineSACConfig fields that change when a run checkpoints, not what it computes: a cached run
#: resumes under another value of them.
RESULT_NEUTRAL = ("checkpoint_every",)


def check_config(config: OnlineSACConfig, budget: int, seed: int = 0) -> None:
    c = config
    if seed < 0:
        raise AdeptError(f"--seed must be a non-negative integer, got {seed}")
    if budget < 1:
        raise AdeptError(f"--sac-steps must be positive, got {budget}")
    for name in ("batch_size", "eval_every", "eval_episodes", "checkpoint_every"):
        if getattr(c, name) < 1:
            raise AdeptError(f"online SAC {name} must be positive, got {getattr(c, name)}")
    if c.checkpoint_every % c.eval_every:
        raise AdeptError(
            f"online SAC checkpoint_every ({c.checkpoint_every}) must be a multiple of "
            f"eval_every ({c.eval_every})"
        )
    if not 0.0 < c.medium_fraction <= 1.0:
        raise AdeptError(f"medium_fraction must be in (0, 1], got {c.medium_fraction}")


def _actor(obs_dim: int, act_dim: int, config: SACConfig) -> TanhGaussianActor:
    return TanhGaussianActor(
        obs_dim, act_dim, Normalizer.identity(obs_dim), config.hidden, config.depth
    )


@dataclass
class PolicySnapshot:
    """A policy of the run at one step: its weights, its evaluation, and (at the medium stop)
    the replay buffer up to that step."""

    env_id: str
    step: int
    eval_return: float
    wall_time: float
    """Seconds of SAC training (env steps, updates, evaluations) up to this step."""
    actor_state: dict[str, torch.Tensor]
    sac: SACConfig
    target_return: float | None = None
    reached_target: bool | None = None
    replay: Transitions | None = None
    compute: tuple[str, ...] = ()
    """What computed the run up to this step (:func:`compute_tag` of each process that trained
    it; 'unknown' for a part trained before this was recorded): its data depends on it, as
    matrix products round differently across devices and thread counts."""

    def actor(self, device: str | torch.device = "cpu") -> TanhGaussianActor:
        obs_dim, act_dim = env_dims(self.env_id)
        actor = _actor(obs_dim, act_dim, self.sac)
        actor.load_state_dict(self.actor_state)
        return actor.to(device).eval()

    def weights(self) -> dict[str, np.ndarray]:
        """The actor's parameters and buffers as arrays (stored in dataset metadata)."""
        return {k: v.detach().cpu().numpy() for k, v in self.actor_state.items()}


class OnlineSAC:
    """The env-interaction loop: one env, SAC, and a replay buffer of every step taken.

    Deterministic for a seed: the env, the warm-up actions, the action noise, the batch indices
    and the update's own sampling each draw from a seeded generator, all saved in checkpoints
    (the MuJoCo state is saved in full, solver warm start included, so a resumed run takes the
    same steps bit for bit).
    """

    def __init__(
        self,
        env_id: str,
        seed: int,
        budget: int,
        config: OnlineSACConfig = OnlineSACConfig(),
        device: str | torch.device = "auto",
    ):
        check_config(config, budget, seed)
        self.env_id, self.seed, self.budget, self.config = env_id, seed, budget, config
        self.device = resolve_device(device)
        obs_dim, act_dim = env_dims(env_id)  # refuses non-Box envs
        # the unwrapped MuJoCo env with the episode cap kept here (wrappers cost ~25 % per step)
        self.env: Any = make_env(env_id, disable_env_checker=True).unwrapped
        space = self.env.action_space
        assert isinstance(space, gym.spaces.Box)
        if not (np.all(space.low == -1.0) and np.all(space.high == 1.0)):
            self.env.close()
            raise AdeptError(
                f"online SAC acts in [-1, 1] (tanh actor, uniform warm-up) but {env_id}'s "
                f"actions lie in [{space.low.min()}, {space.high.max()}]; rescale its actions"
            )
        self.act_dim = act_dim
        spec = AgentSpec(
            obs_dim=obs_dim,
            act_dim=act_dim,
            obs_mean=torch.zeros(obs_dim),
            obs_std=torch.ones(obs_dim),
            return_range=1.0,  # unused by SAC
            num_steps=budget,
            device=self.device,
        )
        torch.manual_seed(seed)
        self.agent = SAC(spec, config.sac)  # mean 0, std 1: no normalization online

        def zeros(*shape: int, dtype: Any = np.float32) -> np.ndarray:
            return np.zeros((budget, *shape), dtype=dtype)

        self.replay = {
            "observations": zeros(obs_dim),
            "actions": zeros(act_dim),
            "rewards": zeros(),
            "next_observations": zeros(obs_dim),
            "terminals": zeros(dtype=bool),
            "timeouts": zeros(dtype=bool),
            "action_log_probs": zeros(),
        }
        self.step = 0
        env_seed, np_seed, torch_seed = np.random.SeedSequence(seed).spawn(3)
        self.rng = np.random.default_rng(np_seed)
        self.action_generator = torch.Generator(device=self.device)
        self.action_generator.manual_seed(int(torch_seed.generate_state(1)[0]))
        self.obs, _ = self.env.reset(seed=int(env_seed.generate_state(1)[0]))
        self.episode_step = 0
        self.episode_return = 0.0
        self.finished_returns: list[float] = []
        self.wall_time = 0.0
        self.medium_step: int | None = None
        self.compute = (compute_tag(self.device),)
        self.target_return = config.medium_fraction * reference_returns(env_id)[1]
        self._uniform_log_prob = -act_dim * math.log(2.0)

    # -- one step ------------------------------------------------------------------------------

    def _act(self) -> tuple[np.ndarray, float]:
        if self.step < self.config.start_steps:
            uniform = self.rng.uniform(-1.0, 1.0, self.act_dim).astype(np.float32)
            return uniform, self._uniform_log_prob
        obs = torch.as_tensor(self.obs, dtype=torch.float32, device=self.device)[None]
        action, log_prob = self.agent.actor.sample_with_log_prob(obs, self.action_generator)
        return action[0].cpu().numpy(), float(log_prob[0])

    def _sample(self) -> Batch:
        idx = self.rng.integers(self.step, size=self.config.batch_size)
        return Batch(
            **{
                name: torch.as_tensor(
                    self.replay[name][idx], dtype=torch.float32, device=self.device
                )
                for name in FIELDS
            }
        )

    def env_step(self) -> dict[str, torch.Tensor]:
        """Act, store the transition, and (after the warm-up) update SAC once."""
        action, log_prob = self._act()
        next_obs, reward, terminated, _, _ = self.env.step(action)
        self.episode_step += 1
        self.episode_return += float(reward)
        t = self.step
        r = self.replay
        r["observations"][t] = self.obs
        r["actions"][t] = action
        r["rewards"][t] = reward
        r["next_observations"][t] = next_obs
        r["action_log_probs"][t] = log_prob
        r["terminals"][t] = terminated
        r["timeouts"][t] = not terminated and self.episode_step >= MAX_EPISODE_STEPS
        if r["terminals"][t] or r["timeouts"][t]:
            self.finished_returns.append(self.episode_return)
            self.obs, _ = self.env.reset()
            self.episode_step, self.episode_return = 0, 0.0
        else:
            self.obs = next_obs
        self.step += 1
        if self.step > self.config.start_steps:
            return self.agent.update(self._sample())
        return {}

    def evaluate(self) -> float:
        """Mean return of ``eval_episodes`` episodes; its own RNG, so training is unaffected."""
        c = self.config
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed * 1_000_003 + self.step)
        actor = self.agent.actor

        def policy(obs: np.ndarray) -> np.ndarray:
            obs_t = torch.as_tensor(obs, device=self.device)
            with torch.no_grad():
                if c.eval_deterministic:
                    action = actor.sample(obs_t, deterministic=True)
                else:
                    action = actor.sample_with_log_prob(obs_t, generator)[0]
            return action.cpu().numpy()

        return evaluate(
            policy, self.env_id, c.eval_episodes, seed=(self.seed, self.step)
        ).mean_return

    # -- snapshots and checkpoints --------------------------------------------------------------

    def replay_data(self) -> Transitions:
        """Everything stored so far, as a dataset; the last transition closes its episode as a
        timeout when the run stopped mid-episode (as every dataset's last episode is closed)."""
        n = self.step
        arrays: dict[str, Any] = {name: value[:n].copy() for name, value in self.replay.items()}
        if n and not arrays["terminals"][-1]:
            arrays["timeouts"][-1] = True
        return Transitions(**arrays, env_id=self.env_id)

    def snapshot(self, eval_return: float, with_replay: bool = False) -> PolicySnapshot:
        return PolicySnapshot(
            env_id=self.env_id,
            step=self.step,
            eval_return=eval_return,
            wall_time=self.wall_time,
            actor_state={
                k: v.detach().cpu().clone() for k, v in self.agent.actor.state_dict().items()
            },
            sac=self.config.sac,
            target_return=self.target_return,
            reached_target=eval_return >= self.target_return,
            replay=self.replay_data() if with_replay else None,
            compute=self.compute,
        )

    def _env_state(self) -> dict[str, Any]:
        model, data = self.env.model, self.env.data
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(model, spec))
        mujoco.mj_getState(model, data, physics, spec)
        return {
            "physics": torch.from_numpy(physics),
            "np_random": self.env.np_random.bit_generator.state,
            "obs": torch.from_numpy(np.asarray(self.obs, dtype=np.float64)),
            "episode_step": self.episode_step,
            "episode_return": self.episode_return,
        }

    def _set_env_state(self, state: dict[str, Any]) -> None:
        model, data = self.env.model, self.env.data
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        mujoco.mj_setState(model, data, state["physics"].numpy(), spec)
        mujoco.mj_forward(model, data)
        self.env.np_random.bit_generator.state = state["np_random"]
        self.obs = state["obs"].numpy().copy()
        self.episode_step = int(state["episode_step"])
        self.episode_return = float(state["episode_return"])

    def state_dict(self) -> dict[str, Any]:
        n = self.step
        return {
            "step": n,
            "agent": self.agent.state_dict(),
            "replay": {
                name: torch.from_numpy(value[:n].copy()) for name, value in self.replay.items()
            },
            "rng": self.rng.bit_generator.state,
            "action_generator": self.action_generator.get_state(),
            "torch_rng": rng_state(),
            "env": self._env_state(),
            "finished_returns": list(self.finished_returns),
            "wall_time": self.wall_time,
            "medium_step": self.medium_step,
            "compute": list(self.compute),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["step"])
        self.step = n
        self.agent.load_state_dict(state["agent"])
        for name, value in state["replay"].items():
            self.replay[name][:n] = value.numpy()
        self.rng.bit_generator.state = state["rng"]
        self.action_generator.set_state(state["action_generator"])
        set_rng_state(state["torch_rng"])
        self._set_env_state(state["env"])
        self.finished_returns = list(state["finished_returns"])
        self.wall_time = float(state["wall_time"])
        self.medium_step = state["medium_step"]
        stored = state.get("compute", ["unknown"] if n else [])
        self.compute = tuple(sorted({*stored, *self.compute}))

    def close(self) -> None:
        self.env.close()


class SACRun:
    """One cached online-SAC run (see the module docstring) and the policies it yields.

    ``medium()`` and ``expert()`` return the snapshot from the cache when it is there, and
    otherwise train (resuming from the run's checkpoint) until they can.
    """

    def __init__(
        self,
        env_id: str,
        seed: int = 0,
        budget: int = DEFAULT_SAC_STEPS,
        config: OnlineSACConfig = OnlineSACConfig(),
        root: Path | None = None,
        device: str | torch.device = "auto",
        progress: bool = True,
    ):
        check_config(config, budget, seed)
        self.env_id, self.seed, self.budget, self.config = env_id, seed, budget, config
        self.device, self.progress = device, progress
        family = env_id.split("-")[0].lower()
        suffix = "" if budget == DEFAULT_SAC_STEPS else f"-sac{budget}"
        tag = config.tag()
        suffix += f"-{tag}" if tag else ""
        self.path = (root if root is not None else sac_runs_dir()) / f"{family}-seed{seed}{suffix}"

    @property
    def medium_path(self) -> Path:
        return self.path / "medium.pt"

    @property
    def expert_path(self) -> Path:
        return self.path / "expert.pt"

    def medium(self) -> PolicySnapshot:
        """The policy at the medium stop (or at the budget), with the replay buffer up to it."""
        return self._snapshot(self.medium_path, stop_at_medium=True)

    def expert(self) -> PolicySnapshot:
        """The policy at the end of the budget."""
        return self._snapshot(self.expert_path, stop_at_medium=False)

    def _snapshot(self, path: Path, stop_at_medium: bool) -> PolicySnapshot:
        if not path.exists():
            with self._lock():  # another process may be training this run: wait, then re-check
                if not path.exists():
                    self._train(stop_at_medium)
        if not path.exists():  # the checkpoint is past this point but its snapshot was deleted
            raise AdeptError(
                f"the SAC run in {self.path} is past the point of {path.name} but that file is "
                f"missing; delete {self.path} to train the run again"
            )
        return load_snapshot(path)

    def _lock(self) -> Any:
        return exclusive_lock(self.path / ".lock", "SAC run folder")

    def _train(self, stop_at_medium: bool) -> None:
        run_config = {
            "env_id": self.env_id,
            "seed": self.seed,
            "budget": self.budget,
            "online_sac": self.config,
        }
        with RunDir(
            self.path,
            run_config,
            ignore=tuple(f"online_sac.{name}" for name in RESULT_NEUTRAL),
            hint=f"delete {self.path} to train it anew with this config",
        ) as run_dir:
            trainer = OnlineSAC(self.env_id, self.seed, self.budget, self.config, self.device)
            try:
                saved: dict[str, Any] | None = None
                resume_step: int | None = None
                if run_dir.has_checkpoint():
                    # on the CPU: RNG states must be CPU tensors; modules move their own state
                    state = run_dir.load_checkpoint("cpu")
                    saved = state.pop("metrics", None)
                    trainer.load_state_dict(state)
                    resume_step = trainer.step
                log = MetricsLog(self.path / "metrics.csv", resume_step, saved)
                self._loop(trainer, run_dir, log, stop_at_medium)
            finally:
                trainer.close()

    def _loop(
        self, trainer: OnlineSAC, run_dir: RunDir, log: MetricsLog, stop_at_medium: bool
    ) -> None:
        c = self.config
        name = self.path.name
        with tqdm(
            total=self.budget,
            initial=trainer.step,
            desc=f"SAC {name}",
            unit="step",
            disable=not self.progress,
            mininterval=1.0,
        ) as bar:
            started = time.perf_counter() - trainer.wall_time
            last: dict[str, torch.Tensor] = {}
            while trainer.step < self.budget:
                last = trainer.env_step() or last
                step = trainer.step
                at_end = step == self.budget
                if step % 1000 == 0 or at_end:
                    bar.update(step - bar.n)
                if step % c.eval_every and not at_end:
                    continue
                eval_return = trainer.evaluate()
                trainer.wall_time = time.perf_counter() - started
                recent = trainer.finished_returns[-10:]
                metrics = {
                    "eval/return": eval_return,
                    "train/episode_return": float(np.mean(recent)) if recent else float("nan"),
                    **{k: float(v) for k, v in last.items()},
                }
                log.write(step, trainer.wall_time, metrics)
                bar.set_postfix(eval_return=f"{eval_return:.0f}", refresh=False)
                medium_due = trainer.medium_step is None and (
                    eval_return >= trainer.target_return or at_end
                )
                if medium_due:
                    trainer.medium_step = step
                    save_snapshot(self.medium_path, trainer.snapshot(eval_return, with_replay=True))
                if at_end:
                    save_snapshot(self.expert_path, trainer.snapshot(eval_return))
                if medium_due or at_end or step % c.checkpoint_every == 0:
                    run_dir.save_checkpoint({**trainer.state_dict(), "metrics": log.state_dict()})
                if medium_due and stop_at_medium:
                    return


def compute_tag(device: torch.device) -> str:
    """What computes on ``device`` in this process: 'cpu, 2 threads' or the GPU's name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type}, {torch.get_num_threads()} threads"


def save_snapshot(path: Path, snapshot: PolicySnapshot) -> None:
    state: dict[str, Any] = {
        "env_id": snapshot.env_id,
        "step": snapshot.step,
        "eval_return": snapshot.eval_return,
        "wall_time": snapshot.wall_time,
        "actor": snapshot.actor_state,
        "sac": {"hidden": snapshot.sac.hidden, "depth": snapshot.sac.depth},
        "target_return": snapshot.target_return,
        "reached_target": snapshot.reached_target,
        "compute": list(snapshot.compute),
    }
    if snapshot.replay is not None:
        state["replay"] = {k: torch.from_numpy(v) for k, v in snapshot.replay.arrays().items()}
    save_state(path, state)


def load_snapshot(path: Path) -> PolicySnapshot:
    state = load_checkpoint(path, remedy=f"delete {path.parent} to train the SAC run again")
    replay = None
    if "replay" in state:
        replay = Transitions(
            **{k: v.numpy() for k, v in state["replay"].items()}, env_id=state["env_id"]
        )
    return PolicySnapshot(
        env_id=state["env_id"],
        step=int(state["step"]),
        eval_return=float(state["eval_return"]),
        wall_time=float(state["wall_time"]),
        actor_state=state["actor"],
        sac=SACConfig(hidden=state["sac"]["hidden"], depth=state["sac"]["depth"]),
        target_return=state["target_return"],
        reached_target=state["reached_target"],
        replay=replay,
        compute=tuple(state.get("compute", ["unknown"])),
    )


def load_behavior_actor(path: str | Path, which: str = "") -> TanhGaussianActor:
    """The SAC policy that recorded a ``medium`` or ``expert`` file, rebuilt from the weights
    in its metadata (``which``: 'medium' or 'expert' for a ``medium-expert`` file)."""
    from adept.data.hdf5 import read_behavior_policy, read_metadata

    meta = read_metadata(path)
    weights = read_behavior_policy(path)
    if meta.get("behavior_policy_class") != "TanhGaussianActor" or not weights:
        raise AdeptError(
            f"{path} carries no SAC behaviour policy; only medium, expert and medium-expert "
            "files do"
        )
    halves = sorted({k.split("/")[0] for k in weights if "/" in k} & {"medium", "expert"})
    if halves and which not in halves:
        raise AdeptError(
            f"{path} holds {' and '.join(halves)} policies; pass which='medium' or 'expert'"
        )
    if which and not halves:
        raise AdeptError(f"{path} holds one policy, not halves; drop which='{which}'")
    if which:
        weights = {
            k.removeprefix(f"{which}/"): v for k, v in weights.items() if k.startswith(f"{which}/")
        }
    config = SACConfig(
        hidden=int(meta["behavior_policy_hidden"]), depth=int(meta["behavior_policy_depth"])
    )
    obs_dim, act_dim = env_dims(str(meta["env_id"]))
    actor = _actor(obs_dim, act_dim, config)
    actor.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    return actor.eval()
