"""Several seeds of one agent trained as one batched computation.

A :class:`Pack` holds k agents of the same class and configuration (one per seed). Their
parameters are stacked into tensors with a leading seed axis ``[k, ...]``, and each update runs
every phase of the agent (:class:`adept.agents.Phase`) once for all seeds: the phase's loss,
written for one agent, is mapped over the seed axis with :func:`torch.vmap` and
:func:`torch.func.functional_call`, the k losses are summed (seed s's parameters get exactly the
gradient of seed s's loss) and one optimizer of the agent's class and settings steps the stacked
tensors. Adam is elementwise, so a stacked Adam is k independent Adams. Each seed keeps its own
batch, its own random numbers (drawn by the caller from that seed's stream), its learning-rate
schedule and its counters.

Each agent stays usable on its own: its parameters become views of its slice of the stacked
tensors, so acting, evaluating and the world-model methods see the packed weights with no copy.
:meth:`Pack.agent_state` returns a seed's state as an ordinary agent checkpoint (the optimizer
moments of its slice included), which an unpacked run loads as it would its own.

The result equals the seed trained alone up to floating-point reassociation: a batched matrix
product sums in a different order than k single ones, so the seeds drift apart from their
alone runs by rounding (about 1e-6 relative per update), not bitwise.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from adept.agents.base import Agent, Phase
from adept.data.buffer import Batch


class _Holder(nn.Module):
    """The template agent's networks under one module, so that :func:`functional_call` can
    swap all of them at once; ``forward`` calls a loss that reads them through the agent."""

    def __init__(self, modules: Mapping[str, nn.Module]):
        super().__init__()
        self.parts = nn.ModuleDict(dict(modules))

    def forward(self, loss: Any, batch: Batch, noise: Mapping[str, torch.Tensor]) -> Any:
        return loss(batch, noise)


def batch_fields(batches: Sequence[Batch]) -> dict[str, torch.Tensor]:
    """The seeds' batches stacked field by field, ``[k, batch, ...]`` (absent fields left out)."""
    out = {}
    for f in fields(Batch):
        values = [getattr(b, f.name) for b in batches]
        if any(v is None for v in values):
            continue
        out[f.name] = torch.stack(values)
    return out


#: Optimizer state entries shared by all seeds of a pack (torch's optimizers count their
#: steps in "step"; every other tensor entry, such as Adam's moments, is per parameter).
SHARED_STATE = frozenset({"step"})


def _per_seed(key: str, value: Any) -> bool:
    return isinstance(value, torch.Tensor) and key not in SHARED_STATE


def _stack_state(states: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Optimizer state dicts of k seeds → one for the stacked parameters (per-parameter
    tensors stacked on a new first axis; the step count is shared: the seeds move in step)."""
    first = states[0]
    stacked: dict[int, dict[str, Any]] = {}
    for index, entry in first["state"].items():
        stacked[index] = {
            key: torch.stack([s["state"][index][key] for s in states])
            if _per_seed(key, value)
            else value
            for key, value in entry.items()
        }
    return {"state": stacked, "param_groups": first["param_groups"]}


def stacked_optimizer(
    optimizers: Sequence[torch.optim.Optimizer],
    stack_of: Callable[[torch.Tensor], torch.Tensor],
) -> torch.optim.Optimizer:
    """One optimizer for k seeds' ``optimizers`` (same class, groups and settings): the first's
    class and groups over the stacked tensors (``stack_of`` maps a parameter of the first to
    its stack), with the k states stacked (:func:`_stack_state`)."""
    template = optimizers[0]
    groups = [
        {
            **{k: v for k, v in group.items() if k != "params"},
            "params": [stack_of(p) for p in group["params"]],
        }
        for group in template.param_groups
    ]
    kind: Any = type(template)  # Adam, AdamW, ...: built from the groups, as the template was
    stacked: torch.optim.Optimizer = kind(groups)
    stacked.load_state_dict(_stack_state([o.state_dict() for o in optimizers]))
    return stacked


def slice_state(state: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Seed ``seed``'s optimizer state dict out of the stacked one (copies)."""

    def one(key: str, value: Any) -> Any:
        if _per_seed(key, value):
            return value[seed].clone()
        return value.clone() if isinstance(value, torch.Tensor) else value

    return {
        "state": {
            index: {key: one(key, value) for key, value in entry.items()}
            for index, entry in state["state"].items()
        },
        "param_groups": [dict(g) for g in state["param_groups"]],
    }


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule holding parameter ``name`` (dotted) and the parameter's own name there."""
    path, _, leaf = name.rpartition(".")
    return module.get_submodule(path), leaf


class Pack:
    """k agents (same class and configuration, one per seed) updated as one computation."""

    def __init__(self, agents: Sequence[Agent]):
        if not agents:
            raise ValueError("a pack needs at least one agent")
        kinds = {(type(a), repr(getattr(a, "config", None))) for a in agents}
        if len(kinds) > 1:
            raise ValueError("a pack's agents must share their class and configuration")
        self.agents = list(agents)
        self.template = agents[0]
        parts = [agent.components() for agent in agents]
        self.module_names = [n for n, p in parts[0].items() if isinstance(p, nn.Module)]

        # stacked parameters (leaves the pack's optimizers step) and buffers, by module
        self.params: dict[str, dict[str, torch.Tensor]] = {}
        self.buffers: dict[str, dict[str, torch.Tensor]] = {}
        where: dict[int, tuple[str, str]] = {}  # id(template parameter) → (module, name)
        for name in self.module_names:
            modules: list[nn.Module] = [p[name] for p in parts]
            self.params[name] = {}
            for pname, param in modules[0].named_parameters():
                where[id(param)] = (name, pname)
                stack = torch.stack([m.get_parameter(pname).detach() for m in modules])
                self.params[name][pname] = stack.requires_grad_(param.requires_grad)
            self.buffers[name] = {
                bname: torch.stack([m.get_buffer(bname) for m in modules])
                for bname, _ in modules[0].named_buffers()
            }

        # one optimizer per agent optimizer, same class, groups and settings, stacked state
        def stack_of(param: torch.Tensor) -> torch.Tensor:
            module, name = where[id(param)]
            return self.params[module][name]

        self.optimizers: dict[str, torch.optim.Optimizer] = {
            oname: stacked_optimizer([p[oname] for p in parts], stack_of)
            for oname in [n for n, p in parts[0].items() if isinstance(p, torch.optim.Optimizer)]
        }

        # each agent's parameters become views of its slice (acting and evaluating need no
        # copy); its own parameter objects wait for release()
        self._own: list[dict[tuple[str, str], nn.Parameter]] = []
        for seed, agent_parts in enumerate(parts):
            own: dict[tuple[str, str], nn.Parameter] = {}
            for name in self.module_names:
                for pname, stack in self.params[name].items():
                    owner, leaf = _owner(agent_parts[name], pname)
                    own[name, pname] = agent_parts[name].get_parameter(pname)
                    owner._parameters[leaf] = nn.Parameter(
                        stack.detach()[seed], requires_grad=False
                    )
            self._own.append(own)

        self._holder = _Holder({n: parts[0][n] for n in self.module_names})

    def __len__(self) -> int:
        return len(self.agents)

    def _tensors(self, phase: Phase) -> dict[str, torch.Tensor]:
        """What :func:`functional_call` swaps in for ``phase``: the stacked parameters (those of
        networks the phase does not train detached) and buffers."""
        out: dict[str, torch.Tensor] = {}
        for name in self.module_names:
            trains = name in phase.trains
            for pname, value in self.params[name].items():
                out[f"parts.{name}.{pname}"] = value if trains else value.detach()
            for bname, value in self.buffers[name].items():
                out[f"parts.{name}.{bname}"] = value
        return out

    def update(
        self, batches: Sequence[Batch], noises: Sequence[Mapping[str, torch.Tensor]]
    ) -> list[dict[str, torch.Tensor]]:
        """One update of every seed: seed s on ``batches[s]`` with the random numbers
        ``noises[s]`` (what ``agents[s].draw`` gave from seed s's stream). Returns each seed's
        metrics, as :meth:`Agent.update` does."""
        metrics = self.step(*self.stack(batches, noises))
        self.advance()
        return self.unstack(metrics)

    @staticmethod
    def stack(
        batches: Sequence[Batch], noises: Sequence[Mapping[str, torch.Tensor]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The seeds' batches and random numbers stacked on a leading seed axis: what
        :meth:`step` takes."""
        noise = {key: torch.stack([n[key] for n in noises]) for key in noises[0]}
        return batch_fields(batches), noise

    def unstack(self, metrics: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """:meth:`step`'s stacked metrics → each seed's."""
        return [{key: value[s] for key, value in metrics.items()} for s in range(len(self))]

    def signature(self) -> tuple[Any, ...]:
        """What the next :meth:`step` does (the seeds are at the same update: the template's
        :meth:`Agent.signature`)."""
        return self.template.signature()

    def step(
        self, batch: Mapping[str, torch.Tensor], noise: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The device work of one update of every seed (stacked inputs of :meth:`stack`):
        each phase vmapped over the seeds, then the Polyak averages; stacked metrics. No host
        work, so a CUDA graph can capture it (:mod:`adept.accel.graphs`)."""
        holder = self._holder
        metrics: dict[str, torch.Tensor] = {}
        for phase in self.template.phases():

            def one(
                tensors: dict[str, torch.Tensor],
                fields_: dict[str, torch.Tensor],
                noise_: dict[str, torch.Tensor],
                loss: Any = phase.loss,
            ) -> Any:
                return torch.func.functional_call(holder, tensors, (loss, Batch(**fields_), noise_))

            losses, phase_metrics = torch.vmap(one)(self._tensors(phase), dict(batch), dict(noise))
            for name in phase.optimizers:
                self.optimizers[name].zero_grad(set_to_none=True)
            losses.sum().backward()
            for name in phase.optimizers:
                self.optimizers[name].step()
            metrics.update(phase_metrics)

        with torch.no_grad():
            for target, source, tau in self.template.targets():
                torch._foreach_lerp_(
                    list(self.params[target].values()), list(self.params[source].values()), tau
                )
        return metrics

    def advance(self) -> None:
        """The host side of an update: every agent's schedules and counters, and the pack's
        learning rates following them."""
        with warnings.catch_warnings():
            # the agents' own optimizers never step (the pack's do): their schedules still count
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()`"))
            for agent in self.agents:
                agent.advance()
        # schedules: every seed is at the same update, so seed 0's learning rates are everyone's
        template_parts = self.template.components()
        for name, opt in self.optimizers.items():
            for group, template_group in zip(
                opt.param_groups, template_parts[name].param_groups, strict=True
            ):
                group["lr"] = template_group["lr"]

    def release(self) -> None:
        """Give every agent back its own parameters, holding the packed values, and its
        optimizers their slices of the moments: the agents are ordinary again (and may form
        another pack); this pack is spent."""
        for seed, agent in enumerate(self.agents):
            parts = agent.components()
            with torch.no_grad():
                for (name, pname), param in self._own[seed].items():
                    param.copy_(self.params[name][pname][seed])
                    owner, leaf = _owner(parts[name], pname)
                    owner._parameters[leaf] = param
            self._hand_moments(seed)
        self.agents = []

    def _hand_moments(self, seed: int) -> None:
        """Load seed ``seed``'s slice of the packed optimizer state into its agent's own
        optimizers (copies)."""
        parts = self.agents[seed].components()
        for name, opt in self.optimizers.items():
            parts[name].load_state_dict(slice_state(opt.state_dict(), seed))

    def agent_state(self, seed: int) -> dict[str, Any]:
        """Seed ``seed``'s agent state as :meth:`Agent.state_dict` gives it for a run of its
        own (copies: saving it does not save the other seeds' slices)."""
        self._hand_moments(seed)
        return tree_map(
            lambda value: value.clone() if isinstance(value, torch.Tensor) else value,
            self.agents[seed].state_dict(),
        )
