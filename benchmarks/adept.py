"""ADEPT benchmark: world-model accuracy against MuJoCo, cost, and a learning table.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.adept --parts accuracy cost          # ≈ 10 min on 2 CPU cores
    python -m benchmarks.adept --parts learning               # IQL vs Diff+IQL vs ADEPT+IQL
    python -m benchmarks.adept --parts learning --num-steps 1000000 --budget-name paper-1m
    python -m benchmarks.adept --parts sweep pretrain         # the schedule defaults' evidence

(a) accuracy: true one-step and H-step error (simulator set to the state, see
    adept.world_models.true_dynamics) of the diffusion world model and of a Gaussian MLP one-step
    model with the same width, depth and target, pre-trained on D; measured under the behaviour
    policy (β, a BC fit) and under a shifted policy (IQL trained on D), before and after ADEPT's IS
    update toward the shifted policy.
(b) speed: world-model training steps/s, IS-update steps/s, rollout transitions/s (a minute);
    cost: those, and ADEPT+IQL's wall time relative to IQL alone for the same RL steps.
(c) learning: normalized score (last, best; mean ± std over seeds) at a named budget.
(d) sweep: ADEPT+IQL with one schedule knob changed at a time from the defaults (real/synthetic
    ratio, horizon, rollout interval, IS steps per round, x₀ target), beside IQL alone.
(e) pretrain: the world model's true one-step and H-step error under β, and its held-out loss,
    along pre-training, for both x₀ targets.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from adept.agents import BC, IQL, AgentSpec, BCConfig
from adept.bench.spec import apply_overrides
from adept.data import ReplayBuffer
from adept.datasets import load_dataset
from adept.methods import ADEPTConfig
from adept.training import TrainConfig, train
from adept.world_models.importance import BehaviorModel, importance_sampled_update
from adept.world_models.model import WorldModel, WorldModelConfig
from adept.world_models.pretrain import PretrainConfig
from adept.world_models.rollout import StateBounds, rollout
from adept.world_models.true_dynamics import TrueDynamics, true_model_error
from benchmarks.common import mean_std, print_table, run_parallel, table_row

Part = Literal["accuracy", "speed", "cost", "learning", "sweep", "pretrain"]

VARIANTS: dict[str, Callable[[ADEPTConfig], ADEPTConfig]] = {
    "defaults": lambda c: c,
    "real_ratio=0.25": lambda c: apply_overrides(c, {"mix.real_ratio": 0.25}),
    "real_ratio=0.8": lambda c: apply_overrides(c, {"mix.real_ratio": 0.8}),
    "horizon=5": lambda c: apply_overrides(c, {"rollout.horizon": 5}),
    "rollout_every=250": lambda c: apply_overrides(c, {"rollout.every": 250}),
    "model_update_steps=100": lambda c: apply_overrides(c, {"refit.steps": 100}),
    "target=next": lambda c: replace(c, world_model=replace(c.world_model, target="next")),
}
"""Schedule variants of the sweep: one knob changed from the defaults each."""


@dataclass(frozen=True)
class Args:
    parts: tuple[Part, ...] = ("accuracy", "cost", "learning")
    """Which measurements to run."""
    datasets: tuple[str, ...] = ("hopper-random", "halfcheetah-random")
    """Datasets."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the learning table."""
    num_steps: int = 10_000
    """RL gradient steps per learning run."""
    budget_name: str = "cpu-10k"
    """Name of the learning budget, printed with its table."""
    pretrain_steps: int = 10_000
    """World-model pre-training steps (accuracy part and learning runs)."""
    policy_steps: int = 10_000
    """IQL steps that make the shifted policy of the accuracy part."""
    is_steps: int = 200
    """IS-update steps toward the shifted policy in the accuracy part."""
    error_starts: int = 256
    """Start states per true-error measurement."""
    variants: tuple[str, ...] = tuple(VARIANTS)
    """Sweep variants (names of VARIANTS)."""
    sweep_seeds: tuple[int, ...] = (0, 1)
    """Seeds of the sweep."""
    pretrain_checkpoints: tuple[int, ...] = (2_500, 5_000, 10_000, 20_000)
    """Pre-training steps at which the pretrain part measures the model."""
    workers: int = 2
    """Learning runs in parallel (one torch thread each)."""
    out_dir: Path = Path("runs/bench-adept")
    """Run directories and results JSON."""


def accuracy(args: Args, dataset: str) -> list[dict[str, Any]]:
    torch.manual_seed(0)
    device = torch.device("cpu")
    data = load_dataset(dataset)
    assert data.env_id is not None
    buffer = ReplayBuffer.from_transitions(data, device=device, seed=0)
    truth = TrueDynamics(data.env_id)
    spec = AgentSpec.from_data(data, args.policy_steps, device)
    bc = BC(spec, BCConfig())
    for _ in range(10_000):
        bc.update(buffer.sample(256))
    iql = IQL(spec)
    for _ in range(args.policy_steps):
        iql.update(buffer.sample(256))
    policies = {"behaviour (BC fit)": bc, f"shifted (IQL {args.policy_steps // 1000}k)": iql}
    starts = buffer.sample(args.error_starts).observations
    rows = []
    for dynamics in ("diffusion", "gaussian"):
        model = WorldModel(data, WorldModelConfig(dynamics=dynamics), device)
        for _ in range(args.pretrain_steps):
            model.train_step(buffer.sample(256))

        def errors(model: WorldModel = model) -> dict[str, Any]:
            return {
                name: true_model_error(model, p, truth, starts, 10) for name, p in policies.items()
            }

        before = errors()
        # control: as many extra steps without weights, so the IS columns show the effect of
        # the weighting rather than of the extra training
        snapshot = copy.deepcopy(model.state_dict_all())
        for _ in range(args.is_steps):
            model.train_step(buffer.sample(1024))
        control = errors()
        model.load_state_dict_all(snapshot)
        ess = []
        for _ in range(args.is_steps):
            out = importance_sampled_update(
                model, buffer.sample(1024), iql, BehaviorModel("bc", bc)
            )
            ess.append(float(out["world_model/is_ess"]))
        after = errors()
        for name in policies:
            rows.append(
                {
                    "dataset": dataset,
                    "model": dynamics,
                    "policy": name,
                    "one_step_before": before[name].one_step,
                    "h_step_before": before[name].h_step,
                    "one_step_after_is": after[name].one_step,
                    "h_step_after_is": after[name].h_step,
                    "one_step_after_unweighted": control[name].one_step,
                    "h_step_after_unweighted": control[name].h_step,
                    "is_ess_mean": float(np.mean(ess)),
                }
            )
    truth.close()
    return rows


def speed(dataset: str) -> dict[str, float]:
    """The DDPM world model's hot paths: training steps/s (batch 256), IS-update steps/s
    (batch 1024) and rollout transitions/s (1024 starts × H = 10, with the IQL actor)."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    data = load_dataset(dataset)
    buffer = ReplayBuffer.from_transitions(data, device=device, seed=0)
    model = WorldModel(data, WorldModelConfig(), device)
    spec = AgentSpec.from_data(data, 1000, device)
    iql, bc = IQL(spec), BC(spec)

    def rate(fn: Any, n: int) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return n / (time.perf_counter() - start)

    out = {
        "world_model_train_steps_per_s": rate(lambda: model.train_step(buffer.sample(256)), 300),
        "is_update_steps_per_s": rate(
            lambda: importance_sampled_update(
                model, buffer.sample(1024), iql, BehaviorModel("bc", bc)
            ),
            100,
        ),
    }
    bounds = StateBounds(data.stats(), device)
    start_obs = buffer.sample(1024).observations
    t0 = time.perf_counter()
    n_transitions = sum(
        len(rollout(iql, model, start_obs, 10, bounds).transitions) for _ in range(3)
    )
    out["rollout_transitions_per_s"] = n_transitions / (time.perf_counter() - t0)
    return out


SPEED_COLUMNS = ("WM train steps/s", "IS steps/s", "rollout transitions/s")


def speed_cells(figures: dict[str, float]) -> list[str]:
    """:func:`speed`'s figures as the cells under :data:`SPEED_COLUMNS`."""
    keys = ("world_model_train_steps_per_s", "is_update_steps_per_s", "rollout_transitions_per_s")
    return [f"{figures[k]:.0f}" for k in keys]


def cost(args: Args, dataset: str) -> dict[str, float]:
    """:func:`speed`, and ADEPT+IQL's wall time against IQL's for the same RL steps."""
    out = speed(dataset)

    # ADEPT+IQL vs IQL for the same RL steps; the world model's set-up is reported apart
    steps = 5000
    common_cfg = TrainConfig(
        dataset=dataset,
        num_steps=steps,
        eval_every=steps,
        progress=False,
        device="cpu",
        adept=ADEPTConfig(pretrain=PretrainConfig(steps=args.pretrain_steps)),
    )
    walls = {}
    for method in ("none", "adept"):
        run_dir = args.out_dir / "cost" / f"{dataset}-{method}"
        summary = train(replace(common_cfg, method=method, run_dir=run_dir))
        setup = _setup_time(run_dir)
        walls[method] = (summary["wall_time"], setup)
    out["iql_wall_s"] = walls["none"][0]
    out["adept_iql_wall_s"] = walls["adept"][0]
    out["adept_setup_s"] = walls["adept"][1]
    out["adept_loop_over_iql"] = (walls["adept"][0] - walls["adept"][1]) / walls["none"][0]
    out["adept_total_over_iql"] = walls["adept"][0] / walls["none"][0]
    return out


def _setup_time(run_dir: Path) -> float:
    import csv

    with (run_dir / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row["step"] == "0":
                return float(row["wall_time"])
    return 0.0


def _base_config(args: Args) -> TrainConfig:
    """The learning runs' shared settings (IQL, the named budget, CPU)."""
    for dataset in args.datasets:
        load_dataset(dataset)  # make missing datasets once, before the workers start
    return TrainConfig(
        num_steps=args.num_steps,
        eval_every=max(args.num_steps // 5, 1),
        progress=False,
        device="cpu",
        adept=ADEPTConfig(pretrain=PretrainConfig(steps=args.pretrain_steps)),
    )


def _train_all(jobs: list[tuple[str, TrainConfig]], workers: int, column: str) -> list[dict]:
    """Train every (label, config) in parallel; one row per run with the label under ``column``."""
    labels = {config.run_dir: label for label, config in jobs}
    rows = []
    for config, summary in run_parallel([config for _, config in jobs], workers):
        label = labels[config.run_dir]
        print(
            f"  {config.dataset} {label} seed {config.seed}: last "
            f"{summary['normalized_score_last']:.1f}, best {summary['normalized_score_best']:.1f}, "
            f"{summary['wall_time']:.0f} s",
            flush=True,
        )
        rows.append({"dataset": config.dataset, column: label, "seed": config.seed, **summary})
    return rows


def learning(args: Args) -> list[dict[str, Any]]:
    base = _base_config(args)
    jobs = [
        (
            method,
            replace(
                base,
                dataset=dataset,
                method=method,
                seed=seed,
                run_dir=args.out_dir / args.budget_name / f"{dataset}-iql-{method}-seed{seed}",
            ),
        )
        for dataset in args.datasets
        for seed in args.seeds
        for method in ("none", "diffusion", "adept")
    ]
    return _train_all(jobs, args.workers, "method")


def sweep(args: Args) -> list[dict[str, Any]]:
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown sweep variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    base = replace(_base_config(args), method="adept")
    root = args.out_dir / f"sweep-{args.budget_name}"
    jobs = []
    for dataset in args.datasets:
        for seed in args.sweep_seeds:
            for name in ("IQL alone", *args.variants):
                run_dir = root / f"{dataset}-{name}-seed{seed}".replace("=", "-")
                config = replace(base, dataset=dataset, seed=seed, run_dir=run_dir)
                if name == "IQL alone":
                    config = replace(config, method="none")
                else:
                    config = replace(config, adept=VARIANTS[name](config.adept))
                jobs.append((name, config))
    return _train_all(jobs, args.workers, "variant")


def pretrain(args: Args, dataset: str) -> list[dict[str, Any]]:
    """Model error along pre-training, for both x₀ targets (the same data and β for both)."""
    device = torch.device("cpu")
    data = load_dataset(dataset)
    assert data.env_id is not None
    truth = TrueDynamics(data.env_id)
    rng = np.random.default_rng(0)
    holdout = rng.random(len(data)) < 0.05
    train_buffer = ReplayBuffer.from_transitions(data.subset(~holdout), device=device, seed=0)
    held = ReplayBuffer.from_transitions(data.subset(holdout), device=device, seed=1)
    torch.manual_seed(0)
    spec = AgentSpec.from_data(data, 10_000, device)
    bc = BC(spec, BCConfig())
    for _ in range(10_000):
        bc.update(train_buffer.sample(256))
    starts = train_buffer.sample(args.error_starts).observations
    held_batch = held.sample(4096)
    rows = []
    for target in ("delta", "next"):
        torch.manual_seed(0)
        model = WorldModel(data, WorldModelConfig(target=target), device)
        done = 0
        for checkpoint in sorted(args.pretrain_checkpoints):
            for _ in range(checkpoint - done):
                model.train_step(train_buffer.sample(256))
            done = checkpoint
            err = true_model_error(model, bc, truth, starts, 10)
            with torch.no_grad():
                predicted = model.dynamics.sample(held_batch.observations, held_batch.actions)
                held_err = (predicted - held_batch.next_observations).norm(dim=-1).mean()
            rows.append(
                {
                    "dataset": dataset,
                    "target": target,
                    "steps": checkpoint,
                    "true_one_step": err.one_step,
                    "true_h_step": err.h_step,
                    "held_out_one_step": float(held_err),
                }
            )
            print(f"  {rows[-1]}", flush=True)
    truth.close()
    return rows


NAMES = {"none": "IQL", "diffusion": "Diff+IQL", "adept": "ADEPT+IQL"}


def score_table(
    rows: list[dict[str, Any]], datasets: tuple[str, ...], column: str, labels: dict[str, str]
) -> None:
    """Mean ± std of last and best normalized score per dataset and ``column`` value."""
    print(table_row("dataset", column, "last", "best", "wall time (s)"))
    print("|---" * 5 + "|")
    for d in datasets:
        for key, label in labels.items():
            mine = [r for r in rows if r["dataset"] == d and r[column] == key]
            last = mean_std([r["normalized_score_last"] for r in mine])
            best = mean_std([r["normalized_score_best"] for r in mine])
            wall = f"{np.mean([r['wall_time'] for r in mine]):.0f}"
            print(table_row(d, label, last, best, wall))


def main(args: Args) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if "accuracy" in args.parts:
        rows = [r for d in args.datasets for r in accuracy(args, d)]
        report["accuracy"] = rows
        print(
            "\n(a) true error vs MuJoCo (+IS: after the IS update; +unweighted: after as many "
            "unweighted steps instead, the control)"
        )
        print(
            f"    mean L2 over {args.error_starts} starts; pre-training "
            f"{args.pretrain_steps} steps, IS update {args.is_steps} steps toward the shifted π"
        )
        columns = {
            "dataset": "dataset",
            "model": "model",
            "policy": "policy",
            "1-step": "one_step_before",
            "10-step": "h_step_before",
            "1-step +IS": "one_step_after_is",
            "10-step +IS": "h_step_after_is",
            "1-step +unweighted": "one_step_after_unweighted",
            "10-step +unweighted": "h_step_after_unweighted",
        }
        print_table(columns, rows)
    if "speed" in args.parts:
        report["speed"] = {d: speed(d) for d in args.datasets}
        print("\n(b) speed on CPU (world model: defaults; IS batch 1024; rollouts 1024 × 10)")
        print(table_row("dataset", *SPEED_COLUMNS))
        print("|---" * (1 + len(SPEED_COLUMNS)) + "|")
        for d, c in report["speed"].items():
            print(table_row(d, *speed_cells(c)))
    if "cost" in args.parts:
        report["cost"] = {d: cost(args, d) for d in args.datasets}
        print(
            "\n(b) cost on CPU (world model: width 256, K = 10; IS batch 1024; rollouts 1024 × 10)"
        )
        print(
            table_row(
                "dataset",
                *SPEED_COLUMNS,
                "IQL wall (s)",
                "ADEPT+IQL wall (s)",
                "of which set-up (s)",
                "loop ratio",
                "total ratio",
            )
        )
        print("|---" * 9 + "|")
        for d, c in report["cost"].items():
            print(
                table_row(
                    d,
                    *speed_cells(c),
                    f"{c['iql_wall_s']:.0f}",
                    f"{c['adept_iql_wall_s']:.0f}",
                    f"{c['adept_setup_s']:.0f}",
                    f"{c['adept_loop_over_iql']:.2f}×",
                    f"{c['adept_total_over_iql']:.2f}×",
                )
            )
    if "learning" in args.parts:
        print(f"\n(c) learning runs, budget {args.budget_name} ({args.num_steps} steps)")
        rows = learning(args)
        report["learning"] = rows
        budget = (
            f"{args.budget_name} ({args.num_steps} RL steps, WM pre-trained {args.pretrain_steps})"
        )
        print(f"\nnormalized score, budget {budget}, mean ± std over {len(args.seeds)} seeds")
        score_table(rows, args.datasets, "method", NAMES)
    if "sweep" in args.parts:
        print(
            f"\n(d) schedule sweep, ADEPT+IQL, budget {args.budget_name} ({args.num_steps} steps)"
        )
        rows = sweep(args)
        report["sweep"] = rows
        print(
            f"\nnormalized score, mean ± std over seeds {list(args.sweep_seeds)}; one knob changed "
            f"from the defaults per row; WM pre-trained {args.pretrain_steps} steps"
        )
        score_table(rows, args.datasets, "variant", {n: n for n in ("IQL alone", *args.variants)})
    if "pretrain" in args.parts:
        print("\n(e) world-model error along pre-training (mean L2, raw state units; under β)")
        rows = [r for d in args.datasets for r in pretrain(args, d)]
        report["pretrain"] = rows
        columns = {
            "dataset": "dataset",
            "x₀ target": "target",
            "steps": "steps",
            "true 1-step": "true_one_step",
            "true 10-step": "true_h_step",
            "held-out 1-step": "held_out_one_step",
        }
        print_table(columns, rows)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / f"results-{'-'.join(args.parts)}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main(tyro.cli(Args))
