"""A pack's work between agent updates: each method's packed path where it has one, seed by seed
otherwise.

A packed path takes the pack's methods (one per seed, one configuration), the step, their agents
and the seeds' random streams, and returns each seed's metrics, equal to what each seed's own
``after_update`` returns up to the rounding of batched matrix products; or None where it cannot
batch this pack (then the seeds run one after the other). A method without an entry in
:data:`PACKED` still trains in a pack: the agents' updates are batched, its own work is not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from adept.accel.stacked import world_model_round
from adept.agents import Agent
from adept.base.rng import Streams
from adept.methods.adept import ADEPTMethod
from adept.methods.base import Method

PackedRound = Callable[
    [Sequence[Method], int, Sequence[Agent], Streams], list[dict[str, torch.Tensor]] | None
]

PACKED: dict[type[Method], PackedRound] = {ADEPTMethod: world_model_round}
"""Packed paths by method class (a subclass takes its nearest ancestor's): Diff+X's and
ADEPT's rounds batch the seeds' world models."""


def packed_path(method: type[Method]) -> PackedRound | None:
    """The packed path of ``method``'s class, or None where it has none."""
    return next((PACKED[cls] for cls in method.__mro__ if cls in PACKED), None)


def after_update_pack(
    methods: Sequence[Method], step: int, agents: Sequence[Agent], streams: Streams
) -> list[dict[str, torch.Tensor]]:
    """Each seed's ``after_update`` (``methods[s]`` with ``agents[s]``, drawing from
    ``streams.of(s)``): batched where the method has a packed path, else seed after seed."""
    path = packed_path(type(methods[0]))
    if path is not None:
        batched = path(methods, step, agents, streams)
        if batched is not None:
            return batched
    out = []
    for s, (method, agent) in enumerate(zip(methods, agents, strict=True)):
        with streams.of(s):
            out.append(method.after_update(step, agent))
    return out
