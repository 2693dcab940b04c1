"""Speed of fp32 vs bf16 autocast, part by part, measured in alternating rounds.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.precision                      # hopper-random, torch's default threads
    python -m benchmarks.precision --rounds 60 --threads 1

Each part is timed as ``--rounds`` short blocks (``--block-seconds`` each), fp32 and bf16
alternating block by block (the contexts adept's loop uses: :func:`adept.base.precision.autocast`),
so a drift of the machine's speed hits both alike; the speed-up reported is the median over
rounds of the ratio of the two blocks of one round. Parts: each agent's update (batch 256), and
the default diffusion world model's training step (batch 256), its sampling of s′ for ADEPT's
rollout batch (1024 states), and an IS re-fit step (batch 1024). Accuracy is not measured here: the
``precision-table`` bench preset (agents) and ``benchmarks.world_models`` with a ``-bf16``
candidate (world model) measure what bf16 costs.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from adept.agents import AGENTS, AgentSpec
from adept.base.precision import Part, autocast
from adept.methods.adept import ADEPTConfig
from adept.world_models.model import WorldModel
from benchmarks.common import alternating_speeds, cpu_buffer, print_results


@dataclass(frozen=True)
class Args:
    dataset: str = "hopper-random"
    """Dataset the parts train on."""
    agents: tuple[str, ...] = ("iql", "sac", "td3bc", "bc")
    """Agents whose update is timed."""
    world_model: bool = True
    """Also time the world model's training step, sampling and re-fit step."""
    rounds: int = 30
    """Alternating rounds per part."""
    block_seconds: float = 0.4
    """Length of a block (its number of calls is set from the warm-up's fp32 speed)."""
    threads: int | None = None
    """Torch threads (None: torch's default, all cores)."""
    out: Path | None = None
    """Also write the results as JSON here."""


def paired(call: Callable[[], Any], part: str, kind: Part, args: Args) -> dict[str, Any]:
    """Calls/s of ``call`` (of the run's part ``kind``) under fp32 and bf16, alternating
    blocks; median ratio."""
    device = torch.device("cpu")
    contexts = {p: autocast(p, device, kind) for p in ("fp32", "bf16")}

    def under(context: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            with context():  # a fresh context per call, as the loop enters one per step
                return call()

        return run

    calls = {p: under(context) for p, context in contexts.items()}
    speeds = alternating_speeds(calls, args.rounds, args.block_seconds)
    ratios = [b / f for f, b in zip(speeds["fp32"], speeds["bf16"], strict=True)]
    return {
        "part": part,
        "fp32_per_s": round(statistics.median(speeds["fp32"]), 1),
        "bf16_per_s": round(statistics.median(speeds["bf16"]), 1),
        "speedup": round(statistics.median(ratios), 3),
    }


def main(args: Args) -> list[dict[str, Any]]:
    data, buffer = cpu_buffer(args.dataset, args.threads)
    device = buffer.device
    rows = []
    for name in args.agents:
        torch.manual_seed(0)
        agent = AGENTS[name](AgentSpec.from_data(data, 10**6, device))

        def update(agent: Any = agent) -> Any:
            return agent.update(buffer.sample(256))

        rows.append(paired(update, f"{name} update", "agent", args))
        print(json.dumps(rows[-1]), flush=True)
    if args.world_model:
        torch.manual_seed(0)
        config = ADEPTConfig()
        model = WorldModel(data, config.world_model, device)
        starts = buffer.sample(config.rollout.batch_size)
        weights = torch.full((config.refit.batch_size,), 1.0 / config.refit.batch_size)
        parts: dict[str, Callable[[], Any]] = {
            "world model train step (256)": lambda: model.train_step(
                buffer.sample(config.pretrain.batch_size)
            ),
            f"world model s' sampling ({config.rollout.batch_size})": lambda: model.step(
                starts.observations, starts.actions
            ),
            f"IS re-fit step ({config.refit.batch_size})": lambda: model.train_step(
                buffer.sample(config.refit.batch_size), weights
            ),
        }
        for part, call in parts.items():
            rows.append(paired(call, part, "model", args))
            print(json.dumps(rows[-1]), flush=True)
    columns = {
        "part": "part",
        "fp32 (calls/s)": "fp32_per_s",
        "bf16 (calls/s)": "bf16_per_s",
        "bf16 speed-up": "speedup",
    }
    title = (
        f"{args.dataset}, {torch.get_num_threads()} threads, medians of {args.rounds} "
        "alternating rounds:"
    )
    print_results(title, columns, rows, args.out)
    return rows


if __name__ == "__main__":
    main(tyro.cli(Args))
