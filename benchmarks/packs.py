"""Seeds per hour: k seeds trained alone one after another vs. packed in one process.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.packs                        # IQL and SAC, k = 3, 5, hopper-random
    python -m benchmarks.packs --agents iql --packs 1 3 5 8 --num-steps 6000
    python -m benchmarks.packs --agents iql --packs 3 --method adept   # k world models too

Each measurement is an ordinary ``adept train`` (``--seed 0`` alone, ``--seeds 0 .. k-1``
packed) in a fresh run directory under ``--out-dir``; its speed is read from ``metrics.csv``
the way the reference figures were: the wall-time between the log rows at
``--from-step`` and ``--num-steps`` (the set-up, the warm-up and the final evaluation left out).
Alone and packed runs alternate, ``--repeats`` times. Seeds per hour are those of a
``--budget``-step run: k × 3600 / (budget / updates per second of the pack).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import tyro

from adept.methods import ADEPTConfig
from adept.training import TrainConfig, train
from adept.world_models.pretrain import PretrainConfig
from benchmarks.common import format_table, mean_std, updates_per_second

AgentName = Literal["iql", "sac", "td3bc", "bc"]


@dataclass(frozen=True)
class Args:
    agents: tuple[AgentName, ...] = ("iql", "sac")
    """Agents to measure."""
    packs: tuple[int, ...] = (3, 5)
    """Pack sizes k (seeds 0 .. k−1 in one process). k = 1 is the alone column: `adept train
    --seeds` with one seed runs the ordinary loop."""
    dataset: str = "hopper-random"
    """Dataset of every run."""
    method: Literal["none", "diffusion", "adept"] = "none"
    """The runs' method: with diffusion or adept each seed has its own world model, and a
    pack's rollouts sample every seed's s′ as one computation (re-fits run seed by seed)."""
    pretrain_steps: int = 2000
    """World-model pre-training and β-fit steps of the model-based runs (set-up, outside the
    timed window; one model shared by every seed and run through the artifact cache)."""
    num_steps: int = 4000
    """Updates of each measured run."""
    from_step: int = 1000
    """Timing starts at this step's log row (after the warm-up)."""
    budget: int = 100_000
    """The run length whose seeds/hour are reported."""
    repeats: int = 2
    """Measurements of each (agent, k), alternating alone and packed."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device of the runs."""
    threads: int | None = None
    """Torch threads (None: torch's default, all cores); 1 is what each of `adept bench`'s
    workers gets on this 2-core machine."""
    out_dir: Path = Path("runs/bench-packs")
    """Where the run directories and results.json go."""


def measure(args: Args, agent: AgentName, k: int, packed: bool, repeat: int) -> float:
    """Updates/s of one seed's training, for a pack of k (``packed``) or one seed alone."""
    name = f"{args.method}-{agent}-k{k}-{'packed' if packed else 'alone'}-{repeat}"
    run_dir = args.out_dir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    config = TrainConfig(
        dataset=args.dataset,
        agent=agent,
        num_steps=args.num_steps,
        run_dir=run_dir,
        log_every=args.from_step,
        eval_every=args.num_steps,
        eval_episodes=1,
        checkpoint_every=args.num_steps,
        device=args.device,
        progress=False,
        seeds=tuple(range(k)) if packed else (),
        method=args.method,
        adept=ADEPTConfig(
            pretrain=PretrainConfig(steps=args.pretrain_steps, behavior_steps=args.pretrain_steps),
            generator_seed=0,
        ),
    )
    train(config)
    measured = run_dir / "seed0" if packed else run_dir
    speed = updates_per_second(measured, args.from_step, args.num_steps)
    shutil.rmtree(run_dir, ignore_errors=True)
    return speed


def main(args: Args) -> dict[str, object]:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    results: dict[str, object] = {
        "dataset": args.dataset,
        "method": args.method,
        "device": device,
        "threads": torch.get_num_threads(),
        "num_steps": args.num_steps,
        "from_step": args.from_step,
        "budget": args.budget,
        "rows": [],
    }
    rows: list[dict[str, Any]] = []
    alone: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for agent in args.agents:
        for k in args.packs:
            packed_speeds: list[float] = []
            for repeat in range(args.repeats):
                alone.setdefault(agent, []).append(measure(args, agent, 1, False, repeat))
                packed_speeds.append(measure(args, agent, k, True, repeat))
            alone_mean = sum(alone[agent]) / len(alone[agent])
            packed_mean = sum(packed_speeds) / len(packed_speeds)
            row = {
                "agent": agent,
                "k": k,
                "updates_per_s_alone": mean_std(alone[agent]),
                "updates_per_s_packed": mean_std(packed_speeds),
                "seeds_per_hour_alone": round(3600 / (args.budget / alone_mean), 2),
                "seeds_per_hour_packed": round(k * 3600 / (args.budget / packed_mean), 2),
                "speedup": round(k * packed_mean / alone_mean, 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    results["rows"] = rows
    results["wall_time_s"] = round(time.perf_counter() - t0, 1)
    (args.out_dir / "results.json").write_text(json.dumps(results, indent=2))
    threads = torch.get_num_threads()
    print(
        f"\n{args.budget}-step runs on {device} ({threads} threads), {args.dataset}, "
        f"method {args.method}:"
    )
    columns = {
        "agent": "agent",
        "k": "k",
        "updates/s alone": "updates_per_s_alone",
        "updates/s per seed, packed": "updates_per_s_packed",
        "seeds/hour alone": "seeds_per_hour_alone",
        "seeds/hour packed": "seeds_per_hour_packed",
        "speed-up": "speedup",
    }
    print(format_table(columns, rows))
    return results


if __name__ == "__main__":
    main(tyro.cli(Args))
