"""The agents and methods adept trains, by name: one registry for both.

An agent is a subclass of :class:`adept.agents.Agent`, a method a subclass of
:class:`adept.methods.Method`; each says its ``name`` (``--agent NAME``, ``--method NAME``), its
options dataclass (``options_type``, shown and set as ``--<section>.*``) and its ``label`` in
reports. A new one is a file of its own and one line::

    from adept.registry import register

    register(MyMethod)          # adept train --method my-method --my-method.knob 3

Built-in and registered ones are the same to every command: ``adept train`` lists the options of
the chosen agent and method, ``adept bench`` runs them in grids, the report labels them.
Commands that start other processes (``adept bench``'s workers) import the modules named in
``$ADEPT_PLUGINS`` first, and so do ``adept`` commands themselves: a comma-separated list of
modules, each optionally ``module:function`` to call a function that registers. Packages
installed with pip register through the ``adept.plugins`` entry-point group the same way.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, cast

from adept.agents import AGENTS, Agent
from adept.base.errors import AdeptError
from adept.methods import METHODS, Method

PLUGINS = "ADEPT_PLUGINS"
"""The environment variable naming the modules (``module`` or ``module:function``) that register
agents and methods, imported by every ``adept`` command and every bench worker."""

ENTRY_POINTS = "adept.plugins"
"""The entry-point group through which an installed package registers its agents and methods."""


def register(cls: type[Any]) -> type[Any]:
    """Add the agent or method ``cls`` under its ``name`` (usable as a class decorator). A
    second class under a name already taken is refused; registering the same class again is
    a no-op."""
    table: dict[str, Any]
    if isinstance(cls, type) and issubclass(cls, Agent):
        table, kind = cast(dict[str, Any], AGENTS), "agent"
    elif isinstance(cls, type) and issubclass(cls, Method):
        table, kind = cast(dict[str, Any], METHODS), "method"
    else:
        raise TypeError(f"register takes an Agent or a Method subclass, not {cls!r}")
    if kind == "agent" and cls.options_type is None:
        raise AdeptError(f"agent {cls.__qualname__} names no options_type (its config dataclass)")
    taken = table.get(cls.name)
    if taken is not None and taken is not cls:
        raise AdeptError(
            f"{kind} name '{cls.name}' is taken by {taken.__module__}.{taken.__qualname__}; "
            f"give {cls.__qualname__} another name"
        )
    table[cls.name] = cls
    return cls


@contextlib.contextmanager
def registered(*classes: type[Any]) -> Iterator[None]:
    """Register ``classes`` for the duration of a ``with`` block (tests, notebooks)."""
    agents, methods = dict(AGENTS), dict(METHODS)
    try:
        for cls in classes:
            register(cls)
        yield
    finally:
        AGENTS.clear()
        AGENTS.update(agents)
        METHODS.clear()
        METHODS.update(methods)


def load_plugins() -> None:
    """Import the modules of ``$ADEPT_PLUGINS`` and of the ``adept.plugins`` entry points,
    calling ``function`` where one is named ``module:function`` (registering again is a
    no-op, so this may run any number of times)."""
    named = [p.strip() for p in os.environ.get(PLUGINS, "").split(",") if p.strip()]
    installed = [ep.value for ep in entry_points(group=ENTRY_POINTS)]
    for spec in (*named, *installed):
        module, _, function = spec.partition(":")
        try:
            loaded = importlib.import_module(module.strip())
        except ImportError as exc:
            raise AdeptError(
                f"${PLUGINS} names {module!r}, which does not import ({exc}); fix or unset it"
            ) from exc
        if function:
            getattr(loaded, function.strip())()
