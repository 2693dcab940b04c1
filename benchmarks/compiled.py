"""Speed of eager vs compiled agent updates (``adept train --compile``), in alternating rounds.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.compiled                  # hopper-random, every agent, default threads

Two agents of each kind start from the same weights: one updates eagerly, the other with its
losses compiled (:meth:`adept.agents.Agent.compile`). The compiled one's first update, which
compiles, is timed on its own (inductor's cache under /tmp makes a second process's compile
shorter: run twice to see both). Then both update in ``--rounds`` alternating blocks of
``--block-seconds``, so a drift of the machine's speed hits both alike; the speed-up reported is
the median over rounds of the ratio of the two blocks of one round. This is what
:data:`adept.base.compiling.FASTER` was chosen from; ``benchmarks.reference`` measures IQL end to
end.
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from adept.agents import AGENTS, Agent, AgentSpec
from adept.data import ReplayBuffer
from benchmarks.common import alternating_speeds, cpu_buffer, print_results


@dataclass(frozen=True)
class Args:
    dataset: str = "hopper-random"
    """Dataset the agents train on."""
    agents: tuple[str, ...] = ("iql", "sac", "td3bc", "bc")
    """Agents whose update is timed."""
    batch_size: int = 256
    """Batch of an update."""
    rounds: int = 20
    """Alternating rounds per agent."""
    block_seconds: float = 0.5
    """Length of a block (its number of updates set from the warm-up's eager speed)."""
    threads: int | None = None
    """Torch threads (None: torch's default, all cores)."""
    out: Path | None = None
    """Also write the results as JSON here."""


def update(agent: Agent, buffer: ReplayBuffer, batch_size: int) -> Any:
    return agent.update(buffer.sample(batch_size))


def main(args: Args) -> list[dict[str, Any]]:
    data, buffer = cpu_buffer(args.dataset, args.threads)
    spec = AgentSpec.from_data(data, 10**6, buffer.device)
    rows = []
    for name in args.agents:
        eager, compiled = AGENTS[name](spec), AGENTS[name](spec)
        compiled.load_state_dict(eager.state_dict())
        compiled.compile()
        start = time.perf_counter()
        for _ in range(3):  # every loss of an update (TD3+BC's delayed actor step included)
            compiled.update(buffer.sample(args.batch_size))
        compile_s = time.perf_counter() - start
        calls = {
            "eager": functools.partial(update, eager, buffer, args.batch_size),
            "compiled": functools.partial(update, compiled, buffer, args.batch_size),
        }
        speeds = alternating_speeds(calls, args.rounds, args.block_seconds)
        ratios = [c / e for e, c in zip(speeds["eager"], speeds["compiled"], strict=True)]
        rows.append(
            {
                "agent": name,
                "eager_per_s": round(statistics.median(speeds["eager"]), 1),
                "compiled_per_s": round(statistics.median(speeds["compiled"]), 1),
                "speedup": round(statistics.median(ratios), 3),
                "compile_s": round(compile_s, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    columns = {
        "agent": "agent",
        "eager (updates/s)": "eager_per_s",
        "compiled (updates/s)": "compiled_per_s",
        "speed-up": "speedup",
        "first updates, compiling (s)": "compile_s",
    }
    title = (
        f"{args.dataset}, batch {args.batch_size}, {torch.get_num_threads()} threads, medians "
        f"of {args.rounds} alternating rounds:"
    )
    print_results(title, columns, rows, args.out)
    return rows


if __name__ == "__main__":
    main(tyro.cli(Args))
