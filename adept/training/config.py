"""The training run's configuration: what to train on, with which agent and method, for how long,
and how the run is logged, checkpointed and guarded."""

from __future__ import annotations

import dataclasses
import importlib
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from adept.agents import (
    AGENTS,
    BCConfig,
    IQLConfig,
    SACConfig,
    TD3BCConfig,
)
from adept.base import compiling
from adept.base.compiling import Compile
from adept.base.errors import AdeptError
from adept.base.precision import Precision
from adept.data.buffer import resolve_device
from adept.datasets.registry import dataset_label
from adept.methods import (
    METHODS,
    ADEPTConfig,
    DyDiffConfig,
    PGDConfig,
    SynthERConfig,
)
from adept.store.runs import to_jsonable


def optional_package(module: str, extra: str) -> Any:
    """Import an optional logger's package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AdeptError(
            f"--{extra} needs the {extra} package; pip install 'adept-rl[{extra}]'"
        ) from exc


@dataclass(frozen=True)
class TrainConfig:
    """Offline training of one agent (optionally with a synthetic-data method) on one dataset."""

    dataset: str = "hopper-random"
    """A .hdf5 path, minari:<dataset-id>, or a project name such as hopper-random."""
    agent: str = "iql"
    """The offline RL agent: iql, sac, td3bc, bc, or one registered (adept.registry)."""
    method: str = "none"
    """'none': the dataset alone (X); 'diffusion': Diff+X (world model trained once, rollouts of
    the current policy); 'adept': ADEPT+X (rollouts and importance-sampled world-model updates);
    'synther': SynthER+X (an upsampled synthetic dataset from a diffusion model of transitions);
    'pgd': PGD+X (trajectory segments generated with the current policy's guidance);
    'dydiff': DyDiff+X (policy rollouts refined by a trajectory diffusion model); or one
    registered (adept.registry)."""
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
    evaluation stay fp32), for both; auto: each part's measured default on the device, fp32
    today ($ADEPT_PRECISION overrides it). Speed and accuracy of each: README, "Precision"."""
    cuda_graphs: bool = False
    """Replay the agent's update from CUDA graphs (adept.accel.graphs): one launch per update
    instead of a few hundred small kernels; the same kernels on the same numbers (the learning
    rates rounded to float32). Needs a CUDA device; off until measured on a GPU (README, "CUDA
    graphs")."""
    compile: Compile = "auto"
    """Run the agent's losses through torch.compile (adept.base.compiling): fused kernels, the
    same networks and checkpoints, numbers equal to float rounding; the first update compiles.
    auto: where it was measured faster (IQL and BC on a CPU, runs of 20k steps or more;
    $ADEPT_COMPILE=on|off overrides it; README, "Compiled updates")."""
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
    adept: ADEPTConfig = field(default_factory=ADEPTConfig)
    """The world model, its pre-training, rollouts, re-fit, data mix and diagnostics of
    --method adept (and of --method diffusion, which does not re-fit)."""
    synther: SynthERConfig = field(default_factory=SynthERConfig)
    """Generator, upsampling and data mix of --method synther."""
    pgd: PGDConfig = field(default_factory=PGDConfig)
    """Segment model, policy guidance, regeneration and data mix of --method pgd."""
    dydiff: DyDiffConfig = field(default_factory=DyDiffConfig)
    """Trajectory and one-step models, policy injection, filter and data mix of --method dydiff."""
    plugins: Mapping[str, Any] = field(default_factory=dict)
    """The options of registered agents and methods (adept.registry), by section name: set as
    --<section>.* like the sections above; a section left out has its defaults."""

    def section(self, name: str) -> Any:
        """The options of section ``name`` (``adept``, ``iql``, or a registered one's)."""
        if name in SECTIONS:
            return getattr(self, name)
        if name in self.plugins:
            return self.plugins[name]
        return section_type(name)()

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
        check_names(self.agent, self.method)
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
            optional_package("torch.utils.tensorboard", "tensorboard")
        if self.wandb:
            optional_package("wandb", "wandb")
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


SECTIONS = ("iql", "sac", "td3bc", "bc", "adept", "synther", "pgd", "dydiff")
"""The option sections that are fields of :class:`TrainConfig` (adept's own agents and methods);
a registered agent's or method's are entries of its ``plugins``."""

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


def check_names(agent: str, method: str) -> None:
    """Refuse an agent or a method that is not registered, naming the ones that are."""
    if agent not in AGENTS:
        raise AdeptError(f"--agent {agent} is no agent; choose one of {', '.join(AGENTS)}")
    if method not in METHODS:
        raise AdeptError(f"--method {method} is no method; choose one of {', '.join(METHODS)}")


def unread_fields(agent: str, method: str) -> tuple[str, ...]:
    """The option sections a run with ``agent`` and ``method`` never reads: the other agents'
    (``--sac.*`` in an IQL run), the other methods' (``--synther.*`` in an ADEPT run) and the
    parts of its own method's that it does not use (``--adept.refit.*`` in a Diff+X run); a
    registered one's as ``plugins.<section>``. Two runs whose configs differ only there, and
    in :data:`RESUMABLE_FIELDS`, are the same run (``adept bench --reuse`` takes one grid's
    finished run for another's cell)."""
    chosen = METHODS[method]
    own = chosen.options
    sections = [name for name in AGENTS if name != agent]
    sections += sorted({m.options for m in METHODS.values() if m.options not in (None, own)})
    parts = [f"{own}.{part}" for part in chosen.unread_options] if own else []
    return tuple(path(name) for name in (*sections, *parts))


def config_from_json(cls: type, value: Mapping[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from :func:`adept.store.runs.to_jsonable` output: a
    :class:`TrainConfig` (its ``plugins`` sections by their registered types) or a part of one."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in value:
            continue
        kind, raw = hints[f.name], value[f.name]
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = config_from_json(kind, raw)  # type: ignore[arg-type]
        elif cls is TrainConfig and f.name == "plugins":
            kwargs[f.name] = {k: config_from_json(section_type(k), v) for k, v in raw.items()}
        elif kind in (Path, Path | None) and raw is not None:
            kwargs[f.name] = Path(raw)
        else:
            kwargs[f.name] = raw
    return cls(**kwargs)


def path(section: str) -> str:
    """Where section ``section`` (or ``section.part``) lives in a config's JSON:
    ``adept.refit``, or ``plugins.toy`` for a registered method's."""
    head = section.split(".", 1)[0]
    return section if head in SECTIONS else f"plugins.{section}"


def section_type(name: str) -> type:
    """The options dataclass of section ``name``: an agent's, or a method's."""
    if name in AGENTS:
        kind = AGENTS[name].options_type
    else:
        kind = next((m.options_type for m in METHODS.values() if m.options == name), None)
    if kind is None:
        raise AdeptError(f"no agent or method has options named '{name}'")
    return kind


def same_run_fields(config: TrainConfig) -> tuple[str, ...]:
    """The config fields in which a stored run may differ from ``config`` and still be its run
    (a resume, an archived or reused cell): :data:`RESUMABLE_FIELDS` and :func:`unread_fields`."""
    return (*RESUMABLE_FIELDS, *unread_fields(config.agent, config.method))


#: Options renamed when ADEPT's options were grouped by concern: old name → new name (dotted,
#: as a grid or ``--set`` spells them). A stored config of the old layout is migrated on read
#: (:func:`migrate_config`); an old name given now is a one-line error naming the new one.
RENAMED: dict[str, str] = {
    f"adept.{old}": f"adept.{new}"
    for old, new in {
        "pretrain_steps": "pretrain.steps",
        "model_batch_size": "pretrain.batch_size",
        "ema_decay": "pretrain.ema_decay",
        "select_every": "pretrain.select_every",
        "select_rows": "pretrain.select_rows",
        "select_patience": "pretrain.select_patience",
        "behavior": "pretrain.behavior",
        "behavior_steps": "pretrain.behavior_steps",
        "holdout_fraction": "pretrain.holdout_fraction",
        "pretrain_seed": "generator_seed",
        "horizon": "rollout.horizon",
        "rollout_every": "rollout.every",
        "rollout_start": "rollout.start",
        "rollout_batch": "rollout.batch_size",
        "clip_generated": "rollout.clip",
        "uncertainty_samples": "rollout.uncertainty_samples",
        "uncertainty_penalty": "rollout.uncertainty_penalty",
        "uncertainty_stop": "rollout.uncertainty_stop",
        "refit": "refit.rule",
        "model_update_steps": "refit.steps",
        "is_batch_size": "refit.batch_size",
        "is_loss": "refit.loss",
        "is_resample_pool": "refit.resample_pool",
        "is_truncate": "refit.truncate",
        "is_truncate_ratio": "refit.truncate_ratio",
        "refit_lr": "refit.lr",
        "refit_average": "refit.average",
        "real_ratio": "mix.real_ratio",
        "real_ratio_final": "mix.real_ratio_final",
        "model_buffer_size": "mix.buffer_size",
        "flush_on_refit": "mix.flush_on_refit",
        "diagnostics": "diagnostics.model_error",
        "diagnostics_batch": "diagnostics.batch_size",
        "true_error_every": "diagnostics.true_error_every",
        "true_error_starts": "diagnostics.true_error_samples",
    }.items()
} | {
    # the size of the true-error measurement, one name across methods
    "pgd.true_error_transitions": "pgd.true_error_samples",
    "dydiff.true_error_starts": "dydiff.true_error_samples",
}

#: The fields an older adept let a ``preset`` field set (None: the preset's value), by method
#: section. Presets are whole configs now (:func:`preset`); a stored config of that layout is
#: resolved to the values it ran with (:func:`migrate_config`).
OLD_PRESET_FIELDS: dict[str, tuple[str, ...]] = {
    "synther": (
        "hidden", "depth", "train_steps", "batch_size", "ema_decay", "sample_steps",
        "num_samples", "sample_batch", "terminal_steps",
    ),
    "pgd": (
        "network", "train_steps", "batch_size", "ema_decay", "sample_steps", "num_segments",
        "segment_length", "regenerate_every", "sample_batch",
    ),
    "dydiff": (
        "network", "length", "train_steps", "batch_size", "ema_decay", "sample_steps",
        "rollout_batch", "rollout_every", "model_buffer_size",
    ),
}  # fmt: skip


def preset_names() -> dict[str, tuple[str, ...]]:
    """The presets of each option section that has some (``synther``: paper, cpu, smoke)."""
    return {m.options: tuple(m.presets) for m in METHODS.values() if m.options and m.presets}


def preset(section: str, name: str) -> Any:
    """The config named ``name`` of option section ``section`` (``--synther.preset paper``), or
    a one-line error naming the choices."""
    names = preset_names()
    if section not in names:
        raise AdeptError(f"--{section}.preset: the {section} options have no presets")
    owner = next(m for m in METHODS.values() if m.options == section)
    if name not in owner.presets:
        raise AdeptError(
            f"--{section}.preset {name} is no preset; choose one of {', '.join(names[section])}"
        )
    return owner.presets[name]


def renamed(option: str) -> str | None:
    """The new name of ``option`` (dotted, underscores) if it is an old one, else None."""
    return RENAMED.get(option)


def migrate_config(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored training config (config.json's ``config``) in today's layout: options of an
    older layout (:data:`RENAMED`) moved to their new places, values unchanged, and an older
    ``preset`` field with its None options resolved to the values the run used. A config of
    today's layout is returned as it is."""
    out = json.loads(json.dumps(stored))  # a deep copy of plain JSON values
    for section, fields in OLD_PRESET_FIELDS.items():
        old = out.get(section)
        if isinstance(old, dict) and "preset" in old:
            resolved = to_jsonable(preset(section, old.pop("preset")))
            for name, value in old.items():
                if not (name in fields and value is None):
                    resolved[name] = value
            out[section] = resolved
    moved: list[tuple[str, Any]] = []
    for old, new in RENAMED.items():
        *parents, leaf = old.split(".")
        holder = out
        for name in parents:
            holder = holder.get(name) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and leaf in holder and not isinstance(holder[leaf], dict):
            moved.append((new, holder.pop(leaf)))
    for new, value in moved:
        *parents, leaf = new.split(".")
        holder = out
        for name in parents:
            holder = holder.setdefault(name, {})
        holder[leaf] = value
    out.setdefault("plugins", {})  # registered agents' and methods' options: none then
    return out
