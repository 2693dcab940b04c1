"""Several seeds' world models as one batched computation: the packed path of Diff+X's and
ADEPT's rounds (re-fit, rollouts).

A pack's seeds have world models of one configuration. Their rounds fall due at the same step,
so their diffusion chains (a rollout's cost) and their re-fit steps can run as one computation:
the models' tensors stacked on a leading seed axis, the one-model code mapped over it with
:func:`torch.vmap` and :func:`torch.func.functional_call`. Each seed draws its random numbers
from its own stream in the order its round alone draws them, so its results are that round's
up to the rounding of batched matrix products. The algorithms (the world model, the rollout,
the re-fit, the method) know nothing of this file; :mod:`adept.accel.rounds` dispatches to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from adept.accel.pack import batch_fields, slice_state, stacked_optimizer
from adept.agents import Agent
from adept.base.rng import Streams
from adept.data.buffer import Batch, ReplayBuffer
from adept.methods.adept import ADEPTMethod
from adept.methods.base import Method
from adept.world_models.importance import BehaviorModel, Refitter, refit_rows
from adept.world_models.model import DiffusionDynamics, WorldModel
from adept.world_models.rollout import Caution, RolloutResult, StateBounds, Walker


class _Call(nn.Module):
    """A module under a name, so :func:`torch.func.functional_call` can swap its tensors while
    ``forward`` calls one of its methods."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, method: str, *args: Any) -> Any:
        return getattr(self.module, method)(*args)


class StackedDynamics:
    """k diffusion models (same configuration; one per seed) stacked once, to sample as one
    computation (:meth:`sample`) as often as their weights stay as they are (a rollout)."""

    def __init__(self, models: list[DiffusionDynamics]):
        params, buffers = torch.func.stack_module_state(models)
        self.tensors = {f"module.{k}": v for k, v in {**params, **buffers}.items()}
        self.holder = _Call(models[0])
        self.guidance_weight = models[0].config.guidance_weight
        self.k = len(models)

    @torch.no_grad()
    def sample(
        self,
        obs: list[torch.Tensor],
        act: list[torch.Tensor],
        noise: list[torch.Tensor],
        which: list[int] | None = None,
    ) -> list[torch.Tensor]:
        """s′ of the models ``which`` (default: all, in order): the i-th of them samples for
        ``obs[i]``, ``act[i]`` with the chain noise ``noise[i]`` (its
        :meth:`DiffusionDynamics.draw_noise` from its seed's stream). The chain is mapped over
        the stacked parameters with :func:`torch.vmap`; the rows of each are padded to the
        longest (the chain is row-wise, so padding changes no real row). Equals each model's
        own :meth:`DiffusionDynamics.sample` up to the rounding of batched matrix products."""
        tensors = self.tensors
        if which is not None and which != list(range(self.k)):
            index = torch.tensor(which)
            tensors = {name: value[index] for name, value in tensors.items()}
        rows = max(len(o) for o in obs)

        def pad(x: torch.Tensor, dim: int) -> torch.Tensor:
            extra = rows - x.shape[dim]
            if extra == 0:
                return x
            shape = list(x.shape)
            shape[dim] = extra
            return torch.cat([x, x.new_zeros(shape)], dim=dim)

        holder, w = self.holder, self.guidance_weight

        def one(
            t: dict[str, torch.Tensor], o: torch.Tensor, a: torch.Tensor, z: torch.Tensor
        ) -> Any:
            return torch.func.functional_call(holder, t, ("chain", o, a, z, w))

        out = torch.vmap(one)(
            tensors,
            torch.stack([pad(o, 0) for o in obs]),
            torch.stack([pad(a, 0) for a in act]),
            torch.stack([pad(z, 1) for z in noise]),
        )
        return [out[i, : len(o)] for i, o in enumerate(obs)]


def sample_stacked(
    models: list[DiffusionDynamics],
    obs: list[torch.Tensor],
    act: list[torch.Tensor],
    noise: list[torch.Tensor],
) -> list[torch.Tensor]:
    """One :meth:`StackedDynamics.sample` of ``models``, stacked for it."""
    return StackedDynamics(models).sample(obs, act, noise)


class StackedWorldModels:
    """k world models (same configuration, one per seed, diffusion dynamics) trained as one
    computation for a run of steps: their parameters, buffers and Adam states stacked on a
    leading seed axis, each step's loss mapped over it with :func:`torch.vmap` (seed s's
    parameters get exactly the gradient of seed s's loss; Adam is elementwise, so one stacked
    Adam is k Adams). :meth:`write_back` hands each model its slice again."""

    def __init__(self, models: list[WorldModel]):
        self.models = models
        first = models[0]
        self.params = {
            name: torch.stack([m.get_parameter(name).detach() for m in models]).requires_grad_()
            for name, _ in first.named_parameters()
        }
        self.buffers = {
            name: torch.stack([m.get_buffer(name) for m in models])
            for name, _ in first.named_buffers()
        }
        where = {id(p): name for name, p in first.named_parameters()}
        self.optimizer = stacked_optimizer(
            [m.optimizer for m in models], lambda p: self.params[where[id(p)]]
        )
        self._holder = _Call(first)

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters, in the models' parameter order."""
        return list(self.params.values())

    def train_step(
        self,
        batches: list[Batch],
        weights: list[torch.Tensor],
        draws: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ) -> list[dict[str, torch.Tensor]]:
        """One Adam step of every model: model s on ``batches[s]`` with ``weights[s]`` and its
        loss's random numbers ``draws[s]``; each model's :meth:`WorldModel.train_step` metrics."""
        tensors = {f"module.{k}": v for k, v in {**self.params, **self.buffers}.items()}
        holder = self._holder

        def one(
            t: dict[str, torch.Tensor],
            fields: dict[str, torch.Tensor],
            w: torch.Tensor,
            d: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        ) -> Any:
            return torch.func.functional_call(holder, t, ("weighted_loss", Batch(**fields), w, d))

        stacked_draws = (
            torch.stack([d[0] for d in draws]),
            torch.stack([d[1] for d in draws]),
            torch.stack([d[2] for d in draws]),
        )
        losses, metrics = torch.vmap(one)(
            tensors, batch_fields(batches), torch.stack(weights), stacked_draws
        )
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.optimizer.step()
        return [{k: v[s] for k, v in metrics.items()} for s in range(len(self.models))]

    @torch.no_grad()
    def write_back(self) -> None:
        """Each model's parameters and Adam state from its slice."""
        state = self.optimizer.state_dict()
        for s, model in enumerate(self.models):
            for name, param in model.named_parameters():
                param.copy_(self.params[name][s])
            model.optimizer.load_state_dict(slice_state(state, s))


@torch.no_grad()
def rollout_stacked(
    agents: Sequence[Agent],
    world_models: Sequence[WorldModel],
    start_obs: Sequence[torch.Tensor],
    horizon: int,
    bounds: Sequence[StateBounds | None],
    caution: Caution,
    streams: Streams,
) -> list[RolloutResult]:
    """:func:`rollout` of k seeds at once (seed s: ``agents[s]`` in ``world_models[s]`` from
    ``start_obs[s]``, drawing from its stream ``streams.of(s)``), each step's s′ of every seed
    sampled as one batched computation (:class:`StackedDynamics`, stacked
    once per rollout: the
    diffusion chain, a rollout's cost). Seed s's results are those of its :func:`rollout`
    alone: the same draws from its stream in the same order, up to the rounding of batched
    matrix products."""
    walkers = [
        Walker(a, m, o, horizon, b, False, caution)
        for a, m, o, b in zip(agents, world_models, start_obs, bounds, strict=True)
    ]
    models = [cast(DiffusionDynamics, w.world_model.dynamics) for w in walkers]
    stacked = StackedDynamics(models)  # the weights stay as they are for the whole rollout
    while True:
        live = [s for s, w in enumerate(walkers) if not w.done]
        if not live:
            break
        queries, noises = [], []
        for s in live:
            with streams.of(s):
                obs, act = walkers[s].query()
                noises.append(models[s].draw_noise(len(obs), obs.device))
            queries.append((obs, act))
        draws = stacked.sample([q[0] for q in queries], [q[1] for q in queries], noises, live)
        for s, d in zip(live, draws, strict=True):
            walkers[s].advance(d)
    return [w.result() for w in walkers]


def refit_round(
    refitters: Sequence[Refitter],
    samplers: Sequence[ReplayBuffer],
    policies: Sequence[Agent],
    behaviors: Sequence[BehaviorModel],
    streams: Streams,
) -> list[dict[str, torch.Tensor]]:
    """:meth:`Refitter.round` of k seeds' re-fitters (same configuration), each step of every seed's
    model one batched computation (:class:`adept.world_models.model.StackedWorldModels`): seed
    s draws its rows with ``samplers[s]`` and its loss's random numbers from
    ``streams.of(s)`` as its round alone does, so its results are that round's, up to the
    rounding of batched matrix products. Returns each seed's metrics."""
    first = refitters[0]
    trained = StackedWorldModels([r.trained() for r in refitters])
    averaged = (
        None
        if first.online is None
        else [
            torch.stack([p.detach() for p in params])
            for params in zip(*(r.model.parameters() for r in refitters), strict=True)
        ]
    )
    sums: list[dict[str, torch.Tensor]] = [{} for _ in refitters]
    for _ in range(first.steps):
        batches, weights, draws, stats = [], [], [], []
        for s, r in enumerate(refitters):
            with streams.of(s):
                rows, w, seed_stats = refit_rows(
                    samplers[s].sample(r.pool),
                    policies[s],
                    behaviors[s],
                    r.rule,
                    r.batch_size,
                    samplers[s].generator,
                )
                dynamics = cast(DiffusionDynamics, r.trained().dynamics)
                draws.append(dynamics.draw_loss_noise(len(rows), rows.observations.device))
            batches.append(rows)
            weights.append(
                torch.full((len(rows),), 1.0 / len(rows), device=rows.observations.device)
                if w is None
                else w
            )
            stats.append(seed_stats)
        losses = trained.train_step(batches, weights, draws)
        if averaged is not None:
            with torch.no_grad():
                first.average_into(averaged, trained.parameters(), None)
        for s in range(len(refitters)):
            for key, value in {**losses[s], **stats[s]}.items():
                sums[s][key] = sums[s].get(key, torch.zeros_like(value)) + value
    trained.write_back()
    if averaged is not None:
        with torch.no_grad():
            for s, r in enumerate(refitters):
                for param, stack in zip(r.model.parameters(), averaged, strict=True):
                    param.copy_(stack[s])
    steps = max(first.steps, 1)
    return [{k: v / steps for k, v in seed.items()} for seed in sums]


def world_model_round(
    methods: Sequence[Method], step: int, agents: Sequence[Agent], streams: Streams
) -> list[dict[str, torch.Tensor]] | None:
    """The seeds' rounds as batched computations: ADEPT's re-fit steps train every seed's
    world model in one step (:func:`refit_round`), and the rollouts step every
    seed together, each step's s′ of all seeds sampled at once
    (:func:`adept.world_models.rollout.rollout_stacked`); the diagnostics run seed after seed. Each
    seed's results are those of its round alone."""
    models = cast(list[ADEPTMethod], list(methods))
    first = models[0]
    if len(models) < 2 or not all(
        isinstance(m.world_model.dynamics, DiffusionDynamics) for m in models
    ):
        return None
    if not first.rolls_after(step):
        return [{} for _ in models]
    metrics: list[dict[str, torch.Tensor]] = [{} for _ in models]
    if first.refitter is not None:
        refits = refit_round(
            [cast(Refitter, m.refitter) for m in models],
            [m.model_data for m in models],
            agents,
            [cast(BehaviorModel, m.behavior) for m in models],
            streams,
        )
        for seed_metrics, refit in zip(metrics, refits, strict=True):
            seed_metrics.update(refit)
    starts = []
    for s, (method, agent) in enumerate(zip(models, agents, strict=True)):
        with streams.of(s):
            metrics[s].update(method.before_rollouts(step, agent, refit=False))
            starts.append(method.rollout_starts())
    results = rollout_stacked(
        agents,
        [m.world_model for m in models],
        starts,
        first.config.rollout.horizon,
        [m.bounds for m in models],
        first.caution,
        streams,
    )
    for method, seed_metrics, result in zip(models, metrics, results, strict=True):
        seed_metrics.update(method.store_rollouts(result))
    return metrics
