"""``adept train``'s command line: the run's options and those of the chosen agent and method
only (``--help`` lists no other section; another section's option is a one-line error), presets
as starting points (``--synther.preset paper``), registered agents' and methods' sections, and a
one-line error for an option's old spelling."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import tyro

from adept.base.errors import AdeptError
from adept.training import TrainConfig
from adept.training.config import SECTIONS, check_names, section_type


@dataclass(frozen=True)
class Train:
    """Train an offline agent; re-running the same command resumes an unfinished run. The
    options shown are the run's and those of its --agent and --method: `adept train --agent sac
    --method adept --help` lists SAC's and ADEPT's."""

    config: Annotated[TrainConfig, tyro.conf.arg(name="")]

    def run(self) -> None:
        from adept.training import train

        summary = train(self.config)
        if self.config.seeds:
            for run_dir, run_summary in summary["runs"].items():
                print(f"run dir: {run_dir}")
                print(json.dumps(run_summary, indent=2))
            return
        print(f"run dir: {self.config.resolved_run_dir()}")
        print(json.dumps(summary, indent=2))


def _chosen(argv: Sequence[str], flag: str, default: str) -> str:
    """The value of ``flag`` in ``argv`` (``--flag X`` or ``--flag=X``; the last one wins)."""
    value = default
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def train_config_type(
    agent: str, method: str, presets: Mapping[str, Any] | None = None
) -> type[TrainConfig]:
    """:class:`TrainConfig` as ``adept train --agent AGENT --method METHOD`` parses it: the
    sections this pair never reads (:func:`adept.training.unread_fields`) hidden, with their
    defaults, so that its --help lists the run's options and this pair's only; a registered
    agent's or method's section a field of its own (``--toy.*``); ``presets``: configs some
    sections start from instead of their defaults (``--synther.preset paper``)."""
    from adept.agents import AGENTS
    from adept.methods import METHODS
    from adept.training import unread_fields

    hidden = {name for name in unread_fields(agent, method) if not name.startswith("plugins.")}
    added = {name: section_type(name) for name in _plugin_sections(agent, method)}
    choices = {"agent": Literal[tuple(AGENTS)], "method": Literal[tuple(METHODS)]}
    shaped = _shaped(TrainConfig, hidden | {"plugins"}, dict(presets or {}), added, choices)
    shaped.__doc__ = Train.__doc__
    return shaped


def _plugin_sections(agent: str, method: str) -> list[str]:
    """The option sections of ``agent`` and ``method`` that registered agents and methods bring
    (not fields of :class:`TrainConfig`)."""
    from adept.methods import METHODS

    own = [agent, METHODS[method].options]
    return [name for name in own if name is not None and name not in SECTIONS]


def _shaped(
    cls: type,
    hidden: set[str],
    defaults: dict[str, Any],
    added: Mapping[str, type] | None = None,
    retyped: Mapping[str, Any] | None = None,
) -> type:
    """A subclass of the config dataclass ``cls`` whose fields named in ``hidden`` (dotted for
    nested ones: ``adept.refit``) are suppressed from the command line, keeping their defaults;
    whose fields named in ``defaults`` start from the value given there; with the config
    dataclasses of ``added`` as fields of their own; and with the types of ``retyped``."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls, include_extras=True)
    changed: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        inner = {name.split(".", 1)[1] for name in hidden if name.startswith(f"{f.name}.")}
        if f.name in hidden:
            kind: Any = Annotated[hints[f.name], tyro.conf.Suppress]
            changed.append((f.name, kind, field(default_factory=f.default_factory)))
        elif inner:
            kind = _shaped(hints[f.name], inner, {})
            changed.append((f.name, kind, field(default_factory=kind)))
        elif f.name in defaults:
            changed.append((f.name, hints[f.name], _default(defaults[f.name])))
        elif retyped and f.name in retyped:
            changed.append((f.name, retyped[f.name], field(default=f.default)))
    for name, kind in (added or {}).items():
        start = defaults[name] if name in defaults else kind()
        changed.append((name, kind, _default(start)))
    if not changed:
        return cls
    return dataclasses.make_dataclass(cls.__name__, changed, bases=(cls,), frozen=True)


def _default(value: Any) -> Any:
    """A dataclass field whose default is ``value`` (a config instance)."""

    def factory(value: Any = value) -> Any:
        return value

    return field(default_factory=factory)


def _presets_in(argv: Sequence[str]) -> tuple[list[str], dict[str, Any]]:
    """``argv`` without its ``--<section>.preset NAME`` options, and each such section's
    starting config."""
    from adept.training import preset

    rest: list[str] = []
    chosen: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        flag = arg.split("=", 1)[0]
        if not (flag.startswith("--") and flag.endswith(".preset") and flag.count(".") == 1):
            rest.append(arg)
            continue
        if "=" in arg:
            name = arg.split("=", 1)[1]
        elif args and not args[0].startswith("--"):
            name = args.pop(0)
        else:
            raise AdeptError(f"{flag} takes a preset's name, e.g. {flag} paper")
        section = flag[2:].removesuffix(".preset")
        chosen[section] = preset(section, name)
    return rest, chosen


def _unshaped(value: Any, cls: type) -> Any:
    """``value``, parsed as a :func:`_shaped` subclass of ``cls``, as a plain ``cls``."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    return cls(
        **{
            f.name: _unshaped(getattr(value, f.name), hints[f.name])
            if dataclasses.is_dataclass(hints[f.name])
            else getattr(value, f.name)
            for f in dataclasses.fields(cls)
        }
    )


def _refuse_renamed(arg: str) -> None:
    """A one-line error for an option's old spelling (``--adept.horizon``), naming the new one
    (``--adept.rollout.horizon``); a negated flag (``--adept.no-diagnostics``) likewise."""
    from adept.training import renamed

    if not arg.startswith("--") or "." not in arg:
        return
    flag = arg.split("=", 1)[0]
    *parents, leaf = flag[2:].replace("-", "_").split(".")
    new, negation = renamed(".".join([*parents, leaf])), ""
    if new is None and leaf.startswith("no_"):  # --adept.no-diagnostics: a bool's negation
        new, negation = renamed(".".join([*parents, leaf[3:]])), "no_"
    if new is None:
        return
    *new_parents, new_leaf = new.split(".")
    spelled = "--" + ".".join([*new_parents, negation + new_leaf]).replace("_", "-")
    raise AdeptError(f"{flag} was renamed: use {spelled}")


def parse_train(argv: Sequence[str]) -> TrainConfig:
    """``adept train ARGV`` as a :class:`TrainConfig`; an option of another agent or method
    than the run's, or an option's old spelling, is a one-line error naming it."""
    import dataclasses

    from adept.agents import AGENTS
    from adept.methods import METHODS
    from adept.training import unread_fields

    agent = _chosen(argv, "--agent", TrainConfig.agent)
    method = _chosen(argv, "--method", TrainConfig.method)
    check_names(agent, method)
    for arg in argv:
        _refuse_renamed(arg)
    unread = [name.removeprefix("plugins.") for name in unread_fields(agent, method)]
    for arg in argv:
        if not arg.startswith("--"):
            continue
        dotted = arg[2:].split("=", 1)[0].replace("-", "_")
        section = next((u for u in unread if dotted.startswith(f"{u}.")), None)
        if section is None:
            continue
        if section in AGENTS:
            owner = f"--agent {section}"
        else:
            head, _, part = section.partition(".")
            owners = [
                name
                for name, m in METHODS.items()
                if m.options == head and part not in m.unread_options
            ]
            owner = f"--method {' or '.join(owners)}"
        raise AdeptError(
            f"{arg.split('=', 1)[0]} is an option of {owner}, and this run has "
            f"--agent {agent} --method {method}: drop it, or choose that agent or method"
        )
    rest, presets = _presets_in(argv)
    shaped = train_config_type(agent, method, presets)
    parsed = tyro.cli(shaped, args=rest, prog="adept train")
    config = _unshaped(parsed, TrainConfig)
    plugins = {
        name: _unshaped(getattr(parsed, name), section_type(name))
        for name in _plugin_sections(agent, method)
    }
    return dataclasses.replace(config, plugins=plugins) if plugins else config
