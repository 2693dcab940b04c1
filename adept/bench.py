"""``adept bench``: a grid of datasets × variants × agents × seeds in one resumable command.

A grid is a :class:`GridSpec`, named by a preset (:data:`PRESETS`), a TOML file and command-line
options, each layer overriding the one before. A *variant* is a named method plus overrides of
any ``adept train`` option (``adept-uniform = {method = "adept", "adept.refit" = "uniform"}``), so
an ablation is one spec. Every cell is an ordinary run directory::

    ROOT/bench.json                                 the spec, and per cell its state and scores
    ROOT/<dataset>/<variant>/<agent>/seed<k>/       an `adept train` run directory
    ROOT/logs/<dataset>__<variant>__<agent>__seed<k>.log   the cell's output

so ``adept eval``, resume and ``adept report`` work on it unchanged. Re-running the same command
is idempotent: finished cells are skipped, unfinished ones resume from their checkpoints
(exactly, as ``adept train`` does), missing and failed ones start. A failed cell is recorded in
bench.json (error and log tail) and never stops the grid; the exit status is the number of
failed cells.

What does not depend on the agent is done once: datasets are made by the driver before any
worker starts, and world-model pre-training and the β fit are cached content-addressed by what
determines them (:mod:`adept.store.artifacts`), so Diff+X and ADEPT+X with IQL and SAC share one
pre-trained model per dataset and seed.

A grid can outlive the machine it runs on: with ``--archive DIR`` every finished cell's light
files (config.json, metrics.csv, summary.json, divergence.json, and its bench.json record; no
checkpoints) are copied to ``DIR/<cell id>/`` as it finishes, and a grid started on a fresh
machine (an empty root) takes the finished cells it finds there instead of running them again,
after checking that each holds this cell's config. Commit the archive beside the grid's report
and the same command continues the grid in the next session, wherever that runs.

Backends: ``local`` runs each cell in its own Python process (a crash or an out-of-memory kill
takes only that cell), ``workers`` at a time, each with ``threads`` torch threads; ``ray`` runs
each cell as a Ray task on a cluster whose nodes share the root folder (and ``$ADEPT_DATA_DIR``)
through a shared filesystem, retried on worker loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import difflib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adept.base.atomic import sole_lock
from adept.base.errors import AdeptError, warn

FORMAT = 1
BENCH_JSON = "bench.json"
LOCK = ".bench.lock"
LOG_TAIL_LINES = 20
MARKER = "bench-cell.json"
"""Written into a cell's run dir at each start: attempts, pid, host, start time."""
STATES = ("queued", "running", "done", "failed")
ARCHIVED = ("config.json", "metrics.csv", "summary.json", "divergence.json")
"""A finished cell's files that ``--archive`` keeps (checkpoints and logs are left out)."""
RECORD = "record.json"
"""The cell's bench.json record, beside its archived files."""

#: Options the grid itself sets per cell; ``--set`` and variants may not touch them.
GRID_FIELDS = {
    "dataset": "--datasets",
    "agent": "--agents",
    "method": "a variant's method",
    "seed": "--seeds",
    "num_steps": "--num-steps",
    "eval_every": "--eval-every",
    "eval_episodes": "--eval-episodes",
    "run_dir": "--root",
    "progress": "--progress",
}

_RANDOM = [f"{env}-random" for env in ("halfcheetah", "hopper", "walker2d")]
_MEDIUM_REPLAY = [f"{env}-medium-replay" for env in ("halfcheetah", "hopper", "walker2d")]

#: Grids that ship with the package (``--preset NAME``); command-line options override them.
PRESETS: dict[str, dict[str, Any]] = {
    "paper-ablation": {
        # The paper's ablation (Table 1 rows of the model-free agents and their Diff+/ADEPT+
        # versions, plus BC) at its budget; on a CPU pass e.g. --num-steps 20000 --seeds 0 1 2.
        "datasets": _RANDOM + _MEDIUM_REPLAY,
        "agents": ["iql", "sac"],
        "variants": {
            "none": {"method": "none", "agents": ["iql", "sac", "bc"]},
            "diffusion": {"method": "diffusion"},
            "adept": {"method": "adept"},
        },
        "seeds": [0, 1, 2, 3, 4],
        "num_steps": 1_000_000,
        "eval_every": 10_000,
        "eval_episodes": 10,
    },
    "adept-claim": {
        # Issue 11's measurement of the paper's claim: does ADEPT+IQL beat IQL, Diff+IQL and
        # the same re-fit with uniform weights? At a CPU budget of ≥ 50k steps, 3 seeds, with
        # one world model (and β) pre-trained per dataset and shared by every seed and variant.
        "datasets": [*_RANDOM, "hopper-medium-replay"],
        "agents": ["iql", "sac"],
        "variants": {
            "none": {"method": "none"},
            "diffusion": {"method": "diffusion", "agents": ["iql"]},
            "adept": {"method": "adept"},
            "adept-uniform": {"method": "adept", "agents": ["iql"], "adept.refit": "uniform"},
        },
        "seeds": [0, 1, 2],
        "num_steps": 50_000,
        "eval_every": 2_500,
        "eval_episodes": 10,
        "set": {"adept.pretrain_seed": 0},
    },
    "adept-claim-sac": {
        # adept-claim's controls for SAC: its grid has SAC and ADEPT+SAC but neither Diff+SAC
        # (is it the model or the re-fit?) nor the uniform re-fit (the weights or the extra
        # training?), while ADEPT+SAC is where ADEPT gains most. The 'none' and 'adept' cells are
        # adept-claim's (the same configs): --reuse of that grid's archive takes them.
        "datasets": [
            "hopper-medium-replay",
            "halfcheetah-random",
            "hopper-random",
            "walker2d-random",
        ],
        "agents": ["sac"],
        "variants": {
            "none": {"method": "none"},
            "diffusion": {"method": "diffusion"},
            "adept": {"method": "adept"},
            "adept-uniform": {"method": "adept", "adept.refit": "uniform"},
        },
        "seeds": [0, 1, 2],
        "num_steps": 50_000,
        "eval_every": 2_500,
        "eval_episodes": 10,
        "set": {"adept.pretrain_seed": 0},
    },
    "adept-levers": {
        # Issue 11 §3: which lever keeps ADEPT+IQL's early gain where its score swings or
        # collapses. Each variant changes one thing of adept-claim's ADEPT+IQL, whose cells
        # (variant 'adept', the same config) this grid takes with --reuse of that grid's archive.
        # The penalty's λ = 5: the spread of 4 s′ samples is u ≈ 0.07 a step on hopper-random
        # (rollout/uncertainty of a 5k-step run) against r̂ ≈ 1.3, so λu ≈ a quarter of r̂
        # (MOPO, too, sets λ per dataset).
        "datasets": ["hopper-random", "walker2d-random"],
        "agents": ["iql"],
        "variants": {
            "adept": {"method": "adept"},
            "adept-flush": {"method": "adept", "adept.flush_on_refit": True},
            "adept-real-share": {"method": "adept", "adept.real_ratio_final": 0.9},
            "adept-h5": {"method": "adept", "adept.horizon": 5},
            "adept-penalty": {
                "method": "adept",
                "adept.uncertainty_samples": 4,
                "adept.uncertainty_penalty": 5.0,
            },
            # λ = 5 is 5-7× walker2d-random's r̂ there (u ≈ 1.0 a step against r̂ ≈ 0.7: every
            # imagined step pays, and the agent learns to fall at once, score ≈ 0): the same
            # rule, λu ≈ a quarter of r̂, gives λ = 0.2 on walker2d-random
            "adept-penalty-0.2": {
                "method": "adept",
                "datasets": ["walker2d-random"],
                "adept.uncertainty_samples": 4,
                "adept.uncertainty_penalty": 0.2,
            },
        },
        "seeds": [0, 1, 2],
        "num_steps": 50_000,
        "eval_every": 2_500,
        "eval_episodes": 10,
        "set": {"adept.pretrain_seed": 0},
    },
    "synther-table": {
        # Issue 12's learning table: X vs SynthER+X for IQL and TD3+BC, at the adept-claim
        # grid's budget and evaluation schedule, one generator (the 'cpu' preset) and one
        # synthetic dataset per dataset shared by every seed and agent.
        "datasets": ["hopper-random", "halfcheetah-random", "hopper-medium-replay"],
        "agents": ["iql", "td3bc"],
        "methods": ["none", "synther"],
        "seeds": [0, 1, 2],
        "num_steps": 50_000,
        "eval_every": 2_500,
        "eval_episodes": 10,
        "set": {"synther.generator_seed": 0},
    },
    "trajectory-table": {
        # Issue 13's learning table: X vs PGD+X and DyDiff+X for IQL and TD3+BC (DyDiff's own
        # agent), beside ADEPT+IQL, at the adept-claim grid's budget and evaluation schedule,
        # one trained model per dataset shared by every seed and agent. The IQL and ADEPT+IQL
        # cells are adept-claim's and the TD3+BC cells synther-table's (the same configs):
        # --reuse of those grids' archives takes them. DyDiff imagines with π's mode, as its
        # code does; beside it for IQL, whose actor regresses onto the batch's actions (its own
        # mode, on the imagined rows), DyDiff with π's actions and the ensemble's s′ sampled.
        "datasets": ["hopper-random", "halfcheetah-random", "hopper-medium-replay"],
        "agents": ["iql", "td3bc"],
        "variants": {
            "none": {"method": "none"},
            "pgd": {"method": "pgd"},
            "dydiff": {"method": "dydiff"},
            "dydiff-sampled": {
                "method": "dydiff",
                "agents": ["iql"],
                "set": {"dydiff.deterministic": False},
            },
            "adept": {"method": "adept", "agents": ["iql"]},
        },
        "seeds": [0, 1, 2],
        "num_steps": 50_000,
        "eval_every": 2_500,
        "eval_episodes": 10,
        "set": {
            "pgd.generator_seed": 0,
            "dydiff.generator_seed": 0,
            "adept.pretrain_seed": 0,
        },
    },
    "precision-table": {
        # Issue 15's accuracy check of bf16 autocast for the agents: each model-free agent in
        # fp32 and in bf16 (explicit, whatever auto means), 3 seeds, 20k steps.
        "datasets": ["hopper-random", "halfcheetah-random"],
        "agents": ["iql", "sac", "td3bc"],
        "variants": {
            "fp32": {"method": "none", "precision": "fp32"},
            "bf16": {"method": "none", "precision": "bf16"},
        },
        "seeds": [0, 1, 2],
        "num_steps": 20_000,
        "eval_every": 2_500,
        "eval_episodes": 10,
    },
    "smoke": {
        # Seconds per cell: a 5k-step dataset, tiny networks, every method once.
        "datasets": ["hopper-random-n5000"],
        "agents": ["iql"],
        "methods": ["none", "diffusion", "adept", "synther", "pgd", "dydiff"],
        "seeds": [0, 1],
        "num_steps": 200,
        "eval_every": 100,
        "eval_episodes": 2,
        "set": {
            "batch_size": 64,
            "log_every": 50,
            "checkpoint_every": 50,
            "iql.hidden": 64,
            "adept.pretrain_steps": 100,
            "adept.behavior_steps": 100,
            "adept.model_batch_size": 64,
            "adept.rollout_every": 50,
            "adept.rollout_start": 50,
            "adept.rollout_batch": 64,
            "adept.model_update_steps": 5,
            "adept.is_batch_size": 256,
            "adept.diagnostics_batch": 256,
            "adept.true_error_every": 2,
            "adept.true_error_starts": 32,
            "adept.world_model.hidden": 64,
            "synther.preset": "smoke",
            "pgd.preset": "smoke",
            "dydiff.preset": "smoke",
            "dydiff.one_step_steps": 100,
        },
    },
}


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def budget_name(num_steps: int) -> str:
    """'paper-1m' at the paper's 1M steps or more, else 'cpu-<k>k' (METHOD.md §5: a reduced
    budget is named as such in every table)."""
    if num_steps >= 1_000_000:
        return f"paper-{num_steps // 1_000_000}m"
    return f"cpu-{num_steps / 1000:g}k"


def _field_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every leaf option of a config dataclass as ``dotted.name -> type``."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out.update(_field_types(kind, f"{prefix}{f.name}."))  # type: ignore[arg-type]
        else:
            out[f"{prefix}{f.name}"] = kind
    return out


def _train_options() -> dict[str, Any]:
    from adept.train import TrainConfig

    return _field_types(TrainConfig)


def option_key(key: str) -> str:
    """``adept.world-model.hidden`` (the CLI's spelling) → ``adept.world_model.hidden``."""
    return key.strip().lstrip("-").replace("-", "_")


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if args and len(args) < len(typing.get_args(kind)):
        return f"{_describe(args[0])} or none"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


def coerce(key: str, value: Any, kind: Any) -> Any:
    """``value`` (a TOML value, or a string from ``--set``) as an option of type ``kind``."""
    where = f"option {key}={value!r}"
    origin = typing.get_origin(kind)
    if origin is Literal:
        if value not in typing.get_args(kind):
            raise AdeptError(f"{where}: expected {_describe(kind)}")
        return value
    args = typing.get_args(kind)
    if type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(key, value, next(a for a in args if a is not type(None)))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise AdeptError(f"{where}: expected {_describe(kind)}")
    if kind is int:
        if isinstance(value, bool):
            raise AdeptError(f"{where}: expected {_describe(kind)}")
        try:
            return int(value) if isinstance(value, int) else int(str(value).replace("_", ""))
        except ValueError:
            raise AdeptError(f"{where}: expected {_describe(kind)}") from None
    if kind is float:
        if isinstance(value, bool):
            raise AdeptError(f"{where}: expected {_describe(kind)}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise AdeptError(f"{where}: expected {_describe(kind)}") from None
    if kind is Path:
        return str(value)
    if kind is str:
        if not isinstance(value, str):
            raise AdeptError(f"{where}: expected {_describe(kind)}")
        return value
    raise AdeptError(f"{where}: options of type {kind} cannot be set by a grid")


def check_overrides(overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Canonical keys and typed values, or a one-line error naming an unknown option."""
    options = _train_options()
    out: dict[str, Any] = {}
    for raw, value in overrides.items():
        key = option_key(raw)
        if key in GRID_FIELDS:
            raise AdeptError(f"{where} sets '{raw}', which the grid sets; use {GRID_FIELDS[key]}")
        if key not in options:
            close = difflib.get_close_matches(key, list(options), n=1)
            hint = f"; did you mean {close[0]}?" if close else "; see 'adept train --help'"
            raise AdeptError(f"{where}: unknown option '{raw}'{hint}")
        out[key] = coerce(key, value, options[key])
    return dict(sorted(out.items()))


def parse_assignments(items: Sequence[str], where: str) -> dict[str, str]:
    """``["adept.horizon=5", ...]`` → ``{"adept.horizon": "5"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AdeptError(f"{where} takes KEY=VALUE, got '{item}' (e.g. adept.horizon=5)")
        out[key.strip()] = value.strip()
    return out


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """``config`` with dotted options replaced (nested dataclasses rebuilt)."""
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            kind = typing.get_type_hints(type(config))[head]
            direct[head] = Path(value) if kind in (Path, Path | None) and value else value
    for head, sub in nested.items():
        direct[head] = apply_overrides(getattr(config, head), sub)
    return dataclasses.replace(config, **direct)


@dataclass(frozen=True)
class Variant:
    """A named method and the options it changes; ``agents`` and ``datasets`` restrict it to
    some of the grid's agents and datasets (e.g. an option whose right value differs by
    dataset)."""

    method: str
    agents: tuple[str, ...] | None = None
    set: Mapping[str, Any] = field(default_factory=dict)
    datasets: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        value = {
            "method": self.method,
            "agents": None if self.agents is None else list(self.agents),
            "set": dict(self.set),
        }
        if self.datasets is not None:  # absent otherwise: older grids' bench.json compare equal
            value["datasets"] = list(self.datasets)
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Variant:
        agents, datasets = value["agents"], value.get("datasets")
        return cls(
            value["method"],
            None if agents is None else tuple(agents),
            value["set"],
            None if datasets is None else tuple(datasets),
        )


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    dataset: str
    label: str
    variant: str
    method: str
    agent: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.label}/{self.variant}/{self.agent}/seed{self.seed}"

    @property
    def log_name(self) -> str:
        return self.id.replace("/", "__") + ".log"


@dataclass(frozen=True)
class GridSpec:
    """What a grid runs; stored in bench.json and compared on every later call."""

    datasets: tuple[str, ...]
    agents: tuple[str, ...]
    variants: Mapping[str, Variant]
    seeds: tuple[int, ...]
    num_steps: int
    eval_every: int
    eval_episodes: int
    set: Mapping[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> str:
        return budget_name(self.num_steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "datasets": list(self.datasets),
            "agents": list(self.agents),
            "seeds": list(self.seeds),
            "variants": {name: v.to_json() for name, v in self.variants.items()},
            "num_steps": self.num_steps,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            "set": dict(self.set),
            "budget": self.budget,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> GridSpec:
        return cls(
            datasets=tuple(value["datasets"]),
            agents=tuple(value["agents"]),
            variants={name: Variant.from_json(v) for name, v in value["variants"].items()},
            seeds=tuple(value["seeds"]),
            num_steps=int(value["num_steps"]),
            eval_every=int(value["eval_every"]),
            eval_episodes=int(value["eval_episodes"]),
            set=dict(value["set"]),
        )

    def cells(self) -> list[Cell]:
        from adept.datasets.registry import dataset_label

        out = []
        for dataset in self.datasets:
            for name, variant in self.variants.items():
                if variant.datasets is not None and dataset not in variant.datasets:
                    continue
                agents = self.agents if variant.agents is None else variant.agents
                for agent in agents:
                    for seed in self.seeds:
                        label = dataset_label(dataset)
                        out.append(Cell(dataset, label, name, variant.method, agent, seed))
        return out

    def cell_config(self, cell: Cell, root: Path) -> Any:
        """The TrainConfig of ``cell``: grid options, then ``--set``, then the variant's."""
        from adept.train import TrainConfig

        config = TrainConfig(
            dataset=cell.dataset,
            agent=cell.agent,  # type: ignore[arg-type]
            method=cell.method,  # type: ignore[arg-type]
            seed=cell.seed,
            num_steps=self.num_steps,
            eval_every=self.eval_every,
            eval_episodes=self.eval_episodes,
            run_dir=root / cell.id,
            progress=False,
        )
        return apply_overrides(config, {**self.set, **self.variants[cell.variant].set})

    def changes_from(self, stored: GridSpec) -> list[str]:
        """Fields of this spec that differ from ``stored``, as 'field: old → new'."""
        a, b = stored.to_json(), self.to_json()
        return [f"{k}: {_short(a[k])} → {_short(b[k])}" for k in a if a[k] != b[k]]

    def extending(self, stored: GridSpec) -> GridSpec:
        """``stored`` with this spec's new datasets, agents, seeds and variants added, or an
        error naming what --extend cannot change (it would change finished cells)."""
        fixed = [
            k
            for k in ("num_steps", "eval_every", "eval_episodes", "set")
            if getattr(self, k) != getattr(stored, k)
        ]
        redefined = [
            n
            for n in self.variants
            if n in stored.variants and self.variants[n] != stored.variants[n]
        ]
        if fixed or redefined:
            what = ", ".join(fixed + [f"variant {n}" for n in redefined])
            raise AdeptError(
                f"--extend adds cells but cannot change {what} of existing ones; "
                "use a new --root for a different budget or options"
            )

        def union(old: Sequence[Any], new: Sequence[Any]) -> tuple[Any, ...]:
            return tuple(old) + tuple(x for x in new if x not in old)

        return dataclasses.replace(
            stored,
            datasets=union(stored.datasets, self.datasets),
            agents=union(stored.agents, self.agents),
            seeds=union(stored.seeds, self.seeds),
            variants={**stored.variants, **self.variants},
        )


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _load_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise AdeptError(f"spec file {path} does not exist; give the path of a TOML grid") from None
    except tomllib.TOMLDecodeError as exc:
        raise AdeptError(f"spec file {path} is not valid TOML ({exc})") from None


SPEC_KEYS = (
    "datasets",
    "agents",
    "methods",
    "variants",
    "seeds",
    "num_steps",
    "eval_every",
    "eval_episodes",
    "set",
)


def _layer_errors(layer: Mapping[str, Any], where: str) -> None:
    unknown = [k for k in layer if option_key(k) not in SPEC_KEYS]
    if unknown:
        raise AdeptError(
            f"{where}: unknown key(s) {', '.join(unknown)}; a grid has {', '.join(SPEC_KEYS)} "
            "(put adept train options under [set] or in a variant)"
        )


def _variant(name: str, value: Any, where: str) -> Variant:
    from adept.train import TrainConfig

    if not isinstance(value, Mapping) or "method" not in value:
        raise AdeptError(
            f"{where}: variant '{name}' needs a method, e.g. {name} = {{method = \"adept\"}}"
        )
    methods = typing.get_args(typing.get_type_hints(TrainConfig)["method"])
    if value["method"] not in methods:
        raise AdeptError(
            f"{where}: variant '{name}' has unknown method '{value['method']}'; "
            f"methods: {', '.join(methods)}"
        )
    agents = value.get("agents")
    if agents is not None:
        agents = tuple(_agents(agents, f"{where}, variant '{name}'"))
    datasets = value.get("datasets")
    if datasets is not None:
        if isinstance(datasets, str) or not all(isinstance(d, str) for d in datasets):
            raise AdeptError(
                f"{where}: variant '{name}' datasets must be a list of dataset names, "
                f"got {datasets!r}"
            )
        datasets = tuple(datasets)
    rest = {k: v for k, v in value.items() if k not in ("method", "agents", "datasets", "set")}
    rest.update(value.get("set", {}))
    overrides = check_overrides(rest, f"{where}, variant '{name}'")
    return Variant(value["method"], agents, overrides, datasets)


def _agents(names: Sequence[str], where: str) -> list[str]:
    from adept.agents import AGENTS

    for name in names:
        if name not in AGENTS:
            raise AdeptError(f"{where}: unknown agent '{name}'; agents: {', '.join(AGENTS)}")
    return list(names)


def parse_variant_arg(text: str) -> tuple[str, dict[str, Any]]:
    """``--variant 'adept-h5:method=adept,adept.horizon=5'`` → (name, definition)."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise AdeptError(
            f"--variant takes NAME:method=M[,KEY=VALUE...], got '{text}' "
            "(e.g. adept-h5:method=adept,adept.horizon=5)"
        )
    items = [item for item in rest.split(",") if item.strip()]
    value: dict[str, Any] = dict(parse_assignments(items, f"--variant {name}"))
    for key in ("agents", "datasets"):
        if key in value:
            value[key] = str(value[key]).split("+")
    return name.strip(), value


def resolve_spec(layers: Sequence[tuple[str, Mapping[str, Any]]]) -> GridSpec:
    """Merge (where, layer) pairs in order (preset, file, command line) into one checked spec.

    Lists replace lists; ``set`` and ``variants`` merge by key; ``methods`` adds a variant
    named after each method.
    """
    merged: dict[str, Any] = {"set": {}, "variants": {}}
    for where, layer in layers:
        _layer_errors(layer, where)
        for raw, value in layer.items():
            key = option_key(raw)
            if key == "set":
                if not isinstance(value, Mapping):
                    raise AdeptError(f"{where}: 'set' must be a table of option = value")
                merged["set"].update(check_overrides(value, f"{where}, set"))
            elif key == "variants":
                if not isinstance(value, Mapping):
                    raise AdeptError(f"{where}: 'variants' must be a table of name = {{...}}")
                for name, definition in value.items():
                    merged["variants"][name] = _variant(name, definition, where)
            elif key == "methods":
                for method in value:
                    merged["variants"][method] = _variant(method, {"method": method}, where)
            else:
                merged[key] = value
    missing = [
        k for k in ("datasets", "agents", "seeds", "num_steps") if merged.get(k) in (None, [], ())
    ]
    if not merged["variants"]:
        missing.append("methods (or variants)")
    if missing:
        raise AdeptError(
            f"the grid names no {', '.join(missing)}; give them on the command line "
            "(--datasets, --methods, --agents, --seeds, --num-steps), in --spec, or use --preset"
        )
    seeds = [coerce("seeds", s, int) for s in merged["seeds"]]
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise AdeptError(f"--seeds must be distinct non-negative integers, got {seeds}")
    if len(set(merged["datasets"])) != len(merged["datasets"]):
        raise AdeptError(f"--datasets names a dataset twice: {merged['datasets']}")
    for name, variant in merged["variants"].items():
        if variant.datasets is not None and not set(variant.datasets) & set(merged["datasets"]):
            warn(
                f"variant '{name}' runs on none of the grid's datasets (it names "
                f"{', '.join(variant.datasets)}); it has no cells"
            )
    numbers = {
        k: coerce(k, merged.get(k, default), int)
        for k, default in (("num_steps", 0), ("eval_every", 5000), ("eval_episodes", 10))
    }
    for key, value in numbers.items():
        if value < 1:
            raise AdeptError(f"--{key.replace('_', '-')} must be positive, got {value}")
    return GridSpec(
        datasets=tuple(merged["datasets"]),
        agents=tuple(_agents(merged["agents"], "--agents")),
        variants=merged["variants"],
        seeds=tuple(seeds),
        num_steps=numbers["num_steps"],
        eval_every=numbers["eval_every"],
        eval_episodes=numbers["eval_episodes"],
        set=dict(sorted(merged["set"].items())),
    )


class BenchRoot:
    """The root folder: bench.json (written only by the driver, atomically) and a lock that
    keeps two drivers off one root."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = self.path / BENCH_JSON
        self.state: dict[str, Any] = {}

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """bench.json of ``path``, or a one-line error when it is not a bench root."""
        path = Path(path)
        file = path / BENCH_JSON
        if not path.is_dir():
            raise AdeptError(f"{path} does not exist; give the --root of an 'adept bench' run")
        if not file.exists():
            raise AdeptError(
                f"{path} is not a bench root (no {BENCH_JSON}); "
                "give the --root of an 'adept bench' run"
            )
        try:
            state = json.loads(file.read_text())
            GridSpec.from_json(state["spec"])
            cells = state["cells"]
            assert isinstance(cells, dict)
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            raise AdeptError(
                f"{file} is damaged ({type(exc).__name__}: {exc}); "
                f"restore it, or delete it and re-run the grid's command to rebuild it"
            ) from None
        return state

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the root's lock; a root this call created is removed again when the call fails
        before writing anything else (bad input leaves nothing on disk)."""
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock():
                yield
        except BaseException:
            if created and [p.name for p in self.path.iterdir()] == [LOCK]:
                (self.path / LOCK).unlink()
                self.path.rmdir()
            raise

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return sole_lock(
            self.path / LOCK,
            lambda holder: (
                f"another adept bench ({holder}) is running on {self.path}; "
                "wait for it, or stop it and re-run"
            ),
        )

    def save(self) -> None:
        from adept.store.runs import atomic_write_json

        self.state["updated"] = _now()
        atomic_write_json(self.file, self.state)


def check_cell_dir(cell: Cell, config: Any) -> None:
    """Refuse a cell whose run directory does not hold this cell's run (edited by hand, or
    written by another grid), with the fix; an unfinished run is fine (it resumes)."""
    from adept.store.runs import CHECKPOINT, CONFIG, SUMMARY, config_changes
    from adept.train import same_run_fields

    path = Path(config.run_dir)
    fix = f"delete {path} to run that cell again"
    if path.exists() and not path.is_dir():
        raise AdeptError(f"cell {cell.id}: {path} is not a directory; {fix}")
    if not (path / CONFIG).exists():
        if (path / CHECKPOINT).exists() or (path / SUMMARY).exists():
            raise AdeptError(f"cell {cell.id}: {path} has run files but no {CONFIG}; {fix}")
        return
    try:
        changes = config_changes(path, config, same_run_fields(config))
    except ValueError as exc:
        raise AdeptError(f"cell {cell.id}: {path / CONFIG} is unreadable ({exc}); {fix}") from None
    if changes:
        raise AdeptError(
            f"cell {cell.id}: {path} holds a run with another config ({'; '.join(changes[:3])}); "
            f"{fix}"
        )
    if (path / SUMMARY).exists():
        try:
            json.loads((path / SUMMARY).read_text())["normalized_score_last"]
        except (ValueError, KeyError, TypeError):
            raise AdeptError(f"cell {cell.id}: {path / SUMMARY} is damaged; {fix}") from None


def _copy_cell(src: Path, dest: Path, names: Sequence[str], extra: Mapping[str, Any]) -> None:
    """Copy ``names`` (those present) from ``src`` and write ``extra`` as JSON files into
    ``dest``, replacing it whole: everything goes to a temporary sibling first, so a failure
    leaves ``dest`` as it was."""
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{os.getpid()}.tmp"
    old = dest.parent / f".{dest.name}.{os.getpid()}.old"
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.mkdir()
        for name in names:
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        for name, value in extra.items():
            (tmp / name).write_text(json.dumps(value, indent=2) + "\n")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not dest.exists():
            os.replace(old, dest)
        reason = exc.strerror or exc
        raise AdeptError(f"could not write {dest} ({reason}); nothing was changed") from None
    shutil.rmtree(old, ignore_errors=True)


def _archived_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """What of a cell's bench.json record the archive keeps (the log belongs to the root)."""
    return {k: v for k, v in record.items() if k not in ("log", "log_tail", "path")}


def archive_cell(archive: Path, cell_id: str, run_dir: Path, record: Mapping[str, Any]) -> None:
    """Keep a finished cell's light files and record in ``archive/<cell id>/``."""
    _copy_cell(Path(run_dir), Path(archive) / cell_id, ARCHIVED, {RECORD: _archived_record(record)})


def is_archived(archive: Path, cell_id: str, run_dir: Path) -> bool:
    """Whether ``archive`` holds this finished run (the same summary.json)."""
    from adept.store.runs import SUMMARY

    kept = Path(archive) / cell_id / SUMMARY
    return kept.is_file() and kept.read_bytes() == (Path(run_dir) / SUMMARY).read_bytes()


def _kept_run(src: Path, config: Any) -> tuple[list[str], dict[str, Any]]:
    """How the finished run kept at ``src`` differs from ``config`` (in the fields its run
    reads), and its bench.json outcome; ValueError, KeyError or TypeError when damaged."""
    from adept.store.runs import SUMMARY, config_changes
    from adept.train import same_run_fields

    changes = config_changes(src, config, same_run_fields(config))
    return changes, _done(json.loads((src / SUMMARY).read_text()))


def _other_data(src: Path, fingerprint: Callable[[], str]) -> str | None:
    """'other data (…)' when the run kept at ``src`` recorded a data fingerprint that is not
    ``fingerprint()``; None when it is the same data, or not recorded (``runs.fact_changes``)."""
    from adept.store.runs import fact_changes
    from adept.train import DATASET_FINGERPRINT

    changed = fact_changes(src, {DATASET_FINGERPRINT: fingerprint()})
    return changed[0] if changed else None


def _kept_record(src: Path) -> dict[str, Any]:
    """The bench.json record kept beside an archived run (empty when there is none)."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        return dict(json.loads((src / RECORD).read_text()))
    return {}


def check_archived(
    archive: Path, cell: Cell, config: Any, fingerprint: Callable[[], str]
) -> dict[str, Any] | None:
    """The archive's bench.json record of ``cell`` finished, or None when it does not hold the
    cell finished; a kept run of another config, of other data (``fingerprint``: today's
    dataset's, asked for only when the archive holds the cell), or a damaged one, is refused
    with the fix."""
    from adept.store.runs import CONFIG, SUMMARY

    src = Path(archive) / cell.id
    if not (src / SUMMARY).is_file():
        return None
    fix = f"delete {src} to run that cell again, or give another --archive"
    try:
        changes, record = _kept_run(src, config)
        other = _other_data(src, fingerprint)
    except (ValueError, KeyError, TypeError) as exc:
        raise AdeptError(f"cell {cell.id}: the archive's {src} is damaged ({exc}); {fix}") from None
    if changes:
        raise AdeptError(
            f"cell {cell.id}: the archive's {src / CONFIG} holds another config "
            f"({'; '.join(changes[:3])}); {fix}"
        )
    if other:
        raise AdeptError(
            f"cell {cell.id}: the archive's run was made from {other} than "
            f"{cell.dataset} is on this machine; make that dataset as it was made there "
            f"(same version, seed and threads), or {fix}"
        )
    return {**_kept_record(src), **record, "restored": True}


RunKey = tuple[str, str, str, int]
"""What a finished run is looked up by among other grids' runs: dataset, agent, method, seed."""


def reusable_runs(sources: Sequence[Path]) -> dict[RunKey, list[tuple[Path, str]]]:
    """Every finished run held by ``sources`` (other grids' ``--archive`` folders or roots),
    as (source, run's path in it) by :data:`RunKey`; a folder without runs gives none (the
    sources are folders: :func:`check_reuse` refused the others before the grid began)."""
    from adept.store.runs import CONFIG, SUMMARY

    found: dict[RunKey, list[tuple[Path, str]]] = {}
    for source in sources:
        source = Path(source).absolute()
        for summary in sorted(source.rglob(SUMMARY)):
            try:
                c = json.loads((summary.parent / CONFIG).read_text())["config"]
                key = (str(c["dataset"]), str(c["agent"]), str(c["method"]), int(c["seed"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a finished run of adept train
            found.setdefault(key, []).append(
                (source, summary.parent.relative_to(source).as_posix())
            )
    return found


def _shown(path: Path) -> str:
    """``path`` as a report names it: relative to the working directory when inside it."""
    with contextlib.suppress(ValueError):
        return Path(path).relative_to(Path.cwd()).as_posix()
    return str(path)


_OUTCOME: tuple[str, ...] = ("wall_time", "attempts", "finished")
"""What a reused cell's record takes from the other grid's (its names and path stay this grid's)."""


def find_reused(
    candidates: Sequence[tuple[Path, str]], cell: Cell, config: Any, fingerprint: Callable[[], str]
) -> tuple[Path, dict[str, Any]] | None:
    """The first of ``candidates`` (other grids' finished runs of this cell's dataset, agent,
    method and seed, from :func:`reusable_runs`) that is this cell's run — the same config in
    every field the run reads, made from the same data — and the bench.json record it gives
    the cell; None when none is. When none is, each candidate passed over is named in a
    warning with why (damaged, made from other data, or another config: its first
    differences), so a cell that runs again never does so silently; when one is, those passed
    over before it are not (another grid's run of the same key under other options is the
    rule when grids share cells, not news). A run from before runs recorded their data's
    fingerprint is reused with a warning that its data could not be checked."""
    from adept.store.runs import CONFIG
    from adept.train import DATASET_FINGERPRINT

    passed_over: list[str] = []
    for source, name in candidates:
        src = source / name
        try:
            changes, record = _kept_run(src, config)
            other = None if changes else _other_data(src, fingerprint)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            passed_over.append(f"cell {cell.id}: {src} is damaged ({exc}); not reused")
            continue
        if changes or other:
            why = other or f"another config: {'; '.join(changes[:3])}"
            passed_over.append(f"cell {cell.id}: {src} was made from {why}; not reused")
            continue
        if DATASET_FINGERPRINT not in json.loads((src / CONFIG).read_text()):  # read above
            warn(
                f"cell {cell.id}: {src} records no data fingerprint (a run from before adept "
                f"recorded it), so its data is taken on trust; delete it there to run the "
                "cell here instead"
            )
        kept = _kept_record(src)
        outcome: dict[str, Any] = {k: kept[k] for k in _OUTCOME if k in kept}
        reused = {"archive": _shown(source), "cell": name}
        return src, {**outcome, **record, "restored": True, "reused_from": reused}
    for message in passed_over:
        warn(message)
    return None


_PROVENANCE: tuple[str, ...] = ("restored", "reused_from", *_OUTCOME)
"""What a restored cell's record says about where its run came from; kept in the run
directory too (:func:`restore_cell`), so a restore the driver did not live to record in
bench.json still says so on the next start."""


def restore_cell(src: Path, run_dir: Path, record: Mapping[str, Any]) -> None:
    """Put the finished run kept at ``src`` (an archive's or another grid's, checked first by
    :func:`check_archived` or :func:`find_reused`) into ``run_dir``, replacing an unfinished
    one, with ``record``'s provenance beside it."""
    provenance = {k: record[k] for k in _PROVENANCE if k in record}
    _copy_cell(Path(src), Path(run_dir), ARCHIVED, {RECORD: provenance})


def check_reuse(sources: Sequence[Path]) -> None:
    """Refuse a ``--reuse`` source that is not a folder, before the grid makes anything."""
    for source in sources:
        if not Path(source).is_dir():
            raise AdeptError(
                f"--reuse {Path(source).absolute()} is not a folder; give another grid's "
                "--archive folder or root"
            )


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run one cell, or a pack of cells that differ only by seed (one
    ``adept train --seeds`` process); JSON-serializable, sent to processes and Ray."""

    id: str
    config: dict[str, Any]
    log: str
    threads: int
    cells: dict[str, str] = field(default_factory=dict)
    """A pack's cells: cell id → run directory (empty for a single cell)."""

    def members(self) -> dict[str, str]:
        """Cell id → run directory of every cell this task runs."""
        return dict(self.cells) or {self.id: str(self.config["run_dir"])}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def pack_tasks(
    tasks: Sequence[CellTask], cells: Mapping[str, tuple[Cell, Any]], pack: int
) -> list[CellTask]:
    """``tasks`` with the cells that differ only by seed gathered, ``pack`` seeds at most, into
    tasks of one ``adept train --seeds`` process each (in seed order; a lone cell stays as it
    is). The pack's run directory is its cells' parent, so each seed trains in its own cell's
    directory, and ``for_seed`` gives back exactly each cell's own config."""
    from adept.store.runs import to_jsonable

    if pack <= 1:
        return list(tasks)
    groups: dict[tuple[str, str, str], list[CellTask]] = {}
    for task in tasks:
        cell = cells[task.id][0]
        groups.setdefault((cell.label, cell.variant, cell.agent), []).append(task)
    out: list[CellTask] = []
    for (label, variant, agent), members in groups.items():
        members.sort(key=lambda t: cells[t.id][0].seed)
        for start in range(0, len(members), pack):
            chunk = members[start : start + pack]
            if len(chunk) == 1:
                out.append(chunk[0])
                continue
            seeds = tuple(cells[t.id][0].seed for t in chunk)
            first = cells[chunk[0].id][1]
            config = dataclasses.replace(first, seeds=seeds, run_dir=Path(first.run_dir).parent)
            for t in chunk:
                if config.for_seed(cells[t.id][0].seed) != cells[t.id][1]:
                    raise AssertionError(f"pack of {t.id}: its seed's config is not the cell's")
            name = f"{label}/{variant}/{agent}/seeds{'+'.join(map(str, seeds))}"
            log = Path(chunk[0].log).with_name(name.replace("/", "__") + ".log")
            out.append(
                CellTask(
                    name,
                    to_jsonable(config),
                    str(log),
                    chunk[0].threads,
                    {t.id: str(t.config["run_dir"]) for t in chunk},
                )
            )
    return out


def config_from_json(cls: type, value: Mapping[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from :func:`adept.store.runs.to_jsonable` output."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in value:
            continue
        kind, raw = hints[f.name], value[f.name]
        if dataclasses.is_dataclass(kind):
            kwargs[f.name] = config_from_json(kind, raw)  # type: ignore[arg-type]
        elif kind in (Path, Path | None) and raw is not None:
            kwargs[f.name] = Path(raw)
        else:
            kwargs[f.name] = raw
    return cls(**kwargs)


def _done(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The bench.json fields of a finished cell, from its summary.json."""
    return {
        "state": "done",
        "normalized_score_last": summary["normalized_score_last"],
        "normalized_score_best": summary["normalized_score_best"],
        "error": None,
        "log_tail": None,
    }


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if type(exc).__name__ == "AdeptError" else f"{type(exc).__name__}: {text}"


def _attempt(run_dir: Path) -> int:
    """Count this start of the cell in its run dir (Ray retries are visible to the driver)."""
    from adept.store.runs import atomic_write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / MARKER
    attempts = 0
    with contextlib.suppress(OSError, ValueError, KeyError):
        attempts = int(json.loads(marker.read_text())["attempts"])
    atomic_write_json(
        marker,
        {
            "attempts": attempts + 1,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _now(),
        },
    )
    return attempts + 1


def execute_cell(
    task: CellTask | Mapping[str, Any], redirect: bool = False
) -> dict[str, dict[str, Any]]:
    """Run one cell (or a pack of them) in this process and return the bench.json record of
    each, by cell id (never raises but for KeyboardInterrupt). ``redirect``: append this
    process's output to the task's log (Ray workers; a local worker process already writes
    there)."""
    import torch

    from adept.store.runs import CHECKPOINT, SUMMARY, load_checkpoint
    from adept.train import TrainConfig, train

    if not isinstance(task, CellTask):
        task = CellTask(**task)
    log = Path(task.log)
    started = time.perf_counter()
    members = task.members()
    records: dict[str, dict[str, Any]] = {cell_id: {} for cell_id in members}
    with contextlib.ExitStack() as stack:
        if redirect:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log.open("a", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        try:
            config = config_from_json(TrainConfig, task.config)
            torch.set_num_threads(task.threads)
            for cell_id, run_dir in members.items():
                records[cell_id]["attempts"] = attempt = _attempt(Path(run_dir))
                print(f"[{_now()}] cell {cell_id}: attempt {attempt}", flush=True)
                checkpoint = Path(run_dir) / CHECKPOINT
                if checkpoint.exists() and not (Path(run_dir) / SUMMARY).exists():
                    step = load_checkpoint(checkpoint)["step"]
                    print(f"[{_now()}] cell {cell_id}: resuming from step {step}", flush=True)
            train(config)
            error = "the run ended without its summary"
        except Exception as exc:  # one failed cell never stops the grid
            traceback.print_exc()
            print(f"adept-bench: error: {_one_line(exc)}", file=sys.stderr, flush=True)
            error = _one_line(exc)
    wall_time = round(time.perf_counter() - started, 3)
    for cell_id, run_dir in members.items():  # a failed pack's finished seeds are done
        record = records[cell_id]
        summary = Path(run_dir) / SUMMARY
        if summary.exists():
            record.update(_done(json.loads(summary.read_text())))
        else:
            record.update(state="failed", error=error, log_tail=_tail(log))
        record["wall_time"] = wall_time
    return records


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m adept.bench TASK_JSON``: a local worker process runs one cell (or pack)."""
    task = CellTask(**json.loads(argv[0]))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    try:
        records = execute_cell(task)
    except KeyboardInterrupt:
        return 130
    return 0 if all(r["state"] == "done" for r in records.values()) else 1


Started = Callable[[str], None]
Finished = Callable[[str, dict[str, Any]], None]


def _env_threads(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_local(
    tasks: Sequence[CellTask], workers: int, started: Started, finished: Finished
) -> None:
    """Each cell in its own Python process, ``workers`` at a time; on Ctrl-C the running
    cells are interrupted (they resume from their last checkpoint next time)."""
    pending = list(tasks)
    running: dict[str, tuple[subprocess.Popen[bytes], CellTask, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                task = pending.pop(0)
                Path(task.log).parent.mkdir(parents=True, exist_ok=True)
                with open(task.log, "ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "adept.bench", task.to_json()],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=_env_threads(task.threads),
                    )
                running[task.id] = (proc, task, time.perf_counter())
                for cell_id in task.members():
                    started(cell_id)
            for task_id, (proc, task, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[task_id]
                wall_time = time.perf_counter() - t0
                for cell_id, run_dir in task.members().items():
                    finished(cell_id, _local_record(proc.returncode, task, run_dir, wall_time))
            time.sleep(0.1)
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # SIGINT may be ignored (a background start)
        deadline = time.monotonic() + 30
        for proc, _, _ in running.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
        raise


def _local_record(
    returncode: int, task: CellTask, cell_dir: str, wall_time: float
) -> dict[str, Any]:
    """The record of the cell in ``cell_dir`` after its task's process exited."""
    from adept.store.runs import SUMMARY

    run_dir = Path(cell_dir)
    record: dict[str, Any] = {"wall_time": round(wall_time, 3)}
    with contextlib.suppress(OSError, ValueError, KeyError):
        record["attempts"] = int(json.loads((run_dir / MARKER).read_text())["attempts"])
    if (run_dir / SUMMARY).exists():  # a failed pack's finished seeds are done
        record.update(_done(json.loads((run_dir / SUMMARY).read_text())))
        return record
    tail = _tail(Path(task.log))
    errors = [line for line in tail.splitlines() if line.startswith("adept-bench: error: ")]
    if errors:
        error = errors[-1].removeprefix("adept-bench: error: ")
    elif returncode < 0:
        error = f"the cell's process was killed by {signal.Signals(-returncode).name}"
    else:
        error = f"the cell's process exited with status {returncode}"
    record.update(state="failed", error=error, log_tail=tail)
    return record


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AdeptError("--backend ray needs Ray; pip install 'adept-rl[ray]'") from None
    return ray


def check_ray_address(address: str | None) -> None:
    """Fail fast on a HOST:PORT nothing listens on (Ray itself waits a long time)."""
    if address in (None, "auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise AdeptError(f"--address must be auto or HOST:PORT, got '{address}'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise AdeptError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            "'ray start --head' or give the head node's address"
        ) from None


def run_ray(
    tasks: Sequence[CellTask],
    address: str | None,
    gpus_per_cell: float | None,
    max_retries: int,
    started: Started,
    finished: Finished,
    num_cpus: int | None = None,
) -> None:
    """Each cell a Ray task (``num_cpus`` = its threads), retried ``max_retries`` times when
    its worker dies; a retried cell resumes from its checkpoint. Needs the ray extra."""
    ray = _import_ray()
    from adept.data.cache import data_dir

    # workers on other nodes do not inherit this environment: name the shared dataset cache
    init: dict[str, Any] = {
        "log_to_driver": False,
        "include_dashboard": False,
        "runtime_env": {"env_vars": {"ADEPT_DATA_DIR": str(data_dir().absolute())}},
    }
    if address in (None, "local"):
        init["num_cpus"] = num_cpus
    else:
        init["address"] = address
    try:
        ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise AdeptError(f"cannot connect to Ray at {address} ({_one_line(exc)})") from None
    try:
        gpus = gpus_per_cell
        if gpus is None:
            gpus = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        remote = ray.remote(_ray_cell)
        pending: dict[Any, CellTask] = {}
        submitted = time.time()
        waiting = {
            cell_id: Path(run_dir) / MARKER
            for task in tasks
            for cell_id, run_dir in task.members().items()
        }
        for task in tasks:
            ref = remote.options(
                num_cpus=task.threads, num_gpus=gpus, max_retries=max_retries
            ).remote(dataclasses.asdict(task))
            pending[ref] = task
        while pending:
            # Ray says nothing when a task starts: a cell is running once it marks its start
            for cell_id, marker in list(waiting.items()):
                with contextlib.suppress(OSError):
                    if marker.stat().st_mtime >= submitted:
                        del waiting[cell_id]
                        started(cell_id)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                task = pending.pop(ref)
                for cell_id in task.members():
                    if waiting.pop(cell_id, None) is not None:
                        started(cell_id)
                try:
                    records = ray.get(ref)
                except Exception as exc:  # the task died more than max_retries times
                    lost = {
                        "state": "failed",
                        "error": f"Ray task lost: {_one_line(exc)}",
                        "log_tail": _tail(Path(task.log)),
                    }
                    records = {cell_id: dict(lost) for cell_id in task.members()}
                for cell_id, record in records.items():
                    finished(cell_id, record)
    except KeyboardInterrupt:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        ray.shutdown()


def _ray_cell(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return execute_cell(task, redirect=True)


@dataclass(frozen=True)
class BenchOptions:
    """How a grid runs (not part of what it computes)."""

    root: Path
    workers: int | None = None
    """Cells at once; None: one per core (small MLPs use one thread better than two: on 2
    cores, 2 workers × 1 thread ran 30.4 IQL cells/hour, 1 × 2 threads 21.7)."""
    threads: int | None = None
    """Torch threads per cell; None: cores / workers."""
    pack: int = 1
    """Cells that differ only by seed trained in one process, up to this many (``adept train
    --seeds``: their agents' updates batched); 1: every cell its own process."""
    backend: Literal["local", "ray"] = "local"
    address: str | None = None
    gpus_per_cell: float | None = None
    max_retries: int = 3
    extend: bool = False
    progress: bool = True
    archive: Path | None = None
    """Keep each finished cell's light files here, and take the finished cells found here
    instead of running them (a grid continued on another machine)."""
    reuse: tuple[Path, ...] = ()
    """Other grids' archives or roots: a cell that one of them already ran (the same config in
    every field the run reads, the same data) is taken from there instead of run."""


@dataclass
class BenchResult:
    root: Path
    done: int
    failed: int
    skipped: int
    total: int
    wall_time: float
    restored: int = 0
    """Cells taken from the archive."""
    reused: int = 0
    """Cells taken from other grids (``--reuse``)."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def prepare(spec: GridSpec, options: BenchOptions) -> tuple[BenchRoot, GridSpec]:
    """Check the root against ``spec``; returns the root and the spec to run (extended)."""
    root = BenchRoot(options.root)
    if root.path.exists() and not root.path.is_dir():
        raise AdeptError(f"--root {root.path} is a file; give a folder")
    if root.file.exists():
        state = BenchRoot.read(root.path)
        stored = GridSpec.from_json(state["spec"])
        changes = spec.changes_from(stored)
        if changes and options.extend:
            spec = spec.extending(stored)
        elif changes:
            raise AdeptError(
                f"{root.path} holds a grid with another spec ({'; '.join(changes)}); repeat the "
                "original command to resume it, add --extend to add cells, or use a new --root"
            )
        root.state = state
    elif root.path.exists() and any(p.name != LOCK for p in root.path.iterdir()):
        raise AdeptError(
            f"--root {root.path} is a non-empty folder without {BENCH_JSON}, not a bench root; "
            "give a new or empty folder"
        )
    return root, spec


def _preflight(
    spec: GridSpec, root: Path, progress: bool
) -> tuple[list[tuple[Cell, Any]], dict[str, Any]]:
    """Make the datasets, build and check every cell's config, before anything is written;
    returns the cells with their configs, and the datasets by name."""
    from adept.datasets.registry import dataset_label, load_dataset
    from adept.methods import check_method

    labels: dict[str, str] = {}
    for dataset in spec.datasets:
        label = dataset_label(dataset)
        if label in labels:
            raise AdeptError(
                f"datasets {labels[label]} and {dataset} share the folder name '{label}'; "
                "rename one file"
            )
        labels[label] = dataset
    cells = [(cell, spec.cell_config(cell, root)) for cell in spec.cells()]
    for _, config in cells:
        config.validate()
    datasets = {}
    for dataset in spec.datasets:
        data = load_dataset(dataset, progress=progress)
        if data.env_id is None:
            raise AdeptError(
                f"dataset {dataset} names no env; add env_id under [set] (e.g. env_id = "
                '"Hopper-v5") or name the file after its env'
            )
        datasets[dataset] = data
    for cell, config in cells:
        check_method(config, datasets[cell.dataset])
        check_cell_dir(cell, config)
    return cells, datasets


def run_bench(spec: GridSpec, options: BenchOptions) -> BenchResult:
    """Run (or resume) a grid; see the module docstring. SIGTERM stops it as Ctrl-C does (the
    running cells are interrupted, to resume next time): a grid started in the background,
    where SIGINT is ignored, is stopped with ``kill``, not left with orphaned workers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return _run_bench(spec, options)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run_bench(spec, options)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_bench(spec: GridSpec, options: BenchOptions) -> BenchResult:
    from tqdm.auto import tqdm

    workers = cpu_count() if options.workers is None else options.workers
    if workers < 1:
        raise AdeptError(f"--workers must be positive, got {workers}")
    threads = max(cpu_count() // workers, 1) if options.threads is None else options.threads
    if threads < 1:
        raise AdeptError(f"--threads must be positive, got {threads}")
    if options.max_retries < 0:
        raise AdeptError(f"--max-retries must be non-negative, got {options.max_retries}")
    if options.pack < 1:
        raise AdeptError(f"--pack must be positive, got {options.pack}")
    if options.backend == "ray":
        _import_ray()
        check_ray_address(options.address)
    # cells and Ray workers may run elsewhere than this process's working directory
    options = dataclasses.replace(options, root=Path(options.root).absolute())
    archive = None if options.archive is None else Path(options.archive).absolute()
    if archive is not None and archive.exists() and not archive.is_dir():
        raise AdeptError(f"--archive {archive} is a file; give a folder")
    check_reuse(options.reuse)
    root, spec = prepare(spec, options)
    t0 = time.perf_counter()
    with root.locked():
        cells, datasets = _preflight(spec, root.path, options.progress)
        from adept import __version__
        from adept.store.runs import SUMMARY, to_jsonable

        reusable = reusable_runs(options.reuse)
        kept_runs: dict[str, tuple[Path, dict[str, Any]]] = {}  # all checked before any is restored
        fingerprints: dict[str, str] = {}

        def fingerprint_of(dataset: str) -> str:
            if dataset not in fingerprints:
                fingerprints[dataset] = datasets[dataset].fingerprint()
            return fingerprints[dataset]

        for cell, config in cells:
            if (Path(config.run_dir) / SUMMARY).exists():
                continue
            data = functools.partial(fingerprint_of, cell.dataset)
            kept = None if archive is None else check_archived(archive, cell, config, data)
            if kept is not None:
                kept_runs[cell.id] = (archive / cell.id, kept)  # type: ignore[operator]
                continue
            key = (config.dataset, config.agent, config.method, config.seed)
            found = find_reused(reusable.get(key, []), cell, config, data)
            if found is not None:
                kept_runs[cell.id] = found

        old = root.state.get("cells", {})
        records: dict[str, dict[str, Any]] = {}
        tasks = []
        restored_count = reused_count = 0
        for cell, config in cells:
            record = {
                "dataset": cell.dataset,
                "dataset_label": cell.label,
                "variant": cell.variant,
                "method": cell.method,
                "agent": cell.agent,
                "seed": cell.seed,
                "path": cell.id,
                "log": f"logs/{cell.log_name}",
                "state": "queued",
                "wall_time": None,
                "attempts": 0,
                "normalized_score_last": None,
                "normalized_score_best": None,
                "error": None,
                "log_tail": None,
                **{k: v for k, v in old.get(cell.id, {}).items() if k != "state"},
            }
            summary = Path(config.run_dir) / SUMMARY
            if cell.id in kept_runs:
                src, kept = kept_runs[cell.id]
                restore_cell(src, config.run_dir, kept)
                record.update(kept)
                if archive is not None and src == archive / cell.id:
                    restored_count += 1
                else:
                    reused_count += 1
            elif summary.exists():
                record.update(_done(json.loads(summary.read_text())))
                kept_here = _kept_record(Path(config.run_dir))  # restored by an earlier start
                record.update({k: kept_here[k] for k in _PROVENANCE if k in kept_here})
            else:
                record["state"] = "queued"
                for stale in ("restored", "reused_from"):  # a run from elsewhere is gone
                    record.pop(stale, None)
                tasks.append(
                    CellTask(
                        cell.id,
                        to_jsonable(config),
                        str(root.path / "logs" / cell.log_name),
                        threads,
                    )
                )
            records[cell.id] = record
        tasks = pack_tasks(tasks, {cell.id: (cell, config) for cell, config in cells}, options.pack)
        for task in tasks:  # a pack's cells share its log
            for cell_id in task.members():
                records[cell_id]["log"] = str(Path(task.log).relative_to(root.path))
        root.state = {
            "format": FORMAT,
            "adept_version": __version__,
            "spec": spec.to_json(),
            "created": root.state.get("created", _now()),
            "cells": records,
        }
        root.save()
        skipped = len(cells) - len(tasks)

        def keep(cell_id: str) -> None:
            """Archive a finished cell; a failure is reported, never stops the grid (the next
            start archives what is missing)."""
            run_dir = root.path / records[cell_id]["path"]
            try:
                archive_cell(archive, cell_id, run_dir, records[cell_id])  # type: ignore[arg-type]
            except AdeptError as exc:
                print(f"warning: {exc}", file=sys.stderr, flush=True)

        if archive is not None:
            for cell_id, record in records.items():
                run_dir = root.path / record["path"]
                if record["state"] == "done" and not is_archived(archive, cell_id, run_dir):
                    keep(cell_id)
        bar = tqdm(
            total=len(cells),
            initial=skipped,
            unit="cell",
            disable=not options.progress,
            desc="bench",
            dynamic_ncols=True,
        )
        counts = {"running": 0, "failed": 0}

        def show() -> None:
            bar.set_postfix(running=counts["running"], failed=counts["failed"], refresh=True)

        def started(cell_id: str) -> None:
            records[cell_id]["state"] = "running"
            counts["running"] += 1
            root.save()
            show()

        def finished(cell_id: str, record: dict[str, Any]) -> None:
            records[cell_id].update(record)
            records[cell_id]["finished"] = _now()
            counts["running"] -= 1
            if record["state"] == "failed":
                counts["failed"] += 1
                bar.write(f"cell {cell_id} failed: {record['error']}")
            root.save()
            if archive is not None and record["state"] == "done":
                keep(cell_id)
            bar.update(1)
            show()

        try:
            if options.backend == "ray":
                run_ray(
                    tasks,
                    options.address,
                    options.gpus_per_cell,
                    options.max_retries,
                    started,
                    finished,
                    num_cpus=workers * threads,
                )
            else:
                run_local(tasks, workers, started, finished)
        except KeyboardInterrupt:
            for record in records.values():
                if record["state"] == "running":
                    record["state"] = "queued"
            root.save()
            bar.close()
            raise
        bar.close()
    done = sum(r["state"] == "done" for r in records.values())
    failed = sum(r["state"] == "failed" for r in records.values())
    return BenchResult(
        root.path,
        done,
        failed,
        skipped,
        len(records),
        time.perf_counter() - t0,
        restored_count,
        reused_count,
    )


def list_cells(root: Path) -> str:
    """A table of a bench root's cells and their states (``adept bench --root R --list``)."""
    state = BenchRoot.read(root)
    lines = [f"{'cell':<60} {'state':<8} {'last':>7} {'wall (s)':>9}"]
    for cell_id, record in state["cells"].items():
        score = record.get("normalized_score_last")
        wall = record.get("wall_time")
        lines.append(
            f"{cell_id:<60} {record['state']:<8} "
            f"{'' if score is None else f'{score:7.1f}':>7} "
            f"{'' if wall is None else f'{wall:9.0f}':>9}"
        )
    counts = {s: sum(r["state"] == s for r in state["cells"].values()) for s in STATES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))
