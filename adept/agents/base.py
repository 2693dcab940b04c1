"""What every agent shares: the surface the training loop and the world-model methods call.

``update(batch) -> dict[str, Tensor]`` returns detached scalar tensors; the loop turns them into
floats only when it logs, so an update never waits on the host. An update is written as data the
loop can also run batched over several seeds (:mod:`adept.accel.pack`): ``draw`` makes every random
number of the update, ``phases`` lists its gradient steps (a loss, the networks it trains, the
optimizers that step), ``targets`` its Polyak averages and ``advance`` its bookkeeping
(schedulers, counters). A loss reads its networks through ``self`` and draws nothing.
``update`` is ``draw``, then ``step`` (the phases and averages: device work only, which
:mod:`adept.accel.graphs` can capture as a CUDA graph), then ``advance`` (host work).

Observations are raw (each actor normalizes with the dataset statistics it holds), so ``act``
and ``log_prob`` take env, dataset and world-model states alike.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from adept.data.buffer import Batch
from adept.data.transitions import Transitions
from adept.nets import Actor, Normalizer, soft_update

#: A phase's loss: ``(batch, noise) -> (loss, detached scalar metrics)``.
Loss = Callable[[Batch, Mapping[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass(frozen=True)
class Phase:
    """One gradient step of an update: ``loss`` back-propagated into the networks named in
    ``trains`` (every other network it reads is frozen), then the optimizers in
    ``optimizers`` step. Names are keys of :meth:`Agent.components`."""

    loss: Loss
    trains: tuple[str, ...]
    optimizers: tuple[str, ...]


@dataclass(frozen=True)
class AgentSpec:
    """What an agent needs to know about the problem, derived from the dataset."""

    obs_dim: int
    act_dim: int
    obs_mean: torch.Tensor
    obs_std: torch.Tensor
    return_range: float
    """max − min episode return of the dataset (IQL's locomotion reward scaling)."""
    num_steps: int
    """Total gradient steps of the run (for learning-rate schedules)."""
    device: torch.device

    @classmethod
    def from_data(cls, data: Transitions, num_steps: int, device: torch.device) -> AgentSpec:
        returns = data.episode_returns()
        return cls(
            obs_dim=data.obs_dim,
            act_dim=data.act_dim,
            obs_mean=torch.as_tensor(
                data.observations.mean(0, dtype=np.float64), dtype=torch.float32
            ),
            obs_std=torch.as_tensor(
                data.observations.std(0, dtype=np.float64), dtype=torch.float32
            ),
            return_range=float(returns.max() - returns.min()),
            num_steps=num_steps,
            device=device,
        )

    def normalizer(self) -> Normalizer:
        return Normalizer(self.obs_mean, self.obs_std)


def adam(params: Iterable[nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel per step (CPU and CUDA in torch ≥ 2.4)."""
    return torch.optim.Adam(params, lr=lr, fused=True)


class Agent:
    """Base class: subclasses set ``actor`` and list their stateful parts in ``components``.

    An agent says its ``name`` (``--agent NAME``; its options are ``--NAME.*``), its options
    dataclass (``options_type``; constructors take ``(spec, options)``) and its ``label`` in
    reports; :func:`adept.registry.register` makes a new one known to every command."""

    name: str = "agent"
    options_type: type | None = None
    """The dataclass of its hyper-parameters."""
    label: str = ""
    """Its name in reports' tables (IQL, TD3+BC)."""

    def __init__(self, spec: AgentSpec, config: Any = None) -> None:
        """Subclasses build their networks and optimizers from ``spec`` and ``config`` (an
        instance of ``options_type``)."""

    actor: Actor
    device: torch.device
    _compiled_losses: dict[str, Loss] | None = None
    """Each loss's compiled version by name, once :meth:`compile` asked for them; None: eager."""

    def components(self) -> dict[str, Any]:
        """Modules, optimizers and schedulers by name; ``state_dict`` saves exactly these."""
        raise NotImplementedError

    def draw(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every random number one update on ``batch`` uses, from torch's global RNG."""
        return {}

    def phases(self) -> list[Phase]:
        """The gradient steps of the next update, in order."""
        raise NotImplementedError

    def targets(self) -> list[tuple[str, str, float]]:
        """``(target, source, τ)``: the Polyak averages θ' ← (1 − τ) θ' + τ θ after the next
        update's phases."""
        return []

    def advance(self) -> None:
        """Bookkeeping after an update: learning-rate schedules, update counters."""

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update on ``batch``; returns detached scalar metrics (``train/...``)."""
        metrics = self.step(batch, self.draw(batch))
        self.advance()
        return metrics

    def step(self, batch: Batch, noise: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The device work of one update with the random numbers ``noise`` (what :meth:`draw`
        gave): the phases' gradient steps, then the Polyak averages. No host work and no host
        synchronisation, so a CUDA graph can capture it (:mod:`adept.accel.graphs`); what it does
        depends on the update only through :meth:`signature`."""
        parts = self.components()
        metrics: dict[str, torch.Tensor] = {}
        for phase in self.phases():
            # networks a loss reads but does not train: no weight gradients for them
            frozen = [parts[name] for name in self.trained if name not in phase.trains]
            for module in frozen:
                module.requires_grad_(False)
            loss, phase_metrics = self.compiled(phase.loss)(batch, noise)
            for module in frozen:
                module.requires_grad_(True)
            for name in phase.optimizers:
                parts[name].zero_grad(set_to_none=True)
            loss.backward()
            for name in phase.optimizers:
                parts[name].step()
            metrics.update(phase_metrics)
        for target, source, tau in self.targets():
            soft_update(parts[target], parts[source], tau)
        return metrics

    def compile(self, enabled: bool = True) -> None:
        """Run the losses compiled by :func:`torch.compile` from the next update on (or eager
        again with ``enabled=False``): :mod:`adept.base.compiling`. Each loss compiles at its first
        call, forward and backward into fused kernels; the networks, optimizers and state dicts
        stay the eager ones, so checkpoints and resumes do not change. Results equal the eager
        run's to float rounding (fused kernels sum in another order)."""
        self._compiled_losses = {} if enabled else None

    def compiled(self, loss: Loss) -> Loss:
        """``loss`` as :meth:`step` runs it: itself, or compiled (:meth:`compile`)."""
        cache = self._compiled_losses
        if cache is None:
            return loss
        name = loss.__name__
        if name not in cache:
            cache[name] = cast(Loss, torch.compile(loss))
        return cache[name]

    def signature(self) -> tuple[Any, ...]:
        """What the next update's :meth:`step` does, as a hashable value: its phases (loss,
        trained networks, optimizers) and Polyak averages. Updates of equal signature run the
        same kernels on different numbers (TD3+BC has two: with and without its delayed actor
        step)."""
        phases = tuple((p.loss.__name__, p.trains, p.optimizers) for p in self.phases())
        return phases, tuple(self.targets())

    @functools.cached_property
    def trained(self) -> list[str]:
        """The networks some optimizer trains (the others, such as targets, never get
        gradients); worked out once per agent."""
        parts = self.components()
        optimized = {
            id(param)
            for part in parts.values()
            if isinstance(part, torch.optim.Optimizer)
            for group in part.param_groups
            for param in group["params"]
        }
        return [
            name
            for name, part in parts.items()
            if isinstance(part, nn.Module) and any(id(p) in optimized for p in part.parameters())
        ]

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log π(a|s) under the actor's exact distribution, ``[batch]``."""
        return self.actor.log_prob(obs, act)

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor | None:
        """min over the twin critics of Q(s, a) ``[batch]`` (in the agent's reward scale), or
        None for an agent without a critic (BC). A diagnostic: model data inflating Q shows here."""
        critic = getattr(self, "critic", None)
        return None if critic is None else critic(obs, act).min(0).values

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, deterministic: bool = True) -> np.ndarray:
        """Actions for a batch of raw observations ``[batch, obs_dim]`` (or one ``[obs_dim]``)."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        single = obs_t.ndim == 1
        action = self.sample_actions(obs_t[None] if single else obs_t, deterministic=deterministic)
        out = action.cpu().numpy()
        return out[0] if single else out

    @torch.no_grad()
    def sample_actions(
        self, obs: torch.Tensor, deterministic: bool = False, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Actions on the device for device observations (world-model rollouts); float32
        whatever the autocast (they go to fp32 buffers, sums and numpy). ``noise``: the
        standard normal draws to sample with (:meth:`adept.nets.Actor.sample`)."""
        sample = self.actor.sample(obs, deterministic=deterministic, noise=noise)
        return sample.clamp(-1.0, 1.0).float()

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.components().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = self.components()
        missing = set(parts) - set(state)
        if missing:
            raise KeyError(f"agent state lacks {sorted(missing)}")
        for name, part in parts.items():
            # Optimizers keep loaded state tensors as they are; copy them so that two agents
            # never share (and mutate) the same Adam moments.
            value = state[name] if isinstance(part, nn.Module) else copy.deepcopy(state[name])
            part.load_state_dict(value)
