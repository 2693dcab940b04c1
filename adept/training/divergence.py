"""Divergence: a non-finite loss, weight, optimizer state or generated batch.

:func:`find_divergence` looks for one at a logging or checkpoint step of a run; the
loop then stops (``--on-divergence stop``: a one-line error, the last good checkpoint kept as it
was, ``divergence.json`` in the run dir) or rolls back (``rollback``: reload the last good
checkpoint, scale the failing component's learning rates by ``--divergence-lr-factor``, go on).

Where a divergence is blamed: the method first (its world model, its generated rows, its re-fit
losses: a non-finite batch poisons the agent next, so the agent is then only the victim), the
agent otherwise. Metrics that may be NaN by design (a diagnostic with nothing to measure) are
not checked; every ``train/`` metric and every loss is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from adept.agents.base import Agent
from adept.base.errors import AdeptError
from adept.methods.base import Method
from adept.store.runs import DIVERGENCE, RunDir, atomic_write_json, read_json
from adept.training.config import TrainConfig

SHOWN = 5
"""How many non-finite places the error line names (divergence.json has them all)."""


@dataclass
class Divergence:
    """What was found non-finite at ``step``, and which component is blamed."""

    step: int
    component: str
    """'agent' or 'method'."""
    name: str
    """The component's own name (the agent's, e.g. 'iql'; the method's, e.g. 'adept')."""
    places: list[str] = field(default_factory=list)
    """Metric names and state paths that hold NaN or ±inf."""

    def describe(self) -> str:
        shown = ", ".join(self.places[:SHOWN])
        more = f" and {len(self.places) - SHOWN} more" if len(self.places) > SHOWN else ""
        return f"non-finite values in the {self.component} ({self.name}): {shown}{more}"


def nonfinite_paths(state: Any, prefix: str) -> list[str]:
    """Paths (``prefix.key.key``) of the floating-point tensors in ``state`` holding NaN or
    ±inf. Python floats are not checked: bookkeeping such as 'best loss so far = inf' is one."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, torch.Tensor):
            floating = value.is_floating_point() or value.is_complex()
            if floating and not bool(torch.isfinite(value).all()):
                found.append(path)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, f"{path}.{index}")

    walk(state, prefix)
    return found


def checked(key: str) -> bool:
    """Whether a logged metric must be finite: the agent's ``train/`` metrics and every loss."""
    return key.startswith("train/") or "loss" in key


def find_divergence(
    step: int, metrics: Mapping[str, float], agent: Agent, method: Method
) -> Divergence | None:
    """The divergence at ``step`` (``metrics``: the row about to be logged, maybe empty)."""
    bad = [k for k, v in metrics.items() if checked(k) and not math.isfinite(v)]
    from_method = [k for k in bad if not k.startswith("train/")]
    in_method = nonfinite_paths(method.state_dict(), "method")
    if from_method or in_method:
        return Divergence(step, "method", method.name, from_method + in_method)
    in_agent = [k for k in bad if k.startswith("train/")]
    in_agent += nonfinite_paths(agent.state_dict(), agent.name)
    if in_agent:
        return Divergence(step, "agent", agent.name, in_agent)
    return None


def scale_learning_rates(parts: Iterable[Any], factor: float) -> None:
    """Multiply the learning rate of each optimizer in ``parts`` by ``factor``, and the base
    rates of each scheduler (so the schedule goes on from the scaled rate); other parts (the
    modules) are left alone."""
    for part in parts:
        if isinstance(part, torch.optim.Optimizer):
            for group in part.param_groups:
                group["lr"] = group["lr"] * factor
        elif isinstance(part, torch.optim.lr_scheduler.LRScheduler):
            part.base_lrs = [rate * factor for rate in part.base_lrs]


class Guard:
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
        found: Divergence,
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
            scale_learning_rates(parts(), factor)
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
        found: Divergence,
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
