"""CUDA graphs for the agent update (``adept train --cuda-graphs``).

An agent update at the usual sizes (batch 256, networks 256 × 2) is a few hundred small kernels;
on a GPU the host's time to launch them, not the GPU's to run them, bounds the updates per
second. A CUDA graph records the kernels of one update once and replays them with a single
launch. This module captures :meth:`adept.agents.Agent.step` (the phases' gradient steps and the
Polyak averages: device work only) and :meth:`adept.accel.pack.Pack.step` (the same for a pack of
seeds); what stays on the host around it is small and never waits on the device:

- the batch is sampled on the device (:class:`adept.data.buffer.ReplayBuffer`: ``randint`` and
  a gather) and the update's random numbers drawn (``Agent.draw``) as before, from the same
  generators in the same order, then copied into the graph's static inputs;
- learning-rate schedules step on the host (``Agent.advance``); each optimizer's learning rates
  live in device tensors that the captured optimizer step reads, filled from the schedule's
  floats before each replay (an asynchronous fill, no synchronisation);
- metrics come back as the graph's static output tensors (a copy of the dict, the tensors
  themselves overwritten by the next replay); the loop averages them on the device and reads
  them only when it logs, as it does without graphs.

One graph is captured per update :meth:`~adept.agents.Agent.signature` (TD3+BC has two: with and
without its delayed actor step), each after ``warmup`` eager updates of that signature (on a
side stream, as CUDA requires: they create the optimizers' state and cuBLAS's workspaces), each
with its own memory pool. Capture itself runs nothing, so the capturing update is replayed at
once (an emulated capture runs it). The optimizers are captured with ``capturable=True`` (their
step counts on the device) and tensor learning rates; between captures they stay as they were,
so checkpoints, resumes and divergence rollbacks (which start a new :class:`Graphs`) are those
of an eager run.

Results equal the eager run's up to the learning rate's rounding to float32 in the fused Adam
kernel (relative 1e-8), since the same kernels run on the same numbers. Without a GPU the same
code path runs emulated (:attr:`Graphs.emulate`): static inputs, learning-rate tensors, and
outputs overwritten in place at each "replay", which re-runs the step eagerly — what the CPU
tests check against the eager path, bitwise (the emulation keeps learning rates in float64, as
the eager step reads them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from adept.accel.pack import Pack
from adept.agents.base import Agent
from adept.data.buffer import Batch
from adept.data.transitions import REQUIRED_FIELDS

Tensors = dict[str, torch.Tensor]
"""A graph's inputs and outputs: flat dicts of tensors."""


@dataclass
class _Graph:
    """One captured step: its static inputs and outputs, and the CUDA graph (None emulated)."""

    inputs: tuple[Tensors, ...]
    outputs: Tensors
    graph: torch.cuda.CUDAGraph | None


class Graphs:
    """Captures ``fn(*inputs) -> outputs`` (dicts of tensors) once per key and replays it.

    ``optimizers`` are the optimizers ``fn`` steps (their learning rates become device tensors
    inside a capture). ``emulate`` (default: the device is not CUDA) runs the same path without
    CUDA: each replay re-runs ``fn`` on the static inputs and copies its results into the static
    outputs."""

    def __init__(
        self,
        device: torch.device,
        optimizers: Callable[[], Sequence[torch.optim.Optimizer]],
        warmup: int = 3,
        emulate: bool | None = None,
    ):
        if warmup < 1:
            raise ValueError(f"a CUDA graph needs at least one warm-up step, got {warmup}")
        self.device = device
        self.optimizers = optimizers
        self.warmup = warmup
        self.emulate = device.type != "cuda" if emulate is None else emulate
        if not self.emulate and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device}")
        self.graphs: dict[Any, _Graph] = {}
        self.eager_calls: dict[Any, int] = {}
        # one device tensor per optimizer parameter group, filled from its float before a replay
        dtype = torch.float64 if self.emulate else torch.float32
        self._lrs = [
            [torch.zeros((), dtype=dtype, device=device) for _ in opt.param_groups]
            for opt in optimizers()
        ]
        self._side = None if self.emulate else torch.cuda.Stream(device)

    @property
    def captured(self) -> int:
        """How many graphs have been captured."""
        return len(self.graphs)

    def __call__(self, key: Any, fn: Callable[..., Tensors], inputs: Sequence[Tensors]) -> Tensors:
        graph = self.graphs.get(key)
        if graph is None:
            calls = self.eager_calls.get(key, 0)
            if calls < self.warmup:
                self.eager_calls[key] = calls + 1
                return self._eager(fn, inputs)
            graph = self.graphs[key] = self._capture(fn, inputs)
            if graph.graph is None:  # an emulated capture ran the step
                return dict(graph.outputs)
        for static, given in zip(graph.inputs, inputs, strict=True):
            _copy(static, given)
        self._fill_lrs()
        if graph.graph is not None:
            graph.graph.replay()
        else:
            with self._tensor_lrs():
                _copy(graph.outputs, fn(*graph.inputs))
        return dict(graph.outputs)

    def _eager(self, fn: Callable[..., Tensors], inputs: Sequence[Tensors]) -> Tensors:
        if self._side is None:
            return fn(*inputs)
        current = torch.cuda.current_stream(self.device)
        self._side.wait_stream(current)
        with torch.cuda.stream(self._side):
            out = fn(*inputs)
        current.wait_stream(self._side)
        return out

    def _capture(self, fn: Callable[..., Tensors], inputs: Sequence[Tensors]) -> _Graph:
        static = tuple({k: v.detach().clone() for k, v in part.items()} for part in inputs)
        if self.emulate:
            self._fill_lrs()
            with self._tensor_lrs():
                outputs = {k: v.clone() for k, v in fn(*static).items()}
            return _Graph(static, outputs, None)
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        with self._tensor_lrs(capturable=True), torch.cuda.graph(graph):
            outputs = fn(*static)
        return _Graph(static, outputs, graph)

    def _fill_lrs(self) -> None:
        for tensors, opt in zip(self._lrs, self.optimizers(), strict=True):
            for tensor, group in zip(tensors, opt.param_groups, strict=True):
                lr = group["lr"]
                if isinstance(lr, torch.Tensor):
                    tensor.copy_(lr)
                else:
                    tensor.fill_(lr)

    @contextlib.contextmanager
    def _tensor_lrs(self, capturable: bool = False) -> Iterator[None]:
        """The optimizers' learning rates as the device tensors (and, for a capture, their steps
        capturable) inside the block; as they were after it."""
        saved = []
        for tensors, opt in zip(self._lrs, self.optimizers(), strict=True):
            for tensor, group in zip(tensors, opt.param_groups, strict=True):
                saved.append((group, group["lr"], group.get("capturable", False)))
                group["lr"] = tensor
                if capturable:
                    group["capturable"] = True
        try:
            yield
        finally:
            for group, lr, was_capturable in saved:
                group["lr"], group["capturable"] = lr, was_capturable


def _copy(static: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> None:
    if static.keys() != given.keys():
        raise ValueError(
            f"a graph's inputs changed their fields: {sorted(static)} != {sorted(given)}"
        )
    for key, tensor in static.items():
        tensor.copy_(given[key])


AGENT_FIELDS = REQUIRED_FIELDS
"""The batch fields an agent's update reads: the graphs' inputs. Not the optional behaviour
log-probs, which a batch carries only while it is all real data (ADEPT's first steps, before
model data)."""


def _fields(batch: Batch) -> Tensors:
    return {name: getattr(batch, name) for name in AGENT_FIELDS}


def _optimizers(parts: Mapping[str, Any]) -> list[torch.optim.Optimizer]:
    return [p for p in parts.values() if isinstance(p, torch.optim.Optimizer)]


class GraphedUpdate:
    """``agent.update`` with its device work (:meth:`Agent.step`) replayed from CUDA graphs:
    a drop-in for the training loop's call."""

    def __init__(self, agent: Agent, warmup: int = 3, emulate: bool | None = None):
        self.agent = agent
        self.graphs = Graphs(agent.device, lambda: _optimizers(agent.components()), warmup, emulate)

    def __call__(self, batch: Batch) -> Tensors:
        agent = self.agent
        noise = agent.draw(batch)

        def step(fields_: Tensors, noise_: Tensors) -> Tensors:
            return agent.step(Batch(**fields_), noise_)

        metrics = self.graphs(agent.signature(), step, (_fields(batch), dict(noise)))
        agent.advance()
        return metrics


class GraphedPackUpdate:
    """``pack.update`` with its device work (:meth:`Pack.step`) replayed from CUDA graphs."""

    def __init__(self, pack: Pack, warmup: int = 3, emulate: bool | None = None):
        self.pack = pack
        self.graphs = Graphs(
            pack.template.device, lambda: list(pack.optimizers.values()), warmup, emulate
        )

    def __call__(
        self, batches: Sequence[Batch], noises: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[Tensors]:
        pack = self.pack
        stacked, noise = pack.stack(batches, noises)
        inputs = ({name: stacked[name] for name in AGENT_FIELDS}, noise)
        metrics = self.graphs(pack.signature(), pack.step, inputs)
        pack.advance()
        return pack.unstack(metrics)
