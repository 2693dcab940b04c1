"""The one training loop, shared by every agent and every synthetic-data method.

:func:`fit` is the loop itself: an explicit ``for step in range(...)`` that asks the method for
a batch, updates the agent, lets the method do its own work (rollouts, world-model updates), and
yields ``(step, metrics)``. Everything around it (evaluation, logging, checkpoints, resume) is
:mod:`adept.training.run`'s. Methods plug in through :class:`adept.methods.Method`; they never
copy the loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from adept.accel.graphs import GraphedUpdate
from adept.agents import (
    Agent,
)
from adept.base.precision import FP32, Contexts
from adept.methods import (
    Method,
)


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


class Averager:
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
