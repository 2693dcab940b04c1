"""The one training loop, shared by every agent and every synthetic-data method.

:func:`fit` is the loop itself: an explicit ``for step in range(...)`` that asks the method for
a batch, updates the agent, lets the method do its own work (rollouts, world-model updates), and
yields ``(step, metrics)``. :func:`train` drives it for a run: evaluation, logging, checkpoints,
resume and the summary. Methods plug in through :class:`adept.methods.Method`; they never copy
the loop.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from adept import divergence
from adept.agents import (
    AGENT_CONFIGS,
    AGENTS,
    Agent,
    AgentSpec,
    BCConfig,
    IQLConfig,
    SACConfig,
    TD3BCConfig,
)
from adept.data.buffer import ReplayBuffer, resolve_device
from adept.data.registry import dataset_label, load_dataset
from adept.data.transitions import Transitions
from adept.envs import evaluate, reference_returns
from adept.errors import AdeptError
from adept.methods import (
    DyDiffConfig,
    Method,
    ModelBasedConfig,
    PGDConfig,
    SynthERConfig,
    check_method,
    make_method,
    method_options,
)
from adept.precision import Precision, autocast
from adept.rng import rng_state, seed_everything, set_rng_state
from adept.runs import (
    DIVERGENCE,
    MetricsLog,
    RunDir,
    atomic_write_json,
    load_run_checkpoint,
    read_json,
)


@dataclass(frozen=True)
class TrainConfig:
    """Offline training of one agent (optionally with a synthetic-data method) on one dataset."""

    dataset: str = "hopper-random"
    """A .hdf5 path, minari:<dataset-id>, or a project name such as hopper-random."""
    agent: Literal["iql", "sac", "td3bc", "bc"] = "iql"
    """The offline RL agent."""
    method: Literal["none", "diffusion", "adept", "synther", "pgd", "dydiff"] = "none"
    """'none': the dataset alone (X); 'diffusion': Diff+X (world model trained once, rollouts of
    the current policy); 'adept': ADEPT+X (rollouts and importance-sampled world-model updates);
    'synther': SynthER+X (an upsampled synthetic dataset from a diffusion model of transitions);
    'pgd': PGD+X (trajectory segments generated with the current policy's guidance);
    'dydiff': DyDiff+X (policy rollouts refined by a trajectory diffusion model)."""
    num_steps: int = 100_000
    """Gradient steps of the agent (the 'cpu' budget; the paper's is 1M)."""
    seed: int = 0
    """Seed of networks, sampling and evaluation episodes."""
    run_dir: Path | None = None
    """Run directory; default runs/<dataset>-<agent>-<method>-seed<seed>."""
    env_id: str | None = None
    """Gymnasium env id, when the dataset does not name one."""
    batch_size: int = 256
    """Agent batch size."""
    eval_every: int = 5000
    """Evaluate every N steps (and at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic actor, fresh env seeds each time)."""
    log_every: int = 1000
    """Average training metrics over N steps and log them."""
    checkpoint_every: int = 10_000
    """Save a resumable checkpoint every N steps (and at the end)."""
    on_divergence: Literal["stop", "rollback"] = "stop"
    """When a loss, weight or generated batch turns NaN/inf (checked at every log and
    checkpoint step): stop with the last good checkpoint kept, or roll back to it with the
    failing component's learning rates scaled by --divergence-lr-factor. Either way the
    failing step's diagnostics go to run_dir/divergence.json."""
    divergence_lr_factor: float = 0.5
    """Learning-rate factor of a rollback."""
    max_rollbacks: int = 3
    """Rollbacks allowed in a run before it stops."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device; auto picks CUDA when available."""
    precision: Precision = "auto"
    """Matrix products of the agent's update and of the method's models (training, sampling,
    re-fits): fp32, or bf16 autocast (weights, optimizer state and evaluation stay fp32);
    auto: the device's default (adept.precision.AUTO). Measured so far: bf16 speeds the agents'
    updates up on CPU, but the diffusion world model's pre-training diverges under it (held-out
    loss 1.9e6 vs 0.015, true one-step error 114 vs 1.15 on halfcheetah-random): do not use it
    with --method adept|diffusion yet."""
    tensorboard: bool = False
    """Also log to TensorBoard (run_dir/tb; needs the tensorboard extra)."""
    wandb: bool = False
    """Also log to Weights & Biases (mode from WANDB_MODE; needs the wandb extra)."""
    progress: bool = True
    """Show a progress bar."""
    iql: IQLConfig = field(default_factory=IQLConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    td3bc: TD3BCConfig = field(default_factory=TD3BCConfig)
    bc: BCConfig = field(default_factory=BCConfig)
    adept: ModelBasedConfig = field(default_factory=ModelBasedConfig)
    """World model and schedule of --method diffusion|adept."""
    synther: SynthERConfig = field(default_factory=SynthERConfig)
    """Generator, upsampling and data mix of --method synther."""
    pgd: PGDConfig = field(default_factory=PGDConfig)
    """Segment model, policy guidance, regeneration and data mix of --method pgd."""
    dydiff: DyDiffConfig = field(default_factory=DyDiffConfig)
    """Trajectory and one-step models, policy injection, filter and data mix of --method dydiff."""

    def resolved_run_dir(self) -> Path:
        if self.run_dir is not None:
            return self.run_dir
        name = dataset_label(self.dataset)
        return Path("runs") / f"{name}-{self.agent}-{self.method}-seed{self.seed}"

    def validate(self) -> None:
        for name in (
            "num_steps",
            "batch_size",
            "eval_every",
            "eval_episodes",
            "log_every",
            "checkpoint_every",
        ):
            if getattr(self, name) < 1:
                raise AdeptError(
                    f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}"
                )
        if not 0.0 < self.divergence_lr_factor < 1.0:
            raise AdeptError(
                f"--divergence-lr-factor must be in (0, 1), got {self.divergence_lr_factor}"
            )
        if self.max_rollbacks < 0:
            raise AdeptError(f"--max-rollbacks must be 0 or more, got {self.max_rollbacks}")
        if self.tensorboard:
            _optional("torch.utils.tensorboard", "tensorboard")
        if self.wandb:
            _optional("wandb", "wandb")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise AdeptError(
                "--device cuda was asked for but no CUDA device is visible; use --device auto"
            )


#: Config fields that may differ when a run is resumed (they do not change its results).
RESUMABLE_FIELDS = (
    "device",
    "on_divergence",
    "divergence_lr_factor",
    "max_rollbacks",
    "progress",
    "tensorboard",
    "wandb",
    "run_dir",
    "adept.cache",
    "synther.cache",
    "pgd.cache",
    "dydiff.cache",
)


def fit(
    agent: Agent, method: Method, start: int, num_steps: int
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """The training loop: yields ``(steps done, metrics)`` after each agent update."""
    for step in range(start, num_steps):
        batch = method.sample(step)
        metrics = agent.update(batch)
        metrics.update(method.after_update(step, agent))
        yield step + 1, metrics


def _in_context(
    steps: Iterator[tuple[int, dict[str, torch.Tensor]]],
    context: Callable[[], AbstractContextManager[object]],
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """``steps``, each one computed inside a fresh ``context()`` (the precision's autocast);
    what the caller does between them (evaluation, logging, checkpoints) runs outside it."""
    while True:
        with context():
            item = next(steps, None)
        if item is None:
            return
        yield item


class _Averager:
    """Running sums of metric tensors; turned into floats only when logged (no per-step sync)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: Mapping[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            if key in self.sums:
                self.sums[key] = self.sums[key] + value
                self.counts[key] += 1
            else:
                self.sums[key] = value.detach().clone()
                self.counts[key] = 1

    def pop(self) -> dict[str, float]:
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums, self.counts = dict(state["sums"]), dict(state["counts"])


def make_agent(config: TrainConfig, spec: AgentSpec) -> Agent:
    return AGENTS[config.agent](spec, getattr(config, config.agent))


def _optional(module: str, extra: str) -> Any:
    """Import an optional logger's package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AdeptError(
            f"--{extra} needs the {extra} package; pip install 'adept-rl[{extra}]'"
        ) from exc


class _Loggers:
    """CSV always; TensorBoard and W&B when asked for."""

    def __init__(
        self,
        config: TrainConfig,
        run: RunDir,
        resume_step: int | None,
        saved: Mapping[str, Any] | None = None,
    ):
        self.csv = MetricsLog(run.path / "metrics.csv", resume_step, saved)
        self.tb: Any = None
        self.wandb: Any = None
        if config.tensorboard:
            tensorboard = _optional("torch.utils.tensorboard", "tensorboard")
            self.tb = tensorboard.SummaryWriter(str(run.path / "tb"), purge_step=resume_step)
        if config.wandb:
            self.wandb = _optional("wandb", "wandb").init(
                project="adept",
                name=run.path.name,
                dir=str(run.path),
                config=run.config,
                id=run.path.name.replace("/", "_"),
                resume="allow",
            )

    def write(self, step: int, wall_time: float, metrics: Mapping[str, float]) -> None:
        self.csv.write(step, wall_time, metrics)
        if self.tb is not None:
            for key, value in metrics.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(dict(metrics), step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def summarize_run(rows: list[dict[str, Any]], steps: int, wall_time: float) -> dict[str, Any]:
    evals = [r for r in rows if r.get("eval/normalized_score") not in (None, "")]
    if not evals:
        raise AdeptError("the run logged no evaluation; nothing to summarize")
    scores = [float(r["eval/normalized_score"]) for r in evals]
    return {
        "normalized_score_last": scores[-1],
        "normalized_score_best": max(scores),
        "return_last": float(evals[-1]["eval/return"]),
        "steps": steps,
        "wall_time": round(wall_time, 3),
    }


def train(config: TrainConfig) -> dict[str, Any]:
    """Train (or resume, or report a finished run) and return the run's summary. The run
    directory is locked while this runs: a second process on it is refused."""
    config.validate()
    data = load_dataset(config.dataset, env_id=config.env_id, progress=config.progress)
    if data.env_id is None:
        raise AdeptError(f"dataset {config.dataset} names no env; pass --env-id (e.g. Hopper-v5)")
    check_method(config, data)  # before the run directory is written
    with RunDir(config.resolved_run_dir(), config, ignore=RESUMABLE_FIELDS) as run:
        return _train_in(run, config, data, data.env_id)


def _train_in(run: RunDir, config: TrainConfig, data: Transitions, env_id: str) -> dict[str, Any]:
    device = resolve_device(config.device)

    seed_everything(config.seed)
    spec = AgentSpec.from_data(data, config.num_steps, device)
    agent = make_agent(config, spec)
    buffer = ReplayBuffer.from_transitions(data, device=device, seed=config.seed)
    method = make_method(
        config.method,
        data,
        buffer,
        config.batch_size,
        method_options(config.method, config),
        config.seed,
        config.num_steps,
    )
    averager = _Averager()
    ref_min, ref_max = reference_returns(env_id, data.metadata)
    meta = {
        "env_id": env_id,
        "obs_dim": data.obs_dim,
        "act_dim": data.act_dim,
        "ref_min_score": ref_min,
        "ref_max_score": ref_max,
    }

    amp = autocast(config.precision, device)

    def restore(state: dict[str, Any]) -> None:
        agent.load_state_dict(state["agent"])
        with amp():  # a method may fetch its cached models, keyed by the precision
            method.load_state_dict(state["method"], agent)
        averager.load_state_dict(state["averager"])
        set_rng_state(state["rng"])

    guard = _Guard(config, run)
    start, elapsed_before, saved_metrics = 0, 0.0, None
    if run.resumed and run.has_checkpoint():
        # loaded on the CPU: RNG states must be CPU tensors; modules and buffers move the rest
        state = run.load_checkpoint(map_location="cpu")
        restore(state)
        guard.load_state_dict(state.get("divergence", {}))  # a rollback keeps its own count
        start, elapsed_before = int(state["step"]), float(state["wall_time"])
        saved_metrics = state.get("metrics")
    loggers = _Loggers(config, run, start if start > 0 else None, saved_metrics)
    if start >= config.num_steps and run.is_finished():
        loggers.close()
        return run.read_summary()

    def checkpoint(step: int, wall_time: float) -> None:
        run.save_checkpoint(
            {
                "step": step,
                "wall_time": wall_time,
                "agent": agent.state_dict(),
                "method": method.state_dict(),
                "averager": averager.state_dict(),
                "rng": rng_state(),
                "meta": meta,
                "metrics": loggers.csv.state_dict(),
                "divergence": guard.state_dict(),
            }
        )

    t0 = time.perf_counter() - elapsed_before
    if start == 0:
        with amp():
            setup_metrics = method.setup(agent)
        if setup_metrics:
            loggers.write(0, time.perf_counter() - t0, setup_metrics)
        if config.on_divergence == "rollback":
            checkpoint(0, time.perf_counter() - t0)  # what a divergence before step 1 rolls back to

    bar = tqdm(
        total=config.num_steps,
        initial=start,
        desc=f"{config.agent}",
        disable=not config.progress,
        unit="step",
    )
    last_eval: float | None = None
    try:
        while start < config.num_steps:
            for step, metrics in _in_context(fit(agent, method, start, config.num_steps), amp):
                averager.add(metrics)
                done = step == config.num_steps
                row: dict[str, float] = {}
                if step % config.log_every == 0 or done:
                    row.update(averager.pop())
                saving = step % config.checkpoint_every == 0 or done
                evaluating = step % config.eval_every == 0 or done
                if row or saving or evaluating:
                    found = divergence.find(step, row, agent, method)
                    if found is not None:
                        # back to the last good checkpoint, learning rates scaled (or raise)
                        state = guard.handle(found, row, agent, method, restore)
                        loggers.csv.restore(state["metrics"])
                        start = int(state["step"])
                        bar.reset(total=config.num_steps)
                        bar.update(start)
                        break
                if row and guard.rollbacks:
                    row["divergence/rollbacks"] = float(guard.rollbacks)
                if evaluating:
                    result = evaluate(
                        lambda obs: agent.act(obs, deterministic=True),
                        env_id,
                        config.eval_episodes,
                        seed=(config.seed, step),
                        metadata=data.metadata,
                    )
                    last_eval = result.mean_normalized_score
                    row["eval/normalized_score"] = last_eval
                    row["eval/normalized_score_std"] = float(result.normalized_scores.std())
                    row["eval/return"] = result.mean_return
                if row:
                    loggers.write(step, time.perf_counter() - t0, row)
                    shown = {
                        k.split("/")[-1]: f"{v:.3g}"
                        for k, v in row.items()
                        if k.startswith("train/")
                    }
                    if last_eval is not None:
                        shown["score"] = f"{last_eval:.1f}"
                    bar.set_postfix(shown, refresh=False)
                if saving:
                    checkpoint(step, time.perf_counter() - t0)
                bar.update(1)
            else:
                start = config.num_steps
    finally:
        bar.close()
        loggers.close()

    summary = summarize_run(loggers.csv.rows, config.num_steps, time.perf_counter() - t0)
    run.write_summary(summary)
    return summary


class _Guard:
    """What the loop does when :func:`adept.divergence.find` finds a divergence: stop, or roll
    back to the last good checkpoint with the failing component's learning rates scaled."""

    def __init__(self, config: TrainConfig, run: RunDir):
        self.config = config
        self.run = run
        self.events: list[dict[str, Any]] = []

    @property
    def rollbacks(self) -> int:
        return len(self.events)

    def state_dict(self) -> dict[str, Any]:
        return {"events": [dict(event) for event in self.events]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.events = [dict(event) for event in state.get("events", [])]

    def handle(
        self,
        found: divergence.Divergence,
        row: Mapping[str, float],
        agent: Agent,
        method: Method,
        restore: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Roll back: ``restore`` the last good checkpoint, scale the failing component's
        learning rates, record the event and return that checkpoint; or raise
        :class:`Diverged` (after writing divergence.json) when the run must stop."""
        c = self.config
        good = self.run.load_checkpoint() if self.run.has_checkpoint() else None

        def parts() -> Iterable[Any]:  # asked again after the restore: a method may rebuild
            if found.component == "agent":
                return agent.components().values()
            return method.optimizers()

        reason = ""
        if c.on_divergence == "stop":
            reason = "--on-divergence stop"
        elif good is None:
            reason = "no checkpoint to roll back to"
        elif self.rollbacks >= c.max_rollbacks:
            reason = f"{self.rollbacks} rollbacks already (--max-rollbacks)"
        elif not any(isinstance(part, torch.optim.Optimizer) for part in parts()):
            reason = f"the {found.component} ({found.name}) has no learning rate to lower"
        else:
            restore(good)
            factor = c.divergence_lr_factor
            self.events.append(
                {"step": found.step, "component": found.component, "lr_factor": factor}
            )
            divergence.scale_learning_rates(parts(), factor)
            self._write(found, row, good, "rolled back")
            return good
        self._write(found, row, good, "stopped")
        kept = "no checkpoint yet" if good is None else f"checkpoint of step {good['step']} kept"
        raise Diverged(
            f"the run diverged at step {found.step}: {found.describe()}; stopped ({reason}), "
            f"{kept}, details in {self.run.path / DIVERGENCE}; repeat the command with "
            "--on-divergence rollback, or lower the learning rate in a new --run-dir"
        )

    def _write(
        self,
        found: divergence.Divergence,
        row: Mapping[str, float],
        good: Mapping[str, Any] | None,
        action: str,
    ) -> None:
        """divergence.json: the failing step's diagnostics (every divergence of the run)."""
        path = self.run.path / DIVERGENCE
        previous = read_json(path, f"delete {path}") if path.exists() else {"events": []}
        event = {
            "step": found.step,
            "component": found.component,
            "name": found.name,
            "nonfinite": found.places,
            "metrics": {k: v if math.isfinite(v) else repr(v) for k, v in row.items()},
            "last_good_checkpoint": None if good is None else int(good["step"]),
            "action": action,
        }
        atomic_write_json(path, {"events": [*previous["events"], event]})


class Diverged(AdeptError):
    """The run stopped on a non-finite loss, weight or generated batch (see divergence.json)."""


def load_agent(run_dir: Path, device: str | torch.device = "auto") -> tuple[Agent, dict[str, Any]]:
    """The agent of a run directory's latest checkpoint, and the checkpoint's metadata."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise AdeptError(
            f"{run_dir} is not a run directory (no config.json); "
            "give the --run-dir of a training run"
        )
    stored = read_json(config_path, "restore it, or train the run again")["config"]
    state = load_run_checkpoint(run_dir / "checkpoint.pt", map_location="cpu")
    meta = state["meta"]
    name = stored["agent"]
    spec = AgentSpec(
        obs_dim=meta["obs_dim"],
        act_dim=meta["act_dim"],
        obs_mean=torch.zeros(meta["obs_dim"]),
        obs_std=torch.ones(meta["obs_dim"]),
        return_range=1.0,
        num_steps=stored["num_steps"],
        device=resolve_device(device),
    )
    agent = AGENTS[name](spec, AGENT_CONFIGS[name](**stored[name]))
    agent.load_state_dict(state["agent"])
    return agent, {**meta, "step": state["step"]}
