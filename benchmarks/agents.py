"""Agent speed (updates/s) and a learning table (normalized score over seeds) at a named budget.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.agents                       # speed + the cpu-20k learning table
    python -m benchmarks.agents --no-learning         # speed only
    python -m benchmarks.agents --num-steps 1000000 --budget-name paper-1m

Learning runs are ordinary ``adept train`` run directories under ``--out-dir``; an interrupted
benchmark resumes where it stopped. Parallel workers each get one torch thread.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from adept.accel.graphs import GraphedUpdate
from adept.agents import AGENTS, AgentSpec
from adept.base.precision import autocast
from adept.data import ReplayBuffer, resolve_device
from adept.datasets import load_dataset
from adept.training import TrainConfig
from benchmarks.common import mean_std, run_parallel


@dataclass(frozen=True)
class Args:
    agents: tuple[str, ...] = ("iql", "sac", "td3bc", "bc")
    """Agents to measure."""
    datasets: tuple[str, ...] = ("hopper-random", "halfcheetah-random")
    """Datasets of the learning table."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the learning table."""
    num_steps: int = 20_000
    """Gradient steps per learning run."""
    budget_name: str = "cpu-20k"
    """Name of the budget, printed with every table."""
    eval_every: int = 5000
    """Evaluation interval of the learning runs."""
    workers: int = 2
    """Learning runs in parallel (one torch thread each)."""
    out_dir: Path = Path("runs/bench-agents")
    """Where the learning runs and results.json go."""
    speed: bool = True
    """Measure updates/s."""
    learning: bool = True
    """Run the learning table."""
    speed_updates: int = 1000
    """Updates timed per agent (after 100 warm-up updates)."""
    precisions: tuple[Literal["fp32", "bf16"], ...] = ("fp32", "bf16")
    """Precisions of the speed table (adept train --precision); the first also runs the
    learning table's --precision."""
    cuda_graphs: bool = True
    """On a CUDA device, also time each agent's update replayed from CUDA graphs (adept train
    --cuda-graphs; the column 'cuda <precision> graphs')."""


def measure_speed(args: Args) -> dict[str, dict[str, float]]:
    """Updates/s of each agent on each device in each precision ('cpu fp32', 'cpu bf16', ...),
    the precisions alternated agent by agent."""
    data = load_dataset("hopper-random")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out: dict[str, dict[str, float]] = {}
    for device_name in devices:
        device = resolve_device(device_name)
        buffer = ReplayBuffer.from_transitions(data, device=device)
        spec = AgentSpec.from_data(data, args.speed_updates + 100, device)
        graphed = [False, True] if device.type == "cuda" and args.cuda_graphs else [False]
        for name in args.agents:
            for prec in args.precisions:
                for graphs in graphed:
                    amp = autocast(prec, device, "agent")
                    torch.manual_seed(0)
                    agent = AGENTS[name](spec)
                    update = GraphedUpdate(agent) if graphs else agent.update
                    for _ in range(100):  # the graphs' warm-up and capture among them
                        with amp():
                            update(buffer.sample(256))
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(args.speed_updates):
                        with amp():
                            update(buffer.sample(256))
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    rate = args.speed_updates / (time.perf_counter() - start)
                    column = f"{device_name} {prec}" + (" graphs" if graphs else "")
                    out.setdefault(name, {})[column] = rate
    return out


def learning_table(args: Args) -> list[tuple[str, str, int, dict[str, Any]]]:
    for dataset in args.datasets:  # make each dataset once, before the workers start
        load_dataset(dataset)
    base = TrainConfig(
        num_steps=args.num_steps,
        eval_every=args.eval_every,
        progress=False,
        device="cpu",
        precision=args.precisions[0],
    )
    configs = [
        replace(
            base,
            dataset=dataset,
            agent=agent,
            seed=seed,
            run_dir=args.out_dir / args.budget_name / f"{dataset}-{agent}-seed{seed}",
        )
        for dataset in args.datasets
        for agent in args.agents
        for seed in args.seeds
    ]
    results: list[tuple[str, str, int, dict[str, Any]]] = []
    for config, summary in run_parallel(configs, args.workers):
        dataset, agent, seed = config.dataset, config.agent, config.seed
        print(
            f"  {dataset} {agent} seed {seed}: last {summary['normalized_score_last']:.1f}, "
            f"best {summary['normalized_score_best']:.1f}, {summary['wall_time']:.0f} s",
            flush=True,
        )
        results.append((dataset, agent, seed, summary))
    return results


def main(args: Args) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    report: dict[str, object] = {"budget": args.budget_name, "num_steps": args.num_steps}
    if args.speed:
        speed = measure_speed(args)
        report["updates_per_second"] = speed
        devices = sorted({d for rates in speed.values() for d in rates})
        print("\n| agent | " + " | ".join(f"updates/s ({d})" for d in devices) + " |")
        print("|---|" + "---|" * len(devices))
        for name, rates in speed.items():
            print(f"| {name} | " + " | ".join(f"{rates[d]:.0f}" for d in devices) + " |")
    if args.learning:
        budget = f"budget {args.budget_name} ({args.num_steps} steps)"
        print(f"\nlearning runs, {budget}, seeds {args.seeds}:")
        runs = learning_table(args)
        report["runs"] = [
            {"dataset": d, "agent": a, "seed": s, **summary} for d, a, s, summary in runs
        ]
        print(f"\nnormalized score, {budget}, mean ± std over {len(args.seeds)} seeds")
        print("| dataset | agent | last | best | wall time (s) |")
        print("|---|---|---|---|---|")
        for dataset in args.datasets:
            for agent in args.agents:
                mine = [r for d, a, _, r in runs if d == dataset and a == agent]
                last = mean_std([r["normalized_score_last"] for r in mine])
                best = mean_std([r["normalized_score_best"] for r in mine])
                wall = np.mean([r["wall_time"] for r in mine])
                print(f"| {dataset} | {agent} | {last} | {best} | {wall:.0f} |")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"results-{args.budget_name}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(tyro.cli(Args))
