"""Several seeds of one run trained in one process, their agents' updates batched
(:mod:`adept.accel.pack`), each seed an ordinary run in its own directory."""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from adept.accel.graphs import GraphedPackUpdate
from adept.accel.pack import Pack
from adept.accel.rounds import after_update_pack, packed_path
from adept.base.errors import note
from adept.base.precision import Contexts
from adept.base.rng import Streams, rng_state
from adept.data.buffer import resolve_device
from adept.data.transitions import Transitions
from adept.methods import (
    Method,
)
from adept.training.config import TrainConfig
from adept.training.run import Seat, progress_bar, run_dir, train_in


def train_seeds(config: TrainConfig, data: Transitions, env_id: str) -> dict[str, Any]:
    """Train ``config.seeds`` in this process, their agents updated as one batched computation
    (:class:`adept.accel.pack.Pack`); returns each run's summary by run directory.

    Each seed is an ordinary run (``config.for_seed``): its own directory, config, metrics,
    evaluations and checkpoints, its own random streams (:class:`adept.accel.pack.Streams`), and it
    can be resumed alone or in a pack. Diff+X's and ADEPT's rounds batch the seeds' world models
    (:func:`adept.accel.rounds.after_update_pack`); other methods' work runs seed after seed.
    A seed leaves the pack and is finished alone, from its last
    checkpoint, by the ordinary loop when it diverges (that loop then stops or rolls back as
    --on-divergence says), or when a resume finds its checkpoint at another step than the
    others' (a kill between two seeds' checkpoints; a seed ahead first tries its previous
    checkpoint)."""
    configs = [config.for_seed(seed) for seed in config.seeds]
    summaries: dict[str, Any] = {}
    alone: list[TrainConfig] = []
    contexts = Contexts.of(config.precision, resolve_device(config.device))
    fingerprint = data.fingerprint()  # once for the k run directories
    with contextlib.ExitStack() as held:
        seats, states, rngs = [], [], []
        for c in configs:
            run = held.enter_context(run_dir(c, fingerprint))
            seat = Seat(run, c, data, env_id, contexts)
            seats.append(seat)
            states.append(seat.latest())
            rngs.append(rng_state())  # the seed's stream after its networks' initialization
        steps = [0 if state is None else int(state["step"]) for state in states]
        common = min((step for step in steps if step < config.num_steps), default=0)
        joining: list[tuple[Seat, dict[str, Any] | None, dict[str, Any]]] = []
        for seat, state, step, rng in zip(seats, states, steps, rngs, strict=True):
            if common < step < config.num_steps:  # ahead: its previous checkpoint may be in step
                previous = seat.run.load_previous_checkpoint(map_location="cpu")
                if previous is not None and int(previous["step"]) == common:
                    state, step = previous, common
            if step == common:
                joining.append((seat, state, rng))
            else:  # finished (the ordinary loop reads its summary), or out of step
                alone.append(seat.config)
        if len(joining) == 1:  # a pack of one is the ordinary loop, less the batching's overhead
            alone.append(joining.pop()[0].config)
        streams = Streams([rng for _, _, rng in joining])
        for s, (seat, state, _) in enumerate(joining):
            with streams.of(s):
                seat.resume(state)
                seat.begin()
        active = [seat for seat, _, _ in joining]
        if active:
            finished = train_pack(config, active, streams, common, contexts)
            for seat, summary in finished.items():
                summaries[str(seat.run.path)] = summary
            alone += [seat.config for seat in active if seat not in finished]
    for c in alone:  # the pack's run dirs are released: the ordinary loop takes them over
        with run_dir(c, fingerprint) as run:
            summaries[str(run.path)] = train_in(run, c, data, env_id)
    return summaries


def train_pack(
    config: TrainConfig,
    seats: list[Seat],
    streams: Streams,
    start: int,
    contexts: Contexts,
) -> dict[Seat, dict[str, Any]]:
    """The loop over a pack of seats from ``start``: returns the summaries of the seats that
    finished; a seat that diverged is left out (the caller finishes it alone)."""
    pack = Pack([seat.agent for seat in seats])
    update = GraphedPackUpdate(pack) if config.cuda_graphs else pack.update
    method = type(seats[0].method)
    if packed_path(method) is None and method.after_update is not Method.after_update:
        note(
            f"--method {config.method} has no packed path: the {len(seats)} seeds' agent updates "
            "are batched, its own work between them runs seed by seed"
        )
    finished: dict[Seat, dict[str, Any]] = {}
    bar = progress_bar(config, start, f"{config.agent} ×{len(seats)}")
    try:
        for step in range(start, config.num_steps):
            batches, noises = [], []
            for s, seat in enumerate(seats):
                with streams.of(s):
                    with contexts.model():
                        batches.append(seat.method.sample(step))
                    with contexts.agent():
                        noises.append(seat.agent.draw(batches[-1]))
            with contexts.agent():
                metrics = update(batches, noises)
            with contexts.model():
                after = after_update_pack(
                    [seat.method for seat in seats], step, [seat.agent for seat in seats], streams
                )
            for s, seat_metrics in enumerate(after):
                metrics[s].update(seat_metrics)
            leaving = []
            for s, seat in enumerate(seats):
                row = seat.row(step + 1, metrics[s])
                if row.divergence is not None:
                    leaving.append(s)
                    seat.loggers.close()
                    continue
                with streams.of(s):
                    shown = seat.record(row, functools.partial(pack.agent_state, s))
                if row.values and s == 0:
                    bar.set_postfix(shown, refresh=False)
            if leaving:
                pack.release()
                seats = [seat for s, seat in enumerate(seats) if s not in leaving]
                streams.states = [rng for s, rng in enumerate(streams.states) if s not in leaving]
                if not seats:
                    break
                pack = Pack([seat.agent for seat in seats])
                update = GraphedPackUpdate(pack) if config.cuda_graphs else pack.update
                bar.set_description(f"{config.agent} ×{len(seats)}")
            bar.update(1)
        else:
            for seat in seats:
                finished[seat] = seat.finish()
    finally:
        bar.close()
        for seat in seats:
            seat.loggers.close()
    return finished
