"""SynthER's generator measured: its speed, and how real its samples are against MuJoCo.

Run alone on the machine for the speed part (another torch job slows both by 10× or more)::

    python -m benchmarks.synther --part speed          # train steps/s, samples/s per preset
    python -m benchmarks.synther --part quality        # hopper- and halfcheetah-random

The quality part trains each candidate generator by the library's own code
(:func:`adept.methods.synther.train_generator`, cached in the artifact store under the same key a
``--method synther`` run uses, so runs with the same settings reuse it), samples
``--quality-samples`` transitions at each of ``--sample-steps`` noise levels, and checks every
sample (s, a, r, s′, terminal) against one simulator step from s under a
(:func:`adept.world_models.true_dynamics.transition_error`): the mean and median ‖s′ − s′_true‖₂,
the share within each ``--tolerances``, |r − r_true| and how often the terminal flag is wrong — the
dynamics error SynthER's paper reports for its samples. Three baselines on real rows of the same
dataset give the scale: ``dataset`` (the rows themselves: 0 up to float rounding, which checks the
measurement), ``s' = s`` (a generator that learned no dynamics) and ``shuffled`` (s′, r and the
flag of another random row: right marginals, no joint structure).

Results go to ``OUT/results.json``, one entry per (dataset, candidate), written as each finishes;
with ``--report R`` they are kept beside it, in ``R`` with ``.json`` for ``.md``
(committed with it, so the command continues on any machine):
re-running the same command skips what is there; ``--no-measure`` rewrites the report from it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from adept.base.atomic import atomic_path
from adept.data import ReplayBuffer
from adept.data.buffer import resolve_device
from adept.data.transitions import Transitions
from adept.datasets import load_dataset
from adept.diffusion.training import DiffusionTrainer
from adept.methods.synther import (
    PRESETS,
    SynthERConfig,
    build_model,
    generator_key,
    train_generator,
)
from adept.store.artifacts import cached
from adept.world_models.true_dynamics import TransitionError, TrueDynamics, transition_error
from benchmarks.common import format_table, load_results, save_results


def _candidate(hidden: int, depth: int, train_steps: int, ema_decay: float = 0.999) -> dict:
    return {"hidden": hidden, "depth": depth, "train_steps": train_steps, "batch_size": 256,
            "ema_decay": ema_decay}  # fmt: skip


CANDIDATES: dict[str, dict[str, Any]] = {
    "w256-d3-15k": _candidate(256, 3, 15_000),
    "w256-d3-30k": _candidate(256, 3, 30_000),
    "w256-d4-20k": _candidate(256, 4, 20_000),
    "w512-d3-10k": _candidate(512, 3, 10_000),
    "smoke": {},  # the smoke preset
}
"""Generator settings measured, as SynthERConfig fields spelled out (so stored results stay
valid when the presets move); the report marks the one the 'cpu' preset uses."""


@dataclass(frozen=True)
class Args:
    part: Literal["quality", "speed"] = "quality"
    """'quality': sample error against MuJoCo per dataset and candidate; 'speed': training
    steps/s and sampling transitions/s of each preset (run alone on the machine)."""
    datasets: tuple[str, ...] = ("hopper-random", "halfcheetah-random")
    candidates: tuple[str, ...] = ("w256-d3-15k", "w256-d4-20k")
    sample_steps: tuple[int, ...] = (16, 32, 64)
    """Noise levels of the Heun sampler at which each generator's samples are checked."""
    quality_samples: int = 2000
    """Samples checked against the simulator per (candidate, sample steps)."""
    tolerances: tuple[float, ...] = (0.1, 0.5)
    """‖s′ − s′_true‖₂ thresholds of the 'share within' columns."""
    seed: int = 0
    device: str = "auto"
    out: Path = Path("runs/bench-synther")
    report: Path | None = None
    """Also write the markdown report here (e.g. docs/results/synther.md)."""
    measure: bool = True
    """False: only rewrite the report from the results (REPORT.json, or OUT/results.json)."""


def config_of(candidate: str) -> SynthERConfig:
    base = PRESETS["smoke"] if candidate == "smoke" else SynthERConfig()
    return replace(base, **CANDIDATES[candidate])


def check(truth: TrueDynamics, batch: dict[str, np.ndarray]) -> TransitionError:
    return transition_error(
        truth,
        batch["observations"],
        batch["actions"],
        batch["rewards"],
        batch["next_observations"],
        batch["terminals"],
    )


def figures(err: TransitionError, tolerances: tuple[float, ...]) -> dict[str, float]:
    out = {
        "checked": float(err.checked),
        "state_error_mean": float(err.state_error.mean()),
        "state_error_median": float(np.median(err.state_error)),
        "reward_error_mean": float(err.reward_error.mean()),
        "terminal_mismatch": float(err.terminal_mismatch.mean()),
    }
    for tol in tolerances:
        out[f"within_{tol:g}"] = err.share_within(tol)
    return out


def baselines(data: Transitions, truth: TrueDynamics, args: Args) -> dict[str, dict[str, float]]:
    """The dataset's own rows, s′ = s, and another row's (s′, r, terminal), on the same rows."""
    g = np.random.default_rng(args.seed)
    rows = g.choice(len(data), args.quality_samples, replace=False)
    other = g.choice(len(data), args.quality_samples, replace=False)
    real = {k: v[rows] for k, v in data.arrays().items()}
    still = {**real, "next_observations": real["observations"]}
    shuffled = {
        **real,
        **{k: data.arrays()[k][other] for k in ("next_observations", "rewards", "terminals")},
    }
    return {
        name: figures(check(truth, batch), args.tolerances)
        for name, batch in (("dataset", real), ("s' = s", still), ("shuffled", shuffled))
    }


def trained_generator(
    data: Transitions, config: SynthERConfig, seed: int, device: torch.device
) -> tuple[dict[str, Any], float | None]:
    """The generator from the artifact store (the key a run uses), trained if absent; and the
    training's wall-clock seconds when it was trained here."""
    seconds: list[float] = []

    generator = config.generator(len(data))

    def make() -> dict[str, Any]:
        t0 = time.perf_counter()
        trained = train_generator(data, generator, seed, device)
        seconds.append(time.perf_counter() - t0)
        return trained

    trained = cached("synther", generator_key(data, generator, seed, device), make)
    return trained, seconds[0] if seconds else None


def quality(args: Args, dataset: str, results: dict[str, Any], path: Path) -> None:
    data = load_dataset(dataset)
    assert data.env_id is not None
    truth = TrueDynamics(data.env_id)
    device = resolve_device(args.device)
    if f"{dataset}|baselines" not in results:
        results[f"{dataset}|baselines"] = baselines(data, truth, args)
        save_results(path, results)
    for candidate in args.candidates:
        key = f"{dataset}|{candidate}"
        entry = results.get(key, {"dataset": dataset, "candidate": candidate, "steps": {}})
        todo = [n for n in args.sample_steps if str(n) not in entry["steps"]]
        if not todo:
            continue
        config = config_of(candidate)
        sizes = config.generator(len(data))
        trained, seconds = trained_generator(data, config, args.seed, device)
        if seconds is not None:
            entry["train_s"] = seconds
            entry["load_avg"] = os.getloadavg()[0]
        entry.update(
            sizes={k: v for k, v in vars(sizes).items() if k != "edm"},
            loss=trained["metrics"].get("synther/loss", float("nan")),
        )
        model = build_model(data, sizes).to(device)
        model.load_state_dict(trained["model"])
        for steps in todo:
            rng = torch.Generator(device=device).manual_seed(args.seed + steps)
            t0 = time.perf_counter()
            batch = model.sample(args.quality_samples, steps, rng)
            seconds = time.perf_counter() - t0
            arrays = {
                "observations": batch.observations.cpu().numpy(),
                "actions": batch.actions.cpu().numpy(),
                "rewards": batch.rewards.cpu().numpy(),
                "next_observations": batch.next_observations.cpu().numpy(),
                "terminals": batch.terminals.cpu().numpy() > 0.5,
            }
            entry["steps"][str(steps)] = {
                **figures(check(truth, arrays), args.tolerances),
                "samples_per_s": args.quality_samples / seconds,
            }
            print(f"{dataset} {candidate} N={steps}: {entry['steps'][str(steps)]}", flush=True)
        results[key] = entry
        save_results(path, results)


def speed(args: Args, results: dict[str, Any], path: Path) -> None:
    """Training steps/s and sampling transitions/s of each preset, on the first dataset."""
    data = load_dataset(args.datasets[0])
    device = resolve_device(args.device)
    buffer = ReplayBuffer.from_transitions(data, device=device, seed=0)
    out = {}
    for preset in PRESETS:
        config = PRESETS[preset]
        sizes = config.generator(len(data))
        torch.manual_seed(0)
        model = build_model(data, sizes).to(device)
        trainer = DiffusionTrainer(model, sizes.train_steps, prefix="synther")
        timed = 10 if preset == "paper" else 100
        for _ in range(3):
            trainer.step(buffer.sample(sizes.batch_size))
        t0 = time.perf_counter()
        for _ in range(timed):
            trainer.step(buffer.sample(sizes.batch_size))
        train_rate = timed / (time.perf_counter() - t0)
        rows = 200 if preset == "paper" else 4 * config.sample_batch
        t0 = time.perf_counter()
        for start in range(0, rows, config.sample_batch):  # as upsample() batches them
            model.sample(min(config.sample_batch, rows - start), config.sample_steps)
        sample_rate = rows / (time.perf_counter() - t0)
        train_s = sizes.train_steps / train_rate
        sample_s = config.num_samples / sample_rate
        out[preset] = {
            "train_steps_per_s": train_rate,
            "samples_per_s": sample_rate,
            "train_s": train_s,
            "upsample_s": sample_s,
            "batch_size": sizes.batch_size,
            "threads": torch.get_num_threads(),
            "device": device.type,
            "load_avg": os.getloadavg()[0],
        }
        print(f"{preset}: {out[preset]}", flush=True)
    results[f"speed|{args.datasets[0]}"] = out
    save_results(path, results)


def report(args: Args, results: dict[str, Any]) -> str:
    tol = [f"within_{t:g}" for t in args.tolerances]
    columns = {
        "dataset": "dataset",
        "generator": "candidate",
        "Heun N": "N",
        "mean ‖s′ − s′_true‖": "state_error_mean",
        "median": "state_error_median",
        **{f"share ≤ {t:g}": k for t, k in zip(args.tolerances, tol, strict=True)},
        "reward error": "reward_error_mean",
        "terminal wrong": "terminal_mismatch",
    }
    rows = []
    for dataset in args.datasets:
        for name, values in results.get(f"{dataset}|baselines", {}).items():
            rows.append({"dataset": dataset, "candidate": f"*{name}*", "N": "", **values})
        for candidate in args.candidates:
            entry = results.get(f"{dataset}|{candidate}")
            for n, values in sorted(
                (entry or {}).get("steps", {}).items(), key=lambda i: int(i[0])
            ):
                rows.append({"dataset": dataset, "candidate": candidate, "N": n, **values})
    text = format_table(columns, rows) if rows else "No quality results yet."
    costs = []
    for dataset in args.datasets:
        for candidate in args.candidates:
            entry = results.get(f"{dataset}|{candidate}")
            if entry is None:
                continue
            s = entry["sizes"]
            preset = PRESETS["cpu"]
            is_cpu = (s["hidden"], s["depth"], s["train_steps"]) == (
                preset.hidden,
                preset.depth,
                preset.train_steps,
            )
            costs.append({
                "dataset": dataset, "candidate": candidate + (" (cpu preset)" if is_cpu else ""),
                "size": f"{s['hidden']} × {s['depth']}, {s['train_steps']} steps",
                "loss": entry["loss"],
                "train_s": f"{entry['train_s']:.0f}" if "train_s" in entry else "(cached)",
                "load": f"{entry['load_avg']:.1f}" if "load_avg" in entry else "",
            })  # fmt: skip
    if costs:
        text += "\n\n" + format_table(
            {"dataset": "dataset", "generator": "candidate", "size": "size",
             "final loss": "loss", "train (s)": "train_s", "load avg": "load"},
            costs,
        )  # fmt: skip
    for key, speeds in results.items():
        if key.startswith("speed|"):
            rows = [
                {
                    "preset": p,
                    **v,
                    "train": f"{v['train_s']:,.0f}",
                    "upsample": f"{v['upsample_s']:,.0f}",
                }
                for p, v in speeds.items()
            ]
            text += f"\n\nSpeed on {key.split('|')[1]} ({rows[0]['device']}, " \
                f"{rows[0]['threads']} threads):\n\n" + format_table(
                {"preset": "preset", "train steps/s": "train_steps_per_s",
                 "samples/s": "samples_per_s", "train (s)": "train",
                 "upsample (s)": "upsample", "batch": "batch_size"},
                rows,
            )  # fmt: skip
    return text


def header(args: Args) -> str:
    """How the report was made: the commands that make it again."""
    quality_command = " \\\n    ".join(
        [
            "python -m benchmarks.synther --part quality",
            "--datasets " + " ".join(args.datasets),
            "--candidates " + " ".join(args.candidates),
            "--sample-steps " + " ".join(str(n) for n in args.sample_steps),
            f"--out {args.out} --report {args.report}",
        ]
    )
    speed_command = (
        f"python -m benchmarks.synther --part speed --datasets hopper-random --out {args.out}"
    )
    return (
        f"```bash\n{quality_command}\n{speed_command}\n```\n\n"
        "Made on a 2-core CPU. Sample quality: each of "
        f"{args.quality_samples} generated (s, a, r, s′, terminal) checked against one MuJoCo "
        "step from s under a (`adept.world_models.true_dynamics.transition_error`); error in "
        "raw state units; "
        "the italic rows are baselines on real rows (see the module's docstring). 'train (s)' of "
        "the quality part was measured beside another job (its load average shown); the speed "
        "table was measured alone, two threads, and its train/upsample seconds are the preset's "
        "steps and samples over the measured rates. The reading is in README.md beside it."
    )


def main(args: Args) -> None:
    unknown = [c for c in args.candidates if c not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    path, results = load_results(args.out, args.report)
    if args.measure and args.part == "speed":
        speed(args, results, path)
    elif args.measure:
        for dataset in args.datasets:
            quality(args, dataset, results, path)
    text = report(args, results)
    print("\n" + text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.report) as tmp:
            tmp.write_text(
                f"# SynthER's generator: speed and sample quality\n\n{header(args)}\n\n{text}\n"
            )
        print(f"wrote {args.report}")


if __name__ == "__main__":
    main(tyro.cli(Args))
