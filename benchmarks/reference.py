"""IQL updates/s: ``adept train --agent iql`` vs CORL's single-file ``iql.py`` on the same data.

Run alone on the machine (another torch job slows both by 10× or more)::

    git clone https://github.com/corl-team/CORL /tmp/CORL      # the reference, not vendored
    adept data make hopper-random --num-steps 200000 --out /tmp/hopper-random-200k.hdf5
    python -m benchmarks.reference --corl-iql /tmp/CORL/algorithms/offline/iql.py \\
        --dataset /tmp/hopper-random-200k.hdf5

Each measurement is a fresh process, adept and CORL alternating ``--repeats`` times, each with
torch's default threads (what a user gets). Speed is the wall time between steps ``--from-step``
and ``--to-step`` — for adept from its ``metrics.csv`` log rows (the way the reference figures
were taken), for CORL from the times its ``wandb.log`` is called at those steps — so both include
everything their loops do per step (batch sampling, the update, logging) and neither includes
set-up or evaluation (both evaluate only after ``--to-step``).

CORL's script imports d4rl, gym, pyrallis and wandb, which do not install on this stack; the
CORL worker runs it unchanged with four small stand-ins put in ``sys.modules`` first: ``d4rl``
hands it ``--dataset`` as D4RL's ``qlearning_dataset`` would, ``gym`` wraps the Gymnasium env in
gym's old API, ``pyrallis.wrap`` passes the config through, and ``wandb.log`` records the clock.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import tyro

from adept.base.compiling import Compile
from benchmarks.common import updates_per_second


@dataclass(frozen=True)
class Args:
    corl_iql: Path
    """CORL's ``algorithms/offline/iql.py`` (from a clone of github.com/corl-team/CORL)."""
    dataset: str = "hopper-random"
    """Dataset of both (a project name or a D4RL-layout .hdf5 path)."""
    from_step: int = 1000
    """Timing starts at this step (after the warm-up)."""
    to_step: int = 4000
    """Timing ends at this step."""
    repeats: int = 3
    """Measurements of each, alternating adept and CORL."""
    batch_size: int = 256
    """Batch size of both."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """adept's ``--precision`` (CORL's script runs in fp32)."""
    compile: Compile = "on"
    """adept's ``--compile``: on by default, what ``auto`` gives IQL in runs of 20k steps and more
    (adept.base.compiling.MIN_STEPS; this benchmark's runs are shorter). Its compile falls before
    ``--from-step``."""
    out: Path | None = None
    """Also write the results as JSON here."""
    role: Literal["main", "corl"] = "main"
    """Internal: 'corl' is one CORL measurement (the worker process)."""


def _adept_run(args: Args, work: Path) -> float:
    """Updates/s of one ``adept train --agent iql`` process between the two steps."""
    run_dir = work / "adept"
    shutil.rmtree(run_dir, ignore_errors=True)
    num_steps = args.to_step + 1000  # the final evaluation falls after the timed window
    command = [
        sys.executable,
        "-m",
        "adept",
        "train",
        "--agent",
        "iql",
        "--dataset",
        args.dataset,
        "--num-steps",
        str(num_steps),
        "--batch-size",
        str(args.batch_size),
        "--log-every",
        "1000",
        "--eval-every",
        str(num_steps),
        "--eval-episodes",
        "1",
        "--checkpoint-every",
        str(num_steps),
        "--run-dir",
        str(run_dir),
        "--precision",
        args.precision,
        "--compile",
        args.compile,
        "--no-progress",
    ]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return updates_per_second(run_dir, args.from_step, args.to_step)


def _corl_run(args: Args) -> float:
    """Updates/s of one CORL ``iql.py`` process between the two steps."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.reference",
        "--role",
        "corl",
        "--corl-iql",
        str(args.corl_iql),
        "--dataset",
        args.dataset,
        "--from-step",
        str(args.from_step),
        "--to-step",
        str(args.to_step),
        "--batch-size",
        str(args.batch_size),
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["updates_per_s"])


# --- the CORL worker: stand-ins for the packages CORL's script imports ----------------------


def _stand_ins(dataset: str, stamps: dict[int, float]) -> dict[str, types.ModuleType]:
    """``d4rl``, ``gym`` (+ ``gym.wrappers``), ``pyrallis`` and ``wandb`` modules, just enough
    for CORL's iql.py; ``stamps`` receives the clock at every ``wandb.log`` step."""
    from adept.datasets import load_dataset
    from adept.envs import make_env, reference_returns

    data = load_dataset(dataset, progress=False)
    if data.env_id is None:
        raise SystemExit(f"dataset {dataset} names no env; the reference needs one")
    env_id = data.env_id

    class OldApiEnv:
        """gym ≤ 0.23's API over a Gymnasium env (only evaluation uses it)."""

        def __init__(self, env: Any):
            self.env, self._seed = env, cast(int | None, None)
            self.observation_space, self.action_space = env.observation_space, env.action_space

        def seed(self, seed: int) -> None:
            self._seed = seed

        def reset(self) -> np.ndarray:
            obs, _ = self.env.reset(seed=self._seed)
            self._seed = None
            return obs

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
            obs, reward, terminated, truncated, info = self.env.step(action)
            return obs, float(reward), terminated or truncated, info

        def get_normalized_score(self, score: float) -> float:
            low, high = reference_returns(env_id, data.metadata)
            return (score - low) / (high - low)

    class TransformObservation(OldApiEnv):
        def __init__(self, env: OldApiEnv, fn: Any):
            super().__init__(env.env)
            self.inner, self.fn = env, fn

        def seed(self, seed: int) -> None:
            self.inner.seed(seed)

        def reset(self) -> np.ndarray:
            return self.fn(self.inner.reset())

        def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
            obs, reward, done, info = self.inner.step(action)
            return self.fn(obs), reward, done, info

    gym = types.ModuleType("gym")
    gym.Env = OldApiEnv  # type: ignore[attr-defined]
    gym.make = lambda name: OldApiEnv(make_env(env_id))  # type: ignore[attr-defined]
    wrappers = types.ModuleType("gym.wrappers")
    wrappers.TransformObservation = TransformObservation  # type: ignore[attr-defined]
    gym.wrappers = wrappers  # type: ignore[attr-defined]

    d4rl = types.ModuleType("d4rl")
    d4rl.qlearning_dataset = lambda env: {  # type: ignore[attr-defined]
        "observations": data.observations,
        "actions": data.actions,
        "next_observations": data.next_observations,
        "rewards": data.rewards.copy(),
        "terminals": data.terminals.astype(np.float32),
    }

    pyrallis = types.ModuleType("pyrallis")
    pyrallis.wrap = lambda: lambda fn: fn  # type: ignore[attr-defined]

    wandb = types.ModuleType("wandb")
    wandb.init = lambda **kwargs: None  # type: ignore[attr-defined]
    wandb.run = types.SimpleNamespace(save=lambda: None)  # type: ignore[attr-defined]
    wandb.log = lambda values, step: stamps.setdefault(step, time.perf_counter())  # type: ignore[attr-defined]
    return {
        "gym": gym,
        "gym.wrappers": wrappers,
        "d4rl": d4rl,
        "pyrallis": pyrallis,
        "wandb": wandb,
    }


def _corl_worker(args: Args) -> None:
    stamps: dict[int, float] = {}
    sys.modules.update(_stand_ins(args.dataset, stamps))
    spec = importlib.util.spec_from_file_location("corl_iql", args.corl_iql)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{args.corl_iql} is not a Python file; pass CORL's iql.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.TrainConfig(
        env="hopper-random-v2",  # a name only: the stand-in gym makes the dataset's env
        max_timesteps=args.to_step,
        eval_freq=10**9,
        batch_size=args.batch_size,
        normalize_reward=True,  # CORL's MuJoCo configs, and adept's IQL default
        device="cpu",
        seed=0,
    )
    module.train(config)
    seconds = stamps[args.to_step] - stamps[args.from_step]
    print(json.dumps({"updates_per_s": (args.to_step - args.from_step) / seconds}))


def main(args: Args) -> dict[str, Any]:
    if not args.corl_iql.is_file():
        raise SystemExit(
            f"{args.corl_iql} does not exist; clone github.com/corl-team/CORL and pass "
            "--corl-iql CORL/algorithms/offline/iql.py"
        )
    speeds: dict[str, list[float]] = {"adept": [], "corl": []}
    with tempfile.TemporaryDirectory(prefix="adept-reference-") as work:
        for repeat in range(args.repeats):
            speeds["adept"].append(_adept_run(args, Path(work)))
            speeds["corl"].append(_corl_run(args))
            print(
                f"repeat {repeat}: adept {speeds['adept'][-1]:.1f} updates/s, "
                f"CORL {speeds['corl'][-1]:.1f} updates/s",
                flush=True,
            )
    ratio = statistics.median(speeds["adept"]) / statistics.median(speeds["corl"])
    results = {
        "dataset": args.dataset,
        "precision": args.precision,
        "compile": args.compile,
        "window": [args.from_step, args.to_step],
        "updates_per_s": speeds,
        "median_ratio": round(ratio, 3),
    }
    print(
        f"\nIQL on {args.dataset}, steps {args.from_step}–{args.to_step}: adept "
        f"(--precision {args.precision} --compile {args.compile}) "
        f"{min(speeds['adept']):.0f}–{max(speeds['adept']):.0f} updates/s, CORL iql.py "
        f"{min(speeds['corl']):.0f}–{max(speeds['corl']):.0f}; median ratio {ratio:.2f}×"
    )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    if cli_args.role == "corl":
        _corl_worker(cli_args)
    else:
        main(cli_args)
