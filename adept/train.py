"""The one training loop, shared by every agent and every synthetic-data method.

:func:`fit` is the loop itself: an explicit ``for step in range(...)`` that asks the method for
a batch, updates the agent, lets the method do its own work (rollouts, world-model updates), and
yields ``(step, metrics)``. :func:`train` drives it for a run: evaluation, logging, checkpoints,
resume and the summary. Methods plug in through :class:`adept.methods.Method`; they never copy
the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from adept import divergence
from adept.accel.graphs import GraphedPackUpdate, GraphedUpdate
from adept.accel.pack import Pack
from adept.accel.rounds import after_update_pack, packed_path
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
from adept.base import compiling
from adept.base.compiling import Compile
from adept.base.errors import AdeptError, note
from adept.base.precision import FP32, Contexts, Precision
from adept.base.rng import Streams, rng_state, seed_everything, set_rng_state
from adept.data.buffer import ReplayBuffer, resolve_device
from adept.data.transitions import Transitions
from adept.datasets.registry import dataset_label, load_dataset
from adept.envs import evaluate, reference_returns
from adept.methods import (
    METHODS,
    DyDiffConfig,
    Method,
    ModelBasedConfig,
    PGDConfig,
    SynthERConfig,
    check_method,
    make_method,
    method_options,
)
from adept.store.runs import (
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
    seeds: tuple[int, ...] = ()
    """Train these seeds in one process (instead of --seed), the agents' updates batched into
    one computation (adept.accel.pack); each seed is an ordinary run in its own directory
    (<run-dir>/seed<s>, default runs/<dataset>-<agent>-<method>-seed<s>) that resumes exactly,
    in a pack or alone. Diff+X's and ADEPT's rollouts and re-fits batch the seeds' world
    models too; other methods' work (generation) and the diagnostics run seed by seed."""
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
    """Matrix products of the agent's update and of the method's models (pre-training,
    sampling, re-fits, rollouts): fp32, or bf16 autocast (weights, optimizer state and
    evaluation stay fp32), for both; auto: each part's measured default on the device
    (adept.base.precision.AUTO: fp32, as bf16 scored a little lower on halfcheetah-random in the
    precision-table grid; $ADEPT_PRECISION overrides it). On this CPU bf16 runs the agents'
    updates 1.07–1.28× and the world model's steps 1.16–1.38× as fast (benchmarks.precision)."""
    cuda_graphs: bool = False
    """Replay the agent's update from CUDA graphs (adept.accel.graphs): one launch per update
    instead
    of a few hundred small kernels, whose launches bound a GPU's updates per second at these
    sizes. The same kernels on the same numbers as without (the learning rates rounded to
    float32); batches, random numbers and schedules stay as they are. Needs a CUDA device. Off
    by default until measured on a GPU."""
    compile: Compile = "auto"
    """Run the agent's losses through torch.compile (adept.base.compiling): fused kernels, the same
    networks and checkpoints, numbers equal to float rounding; the first update compiles (≈ 16 s
    cold on 2 cores, 2–5 s from inductor's cache). auto: where measured faster — IQL (1.20× the
    updates/s) and BC on a CPU, runs of 20k steps or more ($ADEPT_COMPILE=on|off overrides it);
    SAC and TD3+BC ran slower compiled."""
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

    def for_seed(self, seed: int) -> TrainConfig:
        """The run of one of ``seeds``: what ``--seed <seed>`` would train."""
        run_dir = None if self.run_dir is None else self.run_dir / f"seed{seed}"
        return dataclasses.replace(self, seed=seed, seeds=(), run_dir=run_dir)

    def validate(self) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise AdeptError(f"--seeds names a seed twice: {list(self.seeds)}; give each once")
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
        device = resolve_device(self.device)
        if self.cuda_graphs and device.type != "cuda":
            raise AdeptError(
                f"--cuda-graphs needs a CUDA device, and this run's is {device}; drop --cuda-graphs"
            )
        compiling.resolve(self.compile, device, self.agent, self.num_steps)  # refuses here


#: Config fields that may differ when a run is resumed (they do not change its results).
RESUMABLE_FIELDS = (
    "seeds",
    "device",
    "cuda_graphs",
    "compile",
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


def unread_fields(agent: str, method: str) -> tuple[str, ...]:
    """The option sections a run with ``agent`` and ``method`` never reads: the other agents'
    (``--sac.*`` in an IQL run) and the other methods' (``--synther.*`` in an ADEPT run). Two
    runs whose configs differ only there, and in :data:`RESUMABLE_FIELDS`, are the same run
    (``adept bench --reuse`` takes one grid's finished run for another's cell)."""
    own = METHODS[method].options
    others = sorted({m.options for m in METHODS.values() if m.options not in (None, own)})
    return (*(name for name in AGENTS if name != agent), *others)


def same_run_fields(config: TrainConfig) -> tuple[str, ...]:
    """The config fields in which a stored run may differ from ``config`` and still be its run
    (a resume, an archived or reused cell): :data:`RESUMABLE_FIELDS` and :func:`unread_fields`."""
    return (*RESUMABLE_FIELDS, *unread_fields(config.agent, config.method))


def fit(
    agent: Agent,
    method: Method,
    start: int,
    num_steps: int,
    contexts: Contexts = FP32,
    graphs: bool = False,
) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
    """The training loop: yields ``(steps done, metrics)`` after each agent update. The update
    runs in ``contexts.agent``, the method's work in ``contexts.model`` (the precision's
    autocasts); what the caller does between steps (evaluation, logging, checkpoints) runs in
    neither. ``graphs``: replay the update's device work from CUDA graphs captured by this
    call (:class:`adept.accel.graphs.GraphedUpdate`; emulated off CUDA)."""
    update = GraphedUpdate(agent) if graphs else agent.update
    for step in range(start, num_steps):
        with contexts.model():
            batch = method.sample(step)
        with contexts.agent():
            metrics = update(batch)
        with contexts.model():
            metrics.update(method.after_update(step, agent))
        yield step + 1, metrics


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
    directory is locked while this runs: a second process on it is refused. With ``seeds``,
    every seed's run (see :func:`train_seeds`); the summaries by run directory."""
    config.validate()
    data = load_dataset(config.dataset, env_id=config.env_id, progress=config.progress)
    if data.env_id is None:
        raise AdeptError(f"dataset {config.dataset} names no env; pass --env-id (e.g. Hopper-v5)")
    check_method(config, data)  # before the run directory is written
    if config.seeds:
        return {"runs": train_seeds(config, data, data.env_id)}
    with run_dir(config, data.fingerprint()) as run:
        return _train_in(run, config, data, data.env_id)


def run_dir(config: TrainConfig, fingerprint: str) -> RunDir:
    """The run's directory, opened: its config, and the ``fingerprint`` of the data it trains
    on (:meth:`Transitions.fingerprint`; a resume, or a bench grid continued elsewhere, on
    other data is refused)."""
    facts = {DATASET_FINGERPRINT: fingerprint}
    return RunDir(config.resolved_run_dir(), config, ignore=same_run_fields(config), facts=facts)


DATASET_FINGERPRINT = "dataset_fingerprint"
"""The key of the data's :meth:`Transitions.fingerprint` in a run's config.json."""


class _Seat:
    """One run in the loop: its agent and method, metric averages, logs, divergence guard and
    checkpoints. The loop alone drives one; :func:`train_seeds` drives several in a pack."""

    def __init__(
        self,
        run: RunDir,
        config: TrainConfig,
        data: Transitions,
        env_id: str,
        contexts: Contexts,
    ):
        self.run, self.config, self.data, self.env_id = run, config, data, env_id
        self.contexts = contexts
        device = resolve_device(config.device)
        seed_everything(config.seed)
        spec = AgentSpec.from_data(data, config.num_steps, device)
        self.agent = make_agent(config, spec)
        if compiling.resolve(config.compile, device, config.agent, config.num_steps):
            self.agent.compile()
        buffer = ReplayBuffer.from_transitions(data, device=device, seed=config.seed)
        self.method = make_method(
            config.method,
            data,
            buffer,
            config.batch_size,
            method_options(config.method, config),
            config.seed,
            config.num_steps,
        )
        self.averager = _Averager()
        ref_min, ref_max = reference_returns(env_id, data.metadata)
        self.meta = {
            "env_id": env_id,
            "obs_dim": data.obs_dim,
            "act_dim": data.act_dim,
            "ref_min_score": ref_min,
            "ref_max_score": ref_max,
        }
        self.guard = _Guard(config, run)
        self.start = 0
        self.t0 = time.perf_counter()
        self.last_eval: float | None = None
        self.loggers: _Loggers

    def latest(self) -> dict[str, Any] | None:
        """The checkpoint to resume from; None for a fresh run."""
        if self.run.resumed and self.run.has_checkpoint():
            # loaded on the CPU: RNG states must be CPU tensors; modules and buffers move the rest
            return self.run.load_checkpoint(map_location="cpu")
        return None

    def restore(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        with self.contexts.model():  # a method may fetch its cached models, keyed by precision
            self.method.load_state_dict(state["method"], self.agent)
        self.averager.load_state_dict(state["averager"])
        set_rng_state(state["rng"])

    def resume(self, state: dict[str, Any] | None) -> None:
        """Continue from ``state`` (a checkpoint of this run) or start fresh; opens the logs."""
        elapsed_before, saved_metrics = 0.0, None
        if state is not None:
            self.restore(state)
            self.guard.load_state_dict(state.get("divergence", {}))  # a rollback keeps its count
            self.start, elapsed_before = int(state["step"]), float(state["wall_time"])
            saved_metrics = state.get("metrics")
        self.loggers = _Loggers(
            self.config, self.run, self.start if self.start > 0 else None, saved_metrics
        )
        self.t0 = time.perf_counter() - elapsed_before

    @property
    def finished(self) -> bool:
        return self.start >= self.config.num_steps and self.run.is_finished()

    def clock(self) -> float:
        """The run's wall time (its earlier sessions' included)."""
        return time.perf_counter() - self.t0

    def checkpoint(
        self, step: int, agent_state: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        """Save the run at ``step``; ``agent_state`` gives the agent's state when the agent's own
        ``state_dict`` does not hold it (a packed agent's optimizer moments live in the pack).
        The RNG saved is the global one: the caller makes it the run's own."""
        self.run.save_checkpoint(
            {
                "step": step,
                "wall_time": self.clock(),
                "agent": self.agent.state_dict() if agent_state is None else agent_state(),
                "method": self.method.state_dict(),
                "averager": self.averager.state_dict(),
                "rng": rng_state(),
                "meta": self.meta,
                "metrics": self.loggers.csv.state_dict(),
                "divergence": self.guard.state_dict(),
            }
        )

    def begin(self) -> None:
        """A fresh run's set-up: the method's (pre-training, synthetic data), logged at step 0."""
        if self.start > 0:
            return
        with self.contexts.model():
            setup_metrics = self.method.setup(self.agent)
        if setup_metrics:
            self.loggers.write(0, self.clock(), setup_metrics)
        if self.config.on_divergence == "rollback":
            self.checkpoint(0)  # what a divergence before step 1 rolls back to

    def row(self, step: int, metrics: Mapping[str, torch.Tensor]) -> _Row:
        """What the loop owes the run after ``step``: averaged metrics (at a log step), a
        checkpoint, an evaluation, and whether anything turned non-finite."""
        c = self.config
        self.averager.add(metrics)
        done = step == c.num_steps
        row = _Row(
            step=step,
            values=self.averager.pop() if step % c.log_every == 0 or done else {},
            saving=step % c.checkpoint_every == 0 or done,
            evaluating=step % c.eval_every == 0 or done,
        )
        if row.values or row.saving or row.evaluating:
            row.divergence = divergence.find(step, row.values, self.agent, self.method)
        return row

    def record(
        self, row: _Row, agent_state: Callable[[], dict[str, Any]] | None = None
    ) -> dict[str, str]:
        """Evaluate, log and checkpoint as ``row`` says; returns the progress bar's postfix."""
        c, values = self.config, row.values
        if values and self.guard.rollbacks:
            values["divergence/rollbacks"] = float(self.guard.rollbacks)
        if row.evaluating:
            result = evaluate(
                lambda obs: self.agent.act(obs, deterministic=True),
                self.env_id,
                c.eval_episodes,
                seed=(c.seed, row.step),
                metadata=self.data.metadata,
            )
            self.last_eval = result.mean_normalized_score
            values["eval/normalized_score"] = self.last_eval
            values["eval/normalized_score_std"] = float(result.normalized_scores.std())
            values["eval/return"] = result.mean_return
            # how long π stays up: tells a hopper or walker standing still for the whole
            # episode (the alive bonus alone, ≈ 1000) from one that moves and falls
            values["eval/length"] = float(result.lengths.mean())
        if values:
            self.loggers.write(row.step, self.clock(), values)
        if row.saving:
            self.checkpoint(row.step, agent_state)
        shown = {k.split("/")[-1]: f"{v:.3g}" for k, v in values.items() if k.startswith("train/")}
        if self.last_eval is not None:
            shown["score"] = f"{self.last_eval:.1f}"
        return shown

    def finish(self) -> dict[str, Any]:
        summary = summarize_run(self.loggers.csv.rows, self.config.num_steps, self.clock())
        self.run.write_summary(summary)
        return summary


@dataclass
class _Row:
    """One step's obligations towards a run (see :meth:`_Seat.row`)."""

    step: int
    values: dict[str, float]
    saving: bool
    evaluating: bool
    divergence: divergence.Divergence | None = None


def _bar(config: TrainConfig, start: int, label: str) -> Any:
    return tqdm(
        total=config.num_steps,
        initial=start,
        desc=label,
        disable=not config.progress,
        unit="step",
    )


def _train_in(run: RunDir, config: TrainConfig, data: Transitions, env_id: str) -> dict[str, Any]:
    contexts = Contexts.of(config.precision, resolve_device(config.device))
    seat = _Seat(run, config, data, env_id, contexts)
    seat.resume(seat.latest())
    if seat.finished:
        seat.loggers.close()
        return run.read_summary()
    seat.begin()

    start = seat.start
    bar = _bar(config, start, config.agent)
    try:
        while start < config.num_steps:
            steps = fit(
                seat.agent, seat.method, start, config.num_steps, contexts, config.cuda_graphs
            )
            for step, metrics in steps:
                row = seat.row(step, metrics)
                if row.divergence is not None:
                    # back to the last good checkpoint, learning rates scaled (or raise)
                    state = seat.guard.handle(
                        row.divergence, row.values, seat.agent, seat.method, seat.restore
                    )
                    seat.loggers.csv.restore(state["metrics"])
                    start = int(state["step"])
                    bar.reset(total=config.num_steps)
                    bar.update(start)
                    break
                shown = seat.record(row)
                if row.values:
                    bar.set_postfix(shown, refresh=False)
                bar.update(1)
            else:
                start = config.num_steps
    finally:
        bar.close()
        seat.loggers.close()
    return seat.finish()


def train_seeds(config: TrainConfig, data: Transitions, env_id: str) -> dict[str, Any]:
    """Train ``config.seeds`` in this process, their agents updated as one batched computation
    (:class:`adept.accel.pack.Pack`); returns each run's summary by run directory.

    Each seed is an ordinary run (``config.for_seed``): its own directory, config, metrics,
    evaluations and checkpoints, its own random streams (:class:`adept.accel.pack.Streams`), and it
    can be resumed alone or in a pack. Diff+X's and ADEPT's rounds batch the seeds' world models
    (:func:`adept.accel.rounds.after_update_pack`); other methods' work runs seed after seed.
    A seed leaves the pack and is finished alone, from its last
    checkpoint, by the ordinary loop when it diverges (that loop then stops or rolls back as
    --on-divergence says), or when a resume finds its checkpoint at another step than the
    others' (a kill between two seeds' checkpoints; a seed ahead first tries its previous
    checkpoint)."""
    configs = [config.for_seed(seed) for seed in config.seeds]
    summaries: dict[str, Any] = {}
    alone: list[TrainConfig] = []
    contexts = Contexts.of(config.precision, resolve_device(config.device))
    fingerprint = data.fingerprint()  # once for the k run directories
    with contextlib.ExitStack() as held:
        seats, states, rngs = [], [], []
        for c in configs:
            run = held.enter_context(run_dir(c, fingerprint))
            seat = _Seat(run, c, data, env_id, contexts)
            seats.append(seat)
            states.append(seat.latest())
            rngs.append(rng_state())  # the seed's stream after its networks' initialization
        steps = [0 if state is None else int(state["step"]) for state in states]
        common = min((step for step in steps if step < config.num_steps), default=0)
        joining: list[tuple[_Seat, dict[str, Any] | None, dict[str, Any]]] = []
        for seat, state, step, rng in zip(seats, states, steps, rngs, strict=True):
            if common < step < config.num_steps:  # ahead: its previous checkpoint may be in step
                previous = seat.run.load_previous_checkpoint(map_location="cpu")
                if previous is not None and int(previous["step"]) == common:
                    state, step = previous, common
            if step == common:
                joining.append((seat, state, rng))
            else:  # finished (the ordinary loop reads its summary), or out of step
                alone.append(seat.config)
        if len(joining) == 1:  # a pack of one is the ordinary loop, less the batching's overhead
            alone.append(joining.pop()[0].config)
        streams = Streams([rng for _, _, rng in joining])
        for s, (seat, state, _) in enumerate(joining):
            with streams.of(s):
                seat.resume(state)
                seat.begin()
        active = [seat for seat, _, _ in joining]
        if active:
            finished = _train_pack(config, active, streams, common, contexts)
            for seat, summary in finished.items():
                summaries[str(seat.run.path)] = summary
            alone += [seat.config for seat in active if seat not in finished]
    for c in alone:  # the pack's run dirs are released: the ordinary loop takes them over
        with run_dir(c, fingerprint) as run:
            summaries[str(run.path)] = _train_in(run, c, data, env_id)
    return summaries


def _train_pack(
    config: TrainConfig,
    seats: list[_Seat],
    streams: Streams,
    start: int,
    contexts: Contexts,
) -> dict[_Seat, dict[str, Any]]:
    """The loop over a pack of seats from ``start``: returns the summaries of the seats that
    finished; a seat that diverged is left out (the caller finishes it alone)."""
    pack = Pack([seat.agent for seat in seats])
    update = GraphedPackUpdate(pack) if config.cuda_graphs else pack.update
    method = type(seats[0].method)
    if packed_path(method) is None and method.after_update is not Method.after_update:
        note(
            f"--method {config.method} has no packed path: the {len(seats)} seeds' agent updates "
            "are batched, its own work between them runs seed by seed"
        )
    finished: dict[_Seat, dict[str, Any]] = {}
    bar = _bar(config, start, f"{config.agent} ×{len(seats)}")
    try:
        for step in range(start, config.num_steps):
            batches, noises = [], []
            for s, seat in enumerate(seats):
                with streams.of(s):
                    with contexts.model():
                        batches.append(seat.method.sample(step))
                    with contexts.agent():
                        noises.append(seat.agent.draw(batches[-1]))
            with contexts.agent():
                metrics = update(batches, noises)
            with contexts.model():
                after = after_update_pack(
                    [seat.method for seat in seats], step, [seat.agent for seat in seats], streams
                )
            for s, seat_metrics in enumerate(after):
                metrics[s].update(seat_metrics)
            leaving = []
            for s, seat in enumerate(seats):
                row = seat.row(step + 1, metrics[s])
                if row.divergence is not None:
                    leaving.append(s)
                    seat.loggers.close()
                    continue
                with streams.of(s):
                    shown = seat.record(row, functools.partial(pack.agent_state, s))
                if row.values and s == 0:
                    bar.set_postfix(shown, refresh=False)
            if leaving:
                pack.release()
                seats = [seat for s, seat in enumerate(seats) if s not in leaving]
                streams.states = [rng for s, rng in enumerate(streams.states) if s not in leaving]
                if not seats:
                    break
                pack = Pack([seat.agent for seat in seats])
                update = GraphedPackUpdate(pack) if config.cuda_graphs else pack.update
                bar.set_description(f"{config.agent} ×{len(seats)}")
            bar.update(1)
        else:
            for seat in seats:
                finished[seat] = seat.finish()
    finally:
        bar.close()
        for seat in seats:
            seat.loggers.close()
    return finished


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
