"""What a grid is: datasets × variants × agents × seeds, its cells, and the overrides a variant or
``--set`` applies to ``adept train``'s options, merged from layers (preset, spec file, command
line) and checked before anything runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adept.base.errors import AdeptError, warn

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


def now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def budget_name(num_steps: int) -> str:
    """'paper-1m' at the paper's 1M steps or more, else 'cpu-<k>k' (a reduced budget is
    named as such in every table, so that no CPU figure passes for the paper's)."""
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
    """Every option of a cell: ``adept train``'s, and ``<section>.preset`` where a method's
    options have named presets."""
    from adept.agents import AGENTS
    from adept.methods import METHODS
    from adept.training import TrainConfig, preset_names
    from adept.training.config import SECTIONS, section_type

    presets = {f"{section}.preset": Literal[names] for section, names in preset_names().items()}
    registered = {m.options for m in METHODS.values() if m.options not in (None, *SECTIONS)}
    registered |= {name for name in AGENTS if name not in SECTIONS}
    options = _field_types(TrainConfig)
    for section in sorted(registered):
        options.update(_field_types(section_type(section), f"{section}."))
    return {**options, **presets}


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
    from adept.training import renamed

    options = _train_options()
    out: dict[str, Any] = {}
    for raw, value in overrides.items():
        key = option_key(raw)
        new = renamed(key)
        if new is not None:
            raise AdeptError(f"{where}: option '{raw}' was renamed; write '{new}'")
        if key in GRID_FIELDS:
            raise AdeptError(f"{where} sets '{raw}', which the grid sets; use {GRID_FIELDS[key]}")
        if key not in options:
            close = difflib.get_close_matches(key, list(options), n=1)
            hint = f"; did you mean {close[0]}?" if close else "; see 'adept train --help'"
            raise AdeptError(f"{where}: unknown option '{raw}'{hint}")
        out[key] = coerce(key, value, options[key])
    return dict(sorted(out.items()))


def current_names(options: Mapping[str, Any]) -> dict[str, Any]:
    """Options stored by an older adept (a grid's bench.json) under today's names."""
    from adept.training import renamed

    return dict(sorted((renamed(key) or key, value) for key, value in options.items()))


def parse_assignments(items: Sequence[str], where: str) -> dict[str, str]:
    """``["adept.rollout.horizon=5", ...]`` → ``{"adept.rollout.horizon": "5"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AdeptError(
                f"{where} takes KEY=VALUE, got '{item}' (e.g. adept.rollout.horizon=5)"
            )
        out[key.strip()] = value.strip()
    return out


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """``config`` with dotted options replaced (nested dataclasses rebuilt); a section's
    ``preset`` (``synther.preset``) replaces the section with that preset first, and the
    section's other options change it."""
    from adept.training import preset

    chosen = {k: v for k, v in overrides.items() if k.endswith(".preset") and k.count(".") == 1}
    fields = {f.name for f in dataclasses.fields(config)}
    plugins = dict(getattr(config, "plugins", {}))  # a training config's registered sections
    start: dict[str, Any] = {}
    for key, name in chosen.items():
        section = key.removesuffix(".preset")
        (start if section in fields else plugins)[section] = preset(section, name)
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = dict(start)
    for key, value in overrides.items():
        if key in chosen:
            continue
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            kind = typing.get_type_hints(type(config))[head]
            direct[head] = Path(value) if kind in (Path, Path | None) and value else value
    for head, sub in nested.items():
        if head in fields:
            direct[head] = apply_overrides(direct.get(head, getattr(config, head)), sub)
        else:
            plugins[head] = apply_overrides(plugins.get(head) or config.section(head), sub)
    if plugins != dict(getattr(config, "plugins", {})):
        direct["plugins"] = plugins
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
            current_names(value["set"]),
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
            set=current_names(value["set"]),
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
        from adept.training import TrainConfig

        config = TrainConfig(
            dataset=cell.dataset,
            agent=cell.agent,
            method=cell.method,
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


SPEC_KEYS = (
    "description",
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
    from adept.methods import METHODS

    if not isinstance(value, Mapping) or "method" not in value:
        raise AdeptError(
            f"{where}: variant '{name}' needs a method, e.g. {name} = {{method = \"adept\"}}"
        )
    methods = list(METHODS)
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
    """``--variant 'adept-h5:method=adept,adept.rollout.horizon=5'`` → (name, definition)."""
    name, sep, rest = text.partition(":")
    if not sep or not name.strip():
        raise AdeptError(
            f"--variant takes NAME:method=M[,KEY=VALUE...], got '{text}' "
            "(e.g. adept-h5:method=adept,adept.rollout.horizon=5)"
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
