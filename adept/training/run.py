"""A run's life around the loop: its directory, agent and method, loggers, evaluations,
checkpoints, exact resume and summary (:class:`Seat`), and one run trained alone
(:func:`train_in`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from adept.agents import (
    AGENTS,
    Agent,
    AgentSpec,
)
from adept.base import compiling
from adept.base.errors import AdeptError
from adept.base.precision import Contexts
from adept.base.rng import rng_state, seed_everything, set_rng_state
from adept.data.buffer import ReplayBuffer, resolve_device
from adept.data.transitions import Transitions
from adept.envs import evaluate, reference_returns
from adept.methods import (
    make_method,
    method_options,
)
from adept.store.runs import (
    MetricsLog,
    RunDir,
    load_run_checkpoint,
    read_json,
)
from adept.training.config import (
    SECTIONS,
    TrainConfig,
    config_from_json,
    migrate_config,
    optional_package,
    same_run_fields,
    section_type,
)
from adept.training.divergence import Divergence, Guard, find_divergence
from adept.training.loop import Averager, fit


def make_agent(config: TrainConfig, spec: AgentSpec) -> Agent:
    return AGENTS[config.agent](spec, config.section(config.agent))


class Loggers:
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
            tensorboard = optional_package("torch.utils.tensorboard", "tensorboard")
            self.tb = tensorboard.SummaryWriter(str(run.path / "tb"), purge_step=resume_step)
        if config.wandb:
            self.wandb = optional_package("wandb", "wandb").init(
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


def run_dir(config: TrainConfig, fingerprint: str) -> RunDir:
    """The run's directory, opened: its config, and the ``fingerprint`` of the data it trains
    on (:meth:`Transitions.fingerprint`; a resume, or a bench grid continued elsewhere, on
    other data is refused)."""
    facts = {DATASET_FINGERPRINT: fingerprint}
    return RunDir(
        config.resolved_run_dir(),
        config,
        ignore=same_run_fields(config),
        facts=facts,
        migrate=migrate_config,
    )


DATASET_FINGERPRINT = "dataset_fingerprint"
"""The key of the data's :meth:`Transitions.fingerprint` in a run's config.json."""


class Seat:
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
        self.averager = Averager()
        ref_min, ref_max = reference_returns(env_id, data.metadata)
        self.meta = {
            "env_id": env_id,
            "obs_dim": data.obs_dim,
            "act_dim": data.act_dim,
            "ref_min_score": ref_min,
            "ref_max_score": ref_max,
        }
        self.guard = Guard(config, run)
        self.start = 0
        self.t0 = time.perf_counter()
        self.last_eval: float | None = None
        self.loggers: Loggers

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
        self.loggers = Loggers(
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

    def row(self, step: int, metrics: Mapping[str, torch.Tensor]) -> Row:
        """What the loop owes the run after ``step``: averaged metrics (at a log step), a
        checkpoint, an evaluation, and whether anything turned non-finite."""
        c = self.config
        self.averager.add(metrics)
        done = step == c.num_steps
        row = Row(
            step=step,
            values=self.averager.pop() if step % c.log_every == 0 or done else {},
            saving=step % c.checkpoint_every == 0 or done,
            evaluating=step % c.eval_every == 0 or done,
        )
        if row.values or row.saving or row.evaluating:
            row.divergence = find_divergence(step, row.values, self.agent, self.method)
        return row

    def record(
        self, row: Row, agent_state: Callable[[], dict[str, Any]] | None = None
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
class Row:
    """One step's obligations towards a run (see :meth:`Seat.row`)."""

    step: int
    values: dict[str, float]
    saving: bool
    evaluating: bool
    divergence: Divergence | None = None


def progress_bar(config: TrainConfig, start: int, label: str) -> Any:
    return tqdm(
        total=config.num_steps,
        initial=start,
        desc=label,
        disable=not config.progress,
        unit="step",
    )


def train_in(run: RunDir, config: TrainConfig, data: Transitions, env_id: str) -> dict[str, Any]:
    contexts = Contexts.of(config.precision, resolve_device(config.device))
    seat = Seat(run, config, data, env_id, contexts)
    seat.resume(seat.latest())
    if seat.finished:
        seat.loggers.close()
        return run.read_summary()
    seat.begin()

    start = seat.start
    bar = progress_bar(config, start, config.agent)
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


def load_agent(run_dir: Path, device: str | torch.device = "auto") -> tuple[Agent, dict[str, Any]]:
    """The agent of a run directory's latest checkpoint, and the checkpoint's metadata."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise AdeptError(
            f"{run_dir} is not a run directory (no config.json); "
            "give the --run-dir of a training run"
        )
    stored = migrate_config(read_json(config_path, "restore it, or train the run again")["config"])
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
    options = stored[name] if name in SECTIONS else stored.get("plugins", {}).get(name, {})
    agent = AGENTS[name](spec, config_from_json(section_type(name), options))
    agent.load_state_dict(state["agent"])
    return agent, {**meta, "step": state["step"]}
