"""Trajectory diffusion measured (Policy-Guided Diffusion, DyDiff): speed, how real the models'
trajectories are against MuJoCo along training, what PGD's guidance does, and the error along
the horizon of every way of imagining the policy's trajectories, ADEPT's one-step rollouts
included.

Run alone on the machine for the speed part (another torch job slows both by 10× or more)::

    python -m benchmarks.trajectories --part speed      # train steps/s, generated transitions/s
    python -m benchmarks.trajectories --part quality    # models' error along their training
    python -m benchmarks.trajectories --part guidance   # log π and error per guidance λ
    python -m benchmarks.trajectories --part horizon    # ADEPT, ensemble, DyDiff, PGD under π

``quality`` trains each candidate (:data:`CANDIDATES`: a method and its config fields spelled
out) by the library's own training function, taking the EMA weights at each of ``--snapshots``
steps; the final weights go to the artifact store under the key a run with those settings uses.
At each snapshot, PGD's model generates ``--segments`` unguided segments of ``--length`` rows;
DyDiff's generates the states of real segments given their first state and their actions. Both
are checked against the simulator two ways: each transition (s_t, a_t, s_{t+1}) against one step
from s_t (:func:`adept.world_models.true_dynamics.transition_error`: the error a one-step generator
such as SynthER is measured by), and the whole segment replayed open loop from its first state with
its actions (:func:`adept.world_models.true_dynamics.segment_error`, at t = 1, 5, 10 and the last
row). Baselines on real segments give the scale: ``dataset`` (0 up to float rounding: checks the
measurement) and ``s' = s`` (a model that learned no dynamics).

``guidance`` loads a PGD candidate's model and an IQL policy π trained on D (the artifact other
benchmarks share) and generates at each ``--coeffs`` value: the mean log π(a | s) of the
generated actions (PGD's other axis), the errors and the segments' rewards — so that λ is chosen
where log π rises before the dynamics error does. The dataset's actions and π's mean actions on
the dataset's states give log π's scale.

``horizon`` imagines trajectories of ``--length`` rows for π from the same dataset states with
ADEPT's world model (the library's default, pre-trained and cached as ADEPT runs do), DyDiff's
one-step ensemble alone, DyDiff (``--iterative-times`` injections) and, from their own first
states, PGD unguided and guided at ``--guided-coeff``; each is replayed open loop in MuJoCo with
its own actions — the comparison both papers make against autoregressive models — beside the
mean log π of its actions. π samples its actions and the models their next states, and again
under π's mode, the way DyDiff imagines (the ensemble's elites' means; ADEPT's diffusion model,
which has no mean, still samples).

Results go to ``OUT/results.json``, one entry per measurement, written as each finishes;
with ``--report R`` they are kept beside it, in ``R`` with ``.json`` for ``.md``
(committed with it, so the command continues on any machine):
re-running the same command skips what is there; ``--no-measure`` rewrites the report from it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from adept.base.atomic import atomic_path
from adept.data.buffer import resolve_device
from adept.data.segments import gather_segments, segment_starts
from adept.data.transitions import Transitions
from adept.datasets import load_dataset
from adept.diffusion.training import DiffusionTrainer
from adept.diffusion.unet import UNET_SIZES
from adept.methods import dydiff, pgd
from adept.methods.dydiff import DyDiffConfig, StateTrajectoryModel, imagine
from adept.methods.pgd import (
    ACTION_CLIP,
    PGDConfig,
    SegmentModel,
    generate,
    guidance_log_prob,
    unstack,
)
from adept.methods.trajectories import SegmentRows, build_model
from adept.nets import Actor
from adept.store.artifacts import cached
from adept.world_models.model import WorldModel, WorldModelConfig
from adept.world_models.pretrain import PretrainConfig, pretrain, pretrain_key
from adept.world_models.rollout import StateBounds
from adept.world_models.true_dynamics import TrueDynamics, segment_error, transition_error
from benchmarks.common import format_table, load_results, save_results
from benchmarks.world_models import iql_policy


def _candidate(method: str, network: str, train_steps: int, batch_size: int = 32, **kw: Any):
    fields = {"network": network, "train_steps": train_steps, "batch_size": batch_size,
              "ema_decay": 0.999, **kw}  # fmt: skip
    return {"method": method, "fields": fields}


CANDIDATES: dict[str, dict[str, Any]] = {
    "pgd-cpu-8k": _candidate("pgd", "cpu", 8_000),
    "pgd-cpu-8k-lr1e-3": _candidate("pgd", "cpu", 8_000, lr=1e-3),
    "dydiff-cpu-8k": _candidate("dydiff", "cpu", 8_000, length=32),
    "pgd-smoke": {"method": "pgd", "fields": {"preset": "smoke"}},
    "dydiff-smoke": {"method": "dydiff", "fields": {"preset": "smoke"}},
}
"""Models measured: the method and its config fields spelled out (so stored results stay valid
when the presets move)."""

HORIZON_POINTS = (1, 5, 10)
"""Open-loop steps at which the segment error is reported (and the segment's last)."""


@dataclass(frozen=True)
class Args:
    part: Literal["quality", "guidance", "horizon", "speed"] = "quality"
    """'quality': the models against MuJoCo along training; 'guidance': log π and error per
    guidance coefficient; 'horizon': every way of imagining π's trajectories, error along the
    horizon; 'speed': train steps/s and generation transitions/s per network (run alone)."""
    datasets: tuple[str, ...] = ("hopper-random", "halfcheetah-random")
    candidates: tuple[str, ...] = ("pgd-cpu-8k", "dydiff-cpu-8k")
    snapshots: tuple[int, ...] = (1000, 2000, 4000, 8000)
    """Training steps at which the EMA weights are measured (those within the candidate's)."""
    segments: int = 256
    """Segments generated per measurement."""
    length: int = 32
    """Rows per generated segment."""
    sample_steps: int = 32
    """Noise levels of the Heun sampler."""
    coeffs: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)
    """Guidance coefficients of the 'guidance' part."""
    guidance_candidate: str = "pgd-cpu-8k"
    """The PGD model of the 'guidance' and 'horizon' parts."""
    dydiff_candidate: str = "dydiff-cpu-8k"
    """The DyDiff model of the 'horizon' part."""
    guided_coeffs: tuple[float, ...] = (1.0, 0.1)
    """PGD's guidance λ values in the 'horizon' part (0.1: ``--pgd.guidance``'s default)."""
    iterative_times: int = 2
    """DyDiff's injections in the 'horizon' part."""
    world_model_steps: int = 40_000
    """Pre-training steps of ADEPT's world model in the 'horizon' part (the library's default:
    the cached model ADEPT runs with seed 0 use)."""
    ensemble_steps: int = 20_000
    """Most pre-training steps of DyDiff's one-step ensemble (the library's default)."""
    policy_steps: int = 20_000
    """IQL updates of the policy that guides (the artifact benchmarks.world_models shares)."""
    seed: int = 0
    device: str = "auto"
    out: Path = Path("runs/bench-trajectories")
    report: Path | None = None
    """Also write the markdown report here (e.g. docs/results/trajectories.md)."""
    measure: bool = True
    """False: only rewrite the report from the results (REPORT.json, or OUT/results.json)."""


def config_of(candidate: str) -> PGDConfig | DyDiffConfig:
    spec = CANDIDATES[candidate]
    base = PGDConfig() if spec["method"] == "pgd" else DyDiffConfig()
    return replace(base, **spec["fields"])


def trained_model(
    data: Transitions,
    candidate: str,
    seed: int,
    device: torch.device,
    snapshots: tuple[int, ...] = (),
) -> tuple[dict[str, Any], float | None]:
    """The candidate's trained model (with ``snapshots``, trained now, and the final weights
    stored under the key a run uses; else from the artifact store, trained if absent) and the
    training's wall-clock seconds when it was trained here."""
    config = config_of(candidate)
    module = pgd if isinstance(config, PGDConfig) else dydiff
    train = pgd.train_segment_model if module is pgd else dydiff.train_trajectory_model
    key = module.model_key(data, config, seed, device)
    seconds: list[float] = []

    def make() -> dict[str, Any]:
        t0 = time.perf_counter()
        out = train(data, config.training(), seed, device, snapshots)
        seconds.append(time.perf_counter() - t0)
        return out

    if snapshots:
        trained = make()
        final = {"model": trained["model"], "metrics": trained["metrics"]}
        cached(module.__name__.split(".")[-1], key, functools.partial(dict, final))
    else:
        trained = cached(module.__name__.split(".")[-1], key, make)
    return trained, seconds[0] if seconds else None


def model_of(
    data: Transitions, candidate: str, state: dict[str, torch.Tensor], device: torch.device
) -> SegmentModel | StateTrajectoryModel:
    config = config_of(candidate)
    model: SegmentModel | StateTrajectoryModel
    if isinstance(config, PGDConfig):
        model = build_model(SegmentModel, data, config.training())
    else:
        model = build_model(StateTrajectoryModel, data, config.training())
    model.to(device)
    model.load_state_dict(state)
    return model


def generated(
    model: SegmentModel | StateTrajectoryModel, real: SegmentRows, args: Args, device
) -> SegmentRows:
    """PGD: unguided segments; DyDiff: the states of the real segments given their first state
    and actions (rewards and terminals are the real ones: only the states are generated)."""
    rng = torch.Generator(device=device).manual_seed(args.seed)
    if isinstance(model, SegmentModel):
        return generate(model, None, args.segments, args.length, args.sample_steps, generator=rng)
    obs = real.observations.to(device)
    states = model.sample(obs[:, 0], real.actions.to(device), args.sample_steps, rng)
    return replace(real, observations=states.cpu())


def check_rows(truth: TrueDynamics, rows: SegmentRows, env_id: str | None) -> dict[str, float]:
    """One-step and open-loop error of generated (or real) segments against the simulator."""
    steps = unstack(rows, env_id)
    one = transition_error(
        truth,
        steps.observations,
        steps.actions,
        steps.rewards,
        steps.next_observations,
        steps.terminals,
    )
    along, alive = segment_error(truth, rows.observations.cpu().numpy(), rows.actions.cpu().numpy())
    out = {
        "one_step_mean": float(one.state_error.mean()),
        "one_step_median": float(np.median(one.state_error)),
        "reward_error": float(one.reward_error.mean()),
        "terminal_mismatch": float(one.terminal_mismatch.mean()),
        "transitions": float(len(steps)),
        "reward_mean": float(steps.rewards.mean()),
    }
    for t in (*HORIZON_POINTS, len(along)):
        if t <= len(along):
            out[f"open_loop_{t}"] = float(along[t - 1])
            out[f"alive_{t}"] = float(alive[t - 1])
    return out


def real_rows(data: Transitions, args: Args) -> SegmentRows:
    """``args.segments`` real segments of ``args.length`` rows (padded as training pads)."""
    starts = segment_starts(data, args.length, 8, short="pad")
    pick = np.random.default_rng(args.seed).choice(starts, args.segments, replace=False)
    return SegmentRows.of(gather_segments(data, pick, args.length))


def baselines(data: Transitions, truth: TrueDynamics, args: Args) -> dict[str, dict[str, float]]:
    real = real_rows(data, args)
    still = replace(
        real, observations=real.observations[:, :1].expand_as(real.observations).clone()
    )
    return {
        "dataset": check_rows(truth, real, data.env_id),
        "s' = s": {
            k: v
            for k, v in check_rows(truth, still, data.env_id).items()
            if not k.startswith(("open_loop", "alive"))
        },
    }


def quality(args: Args, dataset: str, results: dict[str, Any], path: Path) -> None:
    data = load_dataset(dataset)
    assert data.env_id is not None
    truth = TrueDynamics(data.env_id)
    device = resolve_device(args.device)
    if f"{dataset}|baselines" not in results:
        results[f"{dataset}|baselines"] = baselines(data, truth, args)
        save_results(path, results)
    real = real_rows(data, args)
    for candidate in args.candidates:
        key = f"{dataset}|{candidate}"
        if key in results:
            continue
        steps = config_of(candidate).training().steps
        snapshots = (*(s for s in args.snapshots if s < steps), steps)
        trained, seconds = trained_model(data, candidate, args.seed, device, snapshots)
        assert seconds is not None
        entry: dict[str, Any] = {
            "train_s": seconds,
            "load_avg": os.getloadavg()[0],
            "threads": torch.get_num_threads(),
            "loss": next((v for k, v in trained["metrics"].items() if k.endswith("/loss")), 0.0),
            "snapshots": {},
        }
        for step in snapshots:
            model = model_of(data, candidate, trained["snapshots"][step], device)
            rows = generated(model, real, args, device)
            entry["snapshots"][str(step)] = check_rows(truth, rows, data.env_id)
            print(f"{dataset} {candidate} @{step}: {entry['snapshots'][str(step)]}", flush=True)
        results[key] = entry
        save_results(path, results)


def guidance(args: Args, dataset: str, results: dict[str, Any], path: Path) -> None:
    data = load_dataset(dataset)
    assert data.env_id is not None
    truth = TrueDynamics(data.env_id)
    device = resolve_device(args.device)
    trained, _ = trained_model(data, args.guidance_candidate, args.seed, device)
    model = model_of(data, args.guidance_candidate, trained["model"], device)
    assert isinstance(model, SegmentModel), "--guidance-candidate names a PGD model"
    policy = iql_policy(data, args.policy_steps, args.seed, device)
    actor = policy.actor
    real = real_rows(data, args)
    key = f"{dataset}|guidance|{args.guidance_candidate}"
    entry = results.get(key, {"coeffs": {}})
    if "scale" not in entry:
        obs = real.observations.flatten(0, 1).to(device)
        with torch.no_grad():
            data_act = real.actions.flatten(0, 1).to(device).clamp(-ACTION_CLIP, ACTION_CLIP)
            own = actor.sample(obs, deterministic=True).clamp(-ACTION_CLIP, ACTION_CLIP)
            entry["scale"] = {
                "dataset actions": float(guidance_log_prob(actor, obs, data_act).mean()),
                "π's mean actions": float(guidance_log_prob(actor, obs, own).mean()),
            }
    for coeff in args.coeffs:
        if str(coeff) in entry["coeffs"]:
            continue
        rng = torch.Generator(device=device).manual_seed(args.seed)
        t0 = time.perf_counter()
        rows = generate(
            model, actor, args.segments, args.length, args.sample_steps, coeff, generator=rng
        )
        seconds = time.perf_counter() - t0
        steps = unstack(rows, data.env_id)
        obs = torch.as_tensor(steps.observations, device=device)
        act = torch.as_tensor(steps.actions, device=device).clamp(-ACTION_CLIP, ACTION_CLIP)
        with torch.no_grad():
            log_pi = float(guidance_log_prob(actor, obs, act).mean())
        entry["coeffs"][str(coeff)] = {
            **check_rows(truth, rows, data.env_id),
            "log_pi": log_pi,
            "generate_s": seconds,
        }
        print(f"{dataset} guidance {coeff}: {entry['coeffs'][str(coeff)]}", flush=True)
        results[key] = entry
        save_results(path, results)


def log_pi_of(actor: Actor, observations: torch.Tensor, actions: torch.Tensor) -> float:
    """Mean log π(a | s) over every row (PGD's guidance density)."""
    obs = observations.flatten(0, 1)
    act = actions.flatten(0, 1).clamp(-ACTION_CLIP, ACTION_CLIP)
    with torch.no_grad():
        return float(guidance_log_prob(actor, obs, act).mean())


def horizon(args: Args, dataset: str, results: dict[str, Any], path: Path) -> None:
    """Every way of imagining π's trajectories, replayed open loop in MuJoCo."""
    data = load_dataset(dataset)
    assert data.env_id is not None
    truth = TrueDynamics(data.env_id)
    device = resolve_device(args.device)
    policy = iql_policy(data, args.policy_steps, args.seed, device)
    key = f"{dataset}|horizon"
    entry = results.get(key, {})
    g = np.random.default_rng([args.seed, 7])
    exact = np.flatnonzero(truth.exact(data.observations))
    starts = torch.as_tensor(
        data.observations[g.choice(exact, args.segments, replace=False)], device=device
    )
    bounds = StateBounds(data.stats(), device)

    def world_model(recipe: tuple[WorldModelConfig, PretrainConfig]) -> WorldModel:
        made = cached(
            "pretrain",
            pretrain_key(data, *recipe, args.seed, device),
            lambda: pretrain(data, *recipe, args.seed, device),
        )
        model = WorldModel(data, recipe[0], device)
        model.load_state_dict_all(made["world_model"])
        return model

    def one_step(model: WorldModel, deterministic: bool = False) -> Any:
        return imagine(policy, None, model, starts, args.length, 2, 0, bounds, deterministic)

    class Mode:
        """π's mode for a model without one (ADEPT's diffusion model keeps sampling s′)."""

        def sample_actions(self, obs: torch.Tensor, deterministic: bool, noise: Any) -> Any:
            return policy.sample_actions(obs, deterministic=True)

    def one_step_under_mode(model: WorldModel) -> Any:
        return imagine(Mode(), None, model, starts, args.length, 2, 0, bounds, False)  # type: ignore[arg-type]

    def dydiff_rollouts(deterministic: bool) -> Any:
        trained, _ = trained_model(data, args.dydiff_candidate, args.seed, device)
        model = model_of(data, args.dydiff_candidate, trained["model"], device)
        assert isinstance(model, StateTrajectoryModel)
        config = config_of(args.dydiff_candidate)
        assert isinstance(config, DyDiffConfig)
        sized = replace(config, one_step_steps=args.ensemble_steps)
        wm = world_model((sized.one_step, sized.one_step_pretrain()))
        return imagine(
            policy, model, wm, starts, args.length, args.sample_steps, args.iterative_times,
            bounds, deterministic,
        )  # fmt: skip

    def pgd_segments(coeff: float) -> Any:
        trained, _ = trained_model(data, args.guidance_candidate, args.seed, device)
        model = model_of(data, args.guidance_candidate, trained["model"], device)
        assert isinstance(model, SegmentModel)
        rng = torch.Generator(device=device).manual_seed(args.seed)
        return generate(
            model, policy.actor, args.segments, args.length, args.sample_steps, coeff,
            generator=rng,
        )  # fmt: skip

    sized = DyDiffConfig(one_step_steps=args.ensemble_steps)
    ensemble = (sized.one_step, sized.one_step_pretrain())
    adept = (WorldModelConfig(), PretrainConfig(steps=args.world_model_steps))
    ways: dict[str, Callable[[], Any]] = {
        "ADEPT world model (one-step diffusion)": lambda: one_step(world_model(adept)),
        "ADEPT world model (one-step diffusion), π's mode": lambda: one_step_under_mode(
            world_model(adept)
        ),
        "one-step Gaussian ensemble, sampled (MOPO's)": lambda: one_step(world_model(ensemble)),
        "one-step Gaussian ensemble, elites' means (DyDiff's start)": lambda: one_step(
            world_model(ensemble), deterministic=True
        ),
        f"DyDiff ({args.iterative_times} injections; π and ensemble sampled)": functools.partial(
            dydiff_rollouts, False
        ),
        f"DyDiff ({args.iterative_times} injections; π's mode, elites' means: DyDiff's)": (
            functools.partial(dydiff_rollouts, True)
        ),
        "PGD unguided": lambda: pgd_segments(0.0),
        **{
            f"PGD guided λ = {coeff:g}": functools.partial(pgd_segments, coeff)
            for coeff in args.guided_coeffs
        },
    }
    for name, make in ways.items():
        if name in entry:
            continue
        torch.manual_seed(args.seed)
        out = make()
        along, alive = segment_error(
            truth, out.observations.cpu().numpy(), out.actions.cpu().numpy()
        )
        values = {"log_pi": log_pi_of(policy.actor, out.observations, out.actions)}
        for t in (*HORIZON_POINTS, len(along)):
            values[f"open_loop_{t}"] = float(along[t - 1])
            values[f"alive_{t}"] = float(alive[t - 1])
        entry[name] = values
        print(f"{dataset} {name}: {values}", flush=True)
        results[key] = entry
        save_results(path, results)


def speed(args: Args, results: dict[str, Any], path: Path) -> None:
    """Training steps/s (batch 32 of 32 rows) and generated transitions/s, unguided and guided,
    per network size, on the first dataset."""
    data = load_dataset(args.datasets[0])
    device = resolve_device(args.device)
    policy = iql_policy(data, args.policy_steps, args.seed, device)
    starts = segment_starts(data, 32, 8, short="pad")
    pick = np.random.default_rng(args.seed)
    out = {}
    for network in ("cpu", "dydiff", "pgd"):
        torch.manual_seed(0)
        model = SegmentModel(data, UNET_SIZES[network]).to(device)
        trainer = DiffusionTrainer(model, 1000, 2e-3, prefix="pgd")
        timed = 3 if network == "pgd" else 20
        batches = [
            SegmentRows.of(gather_segments(data, pick.choice(starts, 32), 32), device)
            for _ in range(timed + 2)
        ]
        for batch in batches[:2]:
            trainer.step(batch)
        t0 = time.perf_counter()
        for batch in batches[2:]:
            trainer.step(batch)
        train_rate = timed / (time.perf_counter() - t0)
        n = 8 if network == "pgd" else 64
        rates = {}
        for coeff in (0.0, 1.0):
            t0 = time.perf_counter()
            generate(model, policy.actor, n, args.length + 1, args.sample_steps, coeff)
            rates[coeff] = n * args.length / (time.perf_counter() - t0)
        out[network] = {
            "train_steps_per_s": train_rate,
            "transitions_per_s": rates[0.0],
            "guided_transitions_per_s": rates[1.0],
            "threads": torch.get_num_threads(),
            "device": device.type,
            "load_avg": os.getloadavg()[0],
        }
        print(f"{network}: {out[network]}", flush=True)
    results[f"speed|{args.datasets[0]}"] = out
    save_results(path, results)


def _fmt(values: dict[str, Any], columns: dict[str, str]) -> dict[str, str]:
    """The row's cells: numbers to 3 significant digits, "" for a column it lacks."""
    return {
        key: f"{v:.3g}" if isinstance(v := values.get(key, ""), float) else str(v)
        for key in columns.values()
    }


_WAYS = ("ADEPT", "one-step", "DyDiff", "PGD unguided", "PGD guided")
"""The horizon table's row order (each way's name starts with one of these)."""


def _way(item: tuple[str, Any]) -> tuple[int, float]:
    """Sort key of a horizon row: its way, then PGD's λ."""
    name = item[0]
    rank = next((i for i, way in enumerate(_WAYS) if name.startswith(way)), len(_WAYS))
    coeff = float(name.rsplit("=", 1)[1]) if "λ =" in name else 0.0
    return rank, coeff


def report(args: Args, results: dict[str, Any]) -> str:
    last = f"open_loop_{args.length - 1}"
    columns = {
        "dataset": "dataset",
        "model": "candidate",
        "steps": "step",
        "one-step mean": "one_step_mean",
        "median": "one_step_median",
        "reward err": "reward_error",
        "terminal wrong": "terminal_mismatch",
        **{f"open loop t={t}": f"open_loop_{t}" for t in HORIZON_POINTS},
        f"t={args.length - 1}": last,
    }
    rows = []
    for dataset in args.datasets:
        for name, values in results.get(f"{dataset}|baselines", {}).items():
            rows.append(_fmt({"dataset": dataset, "candidate": f"*{name}*", **values}, columns))
        for candidate in args.candidates:
            entry = results.get(f"{dataset}|{candidate}")
            for step, values in (entry or {}).get("snapshots", {}).items():
                row = {"dataset": dataset, "candidate": candidate, "step": step, **values}
                rows.append(_fmt(row, columns))
    text = "Models along training:\n\n"
    text += format_table(columns, rows) if rows else "No quality results yet."
    costs = []
    for dataset in args.datasets:
        for candidate in args.candidates:
            e = results.get(f"{dataset}|{candidate}")
            if e is not None:
                costs.append({
                    "dataset": dataset, "candidate": candidate, "train_s": f"{e['train_s']:.0f}",
                    "load": f"{e['load_avg']:.1f}", "threads": e["threads"],
                    "loss": f"{e['loss']:.3f}",
                })  # fmt: skip
    if costs:
        text += "\n\nTraining cost:\n\n" + format_table(
            {"dataset": "dataset", "model": "candidate", "train (s)": "train_s",
             "load avg": "load", "threads": "threads", "final loss": "loss"},
            costs,
        )  # fmt: skip
    for key, entry in results.items():
        parts = key.split("|")
        if len(parts) == 3 and parts[1] == "guidance":
            gcols = {"λ": "coeff", "mean log π": "log_pi", "one-step mean": "one_step_mean",
                     "reward err": "reward_error", "open loop t=10": "open_loop_10",
                     "mean reward": "reward_mean", "transitions": "transitions",
                     "generate (s)": "generate_s"}  # fmt: skip
            grows = [_fmt({"coeff": c, **v}, gcols) for c, v in entry["coeffs"].items()]
            scale = ", ".join(f"{k} {v:.2f}" for k, v in entry["scale"].items())
            text += f"\n\nGuidance on {parts[0]} ({parts[2]}; log π scale: {scale}):\n\n"
            text += format_table(gcols, grows)
        if len(parts) == 2 and parts[1] == "horizon":
            hcols = {"imagined by": "way", "mean log π": "log_pi",
                     **{f"t={t}": f"open_loop_{t}" for t in HORIZON_POINTS},
                     f"t={args.length - 1}": f"open_loop_{args.length - 1}",
                     f"alive at t={args.length - 1}": f"alive_{args.length - 1}"}  # fmt: skip
            hrows = [_fmt({"way": w, **v}, hcols) for w, v in sorted(entry.items(), key=_way)]
            text += (
                f"\n\nError along the horizon on {parts[0]}: trajectories of π (IQL "
                f"{args.policy_steps // 1000}k), replayed open loop in MuJoCo with their own "
                "actions; mean ‖s_t − s_t^true‖ over the trajectories still alive:\n\n"
            )
            text += format_table(hcols, hrows)
        if parts[0] == "speed":
            scols = {"network": "network", "train steps/s (32 × 32 rows)": "train_steps_per_s",
                     "transitions/s": "transitions_per_s",
                     "guided transitions/s": "guided_transitions_per_s",
                     "load avg": "load_avg"}  # fmt: skip
            srows = [_fmt({"network": n, **v}, scols) for n, v in entry.items()]
            first = next(iter(entry.values()))
            text += f"\n\nSpeed on {parts[1]} ({first['device']}, {first['threads']} threads):\n\n"
            text += format_table(scols, srows)
    return text


def header(args: Args) -> str:
    """How the report was made: the commands that make it again, and how to read it."""
    sets = f"--datasets {' '.join(args.datasets)} --out {args.out} --report {args.report}"
    return (
        "# Trajectory diffusion: PGD's and DyDiff's models\n\n"
        "Made by `benchmarks/trajectories.py` (each part resumes; `--no-measure` rewrites this "
        "file from its results, the .json beside it):\n\n```bash\n"
        f"python -m benchmarks.trajectories --part quality --candidates "
        f"{' '.join(args.candidates)} {sets}\n"
        f"python -m benchmarks.trajectories --part guidance {sets}\n"
        f"python -m benchmarks.trajectories --part horizon {sets}\n"
        f"python -m benchmarks.trajectories --part speed {sets}\n```\n\n"
        "PGD rows: unguided segments the model generated. DyDiff rows: the states the model "
        "generated for real segments given their first state and actions (its reward and "
        "terminal columns hold the real segments' labels at the generated states: only the "
        "state columns measure the model). Errors are ‖s − s_true‖₂ in raw state units; "
        "'open loop t': the segment's actions replayed in MuJoCo from its first state.\n\n"
    )


def main(args: Args) -> None:
    path, results = load_results(args.out, args.report)
    if args.measure:
        if args.part == "speed":
            speed(args, results, path)
        for dataset in args.datasets if args.part != "speed" else ():
            parts = {"quality": quality, "guidance": guidance, "horizon": horizon}
            parts[args.part](args, dataset, results, path)
    text = report(args, results)
    print(text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.report) as tmp:
            tmp.write_text(header(args) + text + "\n")


if __name__ == "__main__":
    main(tyro.cli(Args))
