"""World-model yardstick: true error against MuJoCo, per model, dataset and policy.

Run alone on the machine (another torch job slows both by 10× or more)::

    python -m benchmarks.world_models                                   # the three random datasets
    python -m benchmarks.world_models --datasets hopper-medium-replay \
        --candidates diffusion ensemble

Each candidate is pre-trained by the library's own recipe (:func:`adept.methods.pretrain`: β fit,
EMA, held-out selection, cached in the artifact store, so ADEPT runs with the same settings reuse
it), then measured by :func:`adept.world_models.true_dynamics.true_model_error` — the simulator set
to each start state, the policy acting in it, the model fed the same actions open loop — under two
policies: β (the BC fit that ADEPT weighs with) and π, an IQL policy trained on D. The 'refit'
part then starts from one pre-trained candidate (``--refit-candidate``, default the library's
recipe) and runs ADEPT's re-fit toward π (:class:`adept.world_models.importance.Refitter`) with
each rule (IS weighted loss, IS resampling, uniform control), learning rate and averaging for as
many steps, and measures the error under π again: the π-weighted error each variant reaches.

Candidates are changes from the world model's first recipe (``diffusion``: width 256, 3 blocks of
one linear layer, 20k steps), spelled out so that results stay valid when the library's defaults
move; the library's default today is ``diffusion-2-linear-40k``. ``ensemble`` is the MOPO-style
Gaussian ensemble (7 members, 5 elites, held-out early stopping), given the same wall-clock
budget as ``diffusion`` (its step cap is set from a timed warm-up); ``ensemble-long``, the same
ensemble given the default's budget (BUDGETS). A name with ``-bf16`` runs
that candidate under bf16 autocast (``adept train --precision bf16``): training, timing and the
error measurements (the model's samples) all in bf16.

"WM train (s)" is the world model's share of pre-training: its steps over its measured steps/s
(the β fit and the selection passes aside); ``pretrain_s`` in the JSON is the whole call, which
is near 0 when the artifact store already held the result.

Results go to ``OUT/results.json``, one entry per (dataset, candidate), written as each finishes;
with ``--report R`` they are kept beside it, in ``R`` with ``.json`` for ``.md``
(committed with it, so the command continues on any machine):
re-running the same command skips what is there, so a long grid spans sessions.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from adept.agents import BC, IQL, AgentSpec, BCConfig
from adept.base.atomic import atomic_path
from adept.base.precision import Precision, autocast
from adept.bench.spec import apply_overrides
from adept.data import ReplayBuffer
from adept.data.transitions import Transitions
from adept.datasets import load_dataset
from adept.methods import ADEPTConfig
from adept.store.artifacts import cached
from adept.world_models.importance import BehaviorModel, Refitter
from adept.world_models.model import WorldModel, WorldModelConfig
from adept.world_models.pretrain import PretrainConfig, holdout_mask, pretrain, pretrain_key
from adept.world_models.true_dynamics import TrueDynamics, true_model_error
from benchmarks.common import format_table, load_results, save_results

Change = Callable[[ADEPTConfig], ADEPTConfig]


def _wm(**changes: Any) -> Change:
    return lambda c: replace(c, world_model=replace(c.world_model, **changes))


CANDIDATES: dict[str, Change] = {
    "diffusion": lambda c: c,  # the first recipe (base_config)
    "diffusion-no-ema": lambda c: apply_overrides(
        c, {"pretrain.ema_decay": 0.0, "pretrain.select_every": 0}
    ),
    "diffusion-512": _wm(hidden=512),
    "diffusion-1024": _wm(hidden=1024),
    "diffusion-2-linear": _wm(block_layers=2),
    "diffusion-cond-blocks": _wm(condition="blocks"),
    "diffusion-512-2-linear-cond-blocks": _wm(hidden=512, block_layers=2, condition="blocks"),
    "diffusion-40k": lambda c: apply_overrides(c, {"pretrain.steps": 40_000}),
    "diffusion-2-linear-40k": lambda c: apply_overrides(
        _wm(block_layers=2)(c), {"pretrain.steps": 40_000}
    ),
    "ensemble": lambda c: replace(
        c,
        world_model=replace(c.world_model, dynamics="ensemble", hidden=200, depth=4, lr=1e-3),
        pretrain=replace(c.pretrain, ema_decay=0.0, select_every=1000, select_patience=5),
    ),
}
"""Named world models: each a change from :func:`base_config`, the first recipe (width 256, 3
residual blocks of one linear layer, condition at the input, EMA 0.999 with held-out selection,
``--pretrain-steps``). The library's default is 'diffusion-2-linear-40k' (DEFAULT)."""

CANDIDATES["ensemble-long"] = CANDIDATES["ensemble"]  # the same model on a longer budget

DEFAULT = "diffusion-2-linear-40k"

BUDGETS = {"ensemble": "diffusion", "ensemble-long": DEFAULT}
"""The ensemble candidates' wall-clock: each is given the world-model training time of a
diffusion candidate measured on the same dataset before it (its step cap = that time × its own
measured steps/s; held-out early stopping may end it sooner): the first recipe's, and the
library default's."""

BF16 = "-bf16"
"""Suffix of a candidate run under bf16 autocast (``adept train --precision bf16``): trained,
timed and measured (its rollouts too) with bf16 matrix products, cached apart from fp32."""


def candidate(name: str) -> tuple[Change, Precision]:
    """The change and the precision of candidate ``name`` (a CANDIDATES name, or one + BF16)."""
    base = name.removesuffix(BF16)
    if base not in CANDIDATES:
        raise SystemExit(f"unknown candidate {name!r}; choose from {list(CANDIDATES)} (+{BF16})")
    return CANDIDATES[base], "bf16" if name.endswith(BF16) else "fp32"


RULES: dict[str, Change] = {
    "is-weighted": lambda c: apply_overrides(c, {"refit.rule": "is", "refit.loss": "weighted"}),
    "is-resample": lambda c: apply_overrides(c, {"refit.rule": "is", "refit.loss": "resample"}),
    "uniform": lambda c: apply_overrides(c, {"refit.rule": "uniform"}),
}
"""Re-fit rules of the refit part: each a change from the library default."""


@dataclass(frozen=True)
class Args:
    datasets: tuple[str, ...] = ("hopper-random", "halfcheetah-random", "walker2d-random")
    """Datasets."""
    candidates: tuple[str, ...] = tuple(CANDIDATES)
    """World models to measure (names of CANDIDATES; a name + '-bf16' runs it under bf16
    autocast)."""
    pretrain_steps: int = 20_000
    """Pre-training steps of the first recipe ('-40k' candidates: 40k), a cap for early-stopping
    candidates."""
    policy_steps: int = 20_000
    """IQL steps that make π."""
    refit_steps: int = 1000
    """Re-fit steps per variant in the refit part (ADEPT does 20 per round of 1000 agent steps:
    1000 re-fit steps in a 50k-step run)."""
    refit: bool = True
    """Run the refit part (after the candidates)."""
    refit_candidate: str = DEFAULT
    """The pre-trained model the refit part starts from (a name of CANDIDATES)."""
    refit_rules: tuple[str, ...] = tuple(RULES)
    """Re-fit rules to compare (names of RULES)."""
    refit_lrs: tuple[float | None, ...] = (None,)
    """Re-fit learning rates (``--adept.refit.lr``; None: pre-training's)."""
    refit_averages: tuple[float, ...] = (0.0, 0.99)
    """Re-fit averaging decays (``--adept.refit.average``; 0: none)."""
    starts: int = 512
    """Start states per true-error measurement (those at the velocity clip are skipped)."""
    seed: int = 0
    """Seed of pre-training, π and the measurements."""
    measure: bool = True
    """Measure what results.json lacks; --no-measure reports what it holds (and names what is
    missing) without touching the machine — e.g. while a grid runs."""
    out: Path = Path("runs/bench-world-models")
    """Where results.json goes when there is no --report (with one: beside it, REPORT.json)."""
    report: Path | None = None
    """Also write the tables as a markdown file here (e.g. docs/results/world-models.md)."""


def base_config(args: Args) -> ADEPTConfig:
    """The recipe the candidates change, spelled out so that results stay valid when the
    library's defaults move."""
    first = WorldModelConfig(hidden=256, depth=3, block_layers=1, condition="input")
    return ADEPTConfig(
        world_model=first,
        pretrain=PretrainConfig(steps=args.pretrain_steps, ema_decay=0.999, select_every=2000),
    )


def iql_policy(data: Transitions, steps: int, seed: int, device: torch.device) -> IQL:
    """π: IQL trained ``steps`` on D (cached in the artifact store; other benchmarks share it)."""
    spec = AgentSpec.from_data(data, steps, device)

    def make() -> dict[str, Any]:
        torch.manual_seed(seed)
        buffer = ReplayBuffer.from_transitions(data, device=device, seed=seed)
        agent = IQL(spec)
        for _ in range(steps):
            agent.update(buffer.sample(256))
        return {"agent": agent.state_dict()}

    key = {"data": data.fingerprint(), "steps": steps, "seed": seed}
    agent = IQL(spec)
    agent.load_state_dict(cached("bench-iql-policy", key, make)["agent"])
    return agent


def errors(
    model: WorldModel, policy: Any, truth: TrueDynamics, starts: torch.Tensor, seed: int
) -> tuple[float, float]:
    """(one-step, 10-step) true error, with the model's and policy's noise fixed by ``seed``."""
    torch.manual_seed(seed)
    err = true_model_error(model, policy, truth, starts, 10)
    return err.one_step, err.h_step


def measure(args: Args, dataset: str, results: dict[str, Any], path: Path) -> None:
    device = torch.device("cpu")
    data = load_dataset(dataset)
    assert data.env_id is not None
    truth = TrueDynamics(data.env_id)
    pi = iql_policy(data, args.policy_steps, args.seed, device)
    train_rows = ~holdout_mask(len(data), base_config(args).pretrain.holdout_fraction, args.seed)
    g = np.random.default_rng([args.seed, 7])
    pick = g.choice(np.flatnonzero(train_rows), args.starts, replace=False)
    starts = torch.as_tensor(data.observations[np.sort(pick)])
    train_part = data.subset(train_rows)
    sampler = ReplayBuffer.from_transitions(train_part, device=device, seed=args.seed)
    for name in args.candidates:
        key = f"{dataset}|{name}"
        change, precision = candidate(name)
        config = change(base_config(args))
        amp = autocast(precision, device, "model")
        if key in results:
            row = results[key]
            if not np.isfinite(row["steps_per_s"]) or row.get("timed_busy"):  # time it again
                with amp():
                    row["steps_per_s"] = steps_per_second(config, train_part, sampler)
                row["train_s"] = row["pretrain_steps"] / row["steps_per_s"]
                row["timed_busy"] = busy()
                save_results(path, results)
            continue
        budget = results.get(f"{dataset}|{BUDGETS.get(name)}", {}).get("train_s", np.nan)
        if name in BUDGETS and not budget > 0:  # NaN: not measured, or its timing struck out
            raise SystemExit(
                f"{name} is given {BUDGETS[name]}'s training time on {dataset}, which is not"
                f" measured (or re-timed) yet: list {BUDGETS[name]} before {name} in --candidates"
            )
        with amp():
            rate = steps_per_second(config, train_part, sampler)
        timed_busy = busy()
        if name in BUDGETS:
            config = apply_overrides(config, {"pretrain.steps": max(int(budget * rate), 1000)})
        started = time.perf_counter()
        with amp():
            result, model, bc = pretrained(data, train_part, config, args.seed)
        seconds = time.perf_counter() - started
        with amp():  # the model rolled out as it would be in training
            beta_1, beta_10 = errors(model, bc, truth, starts, args.seed)
            pi_1, pi_10 = errors(model, pi, truth, starts, args.seed)
        metrics = result["metrics"]
        steps = metrics.get("world_model/pretrain_steps", config.pretrain.steps)
        row = {
            "dataset": dataset,
            "candidate": name,
            "precision": precision,
            "parameters": sum(p.numel() for p in model.dynamics.parameters()),
            "steps_per_s": rate,
            "train_s": steps / rate,
            "timed_busy": timed_busy,
            "pretrain_s": seconds,
            "pretrain_steps": steps,
            "selected_step": metrics.get("world_model/selected_step", float("nan")),
            "heldout_loss": metrics.get("world_model/heldout_loss", float("nan")),
            "beta_1step": beta_1,
            "beta_10step": beta_10,
            "pi_1step": pi_1,
            "pi_10step": pi_10,
        }
        results[key] = row
        save_results(path, results)
        print(f"  {row}", flush=True)
    if args.refit:
        refits = results.setdefault(f"{dataset}|refit", {})
        for variant in refit_variants(args):
            if variant.key not in refits:
                refits[variant.key] = refit(
                    args, variant, data, train_part, sampler, pi, truth, starts
                )
                save_results(path, results)
                print(f"  refit {variant.key}: {refits[variant.key]}", flush=True)
    truth.close()


def pretrained(
    data: Transitions, train_part: Transitions, config: ADEPTConfig, seed: int
) -> tuple[dict[str, Any], WorldModel, BC]:
    """The library's pre-training of ``config`` on ``data`` (from the artifact store when it
    holds it): the result, its world model and its β."""
    device = torch.device("cpu")
    result = cached(
        "pretrain",
        pretrain_key(data, config.world_model, config.pretrain, seed, device),
        functools.partial(pretrain, data, config.world_model, config.pretrain, seed, device),
    )
    model = WorldModel(train_part, config.world_model, device)
    model.load_state_dict_all(result["world_model"])
    bc = BC(AgentSpec.from_data(data, max(config.pretrain.behavior_steps, 1), device), BCConfig())
    bc.load_state_dict(result["behavior"])
    return result, model, bc


def steps_per_second(config: ADEPTConfig, data: Transitions, buffer: ReplayBuffer) -> float:
    """World-model pre-training steps per second of ``config`` here (a timed warm-up on
    batches from ``buffer``, the training part of ``data``)."""
    model = WorldModel(data, config.world_model, torch.device("cpu"))
    for _ in range(20):
        model.train_step(buffer.sample(config.pretrain.batch_size))
    started = time.perf_counter()
    for _ in range(200):
        model.train_step(buffer.sample(config.pretrain.batch_size))
    return 200 / (time.perf_counter() - started)


def busy() -> bool:
    """Whether the machine ran more than this process's threads over the last minute (1-minute
    load average above them by more than half a core): a timing taken now measures the other
    job too, so the report strikes it out and the next measuring run re-times it."""
    return os.getloadavg()[0] > torch.get_num_threads() + 0.5


@dataclass(frozen=True)
class RefitVariant:
    candidate: str
    rule: str
    lr: float | None
    average: float
    steps: int

    @property
    def key(self) -> str:
        lr = "pretrain" if self.lr is None else f"{self.lr:g}"
        return f"{self.candidate}|{self.rule}|lr={lr}|avg={self.average:g}|steps={self.steps}"

    @staticmethod
    def parse(key: str) -> RefitVariant:
        """The variant whose :attr:`key` is ``key``."""
        candidate, rule, lr, average, steps = key.split("|")
        lr = lr.removeprefix("lr=")
        return RefitVariant(
            candidate,
            rule,
            None if lr == "pretrain" else float(lr),
            float(average.removeprefix("avg=")),
            int(steps.removeprefix("steps=")),
        )

    def config(self, base: ADEPTConfig) -> ADEPTConfig:
        config = RULES[self.rule](CANDIDATES[self.candidate](base))
        return apply_overrides(config, {"refit.lr": self.lr, "refit.average": self.average})


def refit_variants(args: Args) -> list[RefitVariant]:
    return [
        RefitVariant(args.refit_candidate, rule, lr, average, args.refit_steps)
        for rule in args.refit_rules
        for lr in args.refit_lrs
        for average in args.refit_averages
    ]


def refit(
    args: Args,
    variant: RefitVariant,
    data: Transitions,
    train_part: Transitions,
    sampler: ReplayBuffer,
    pi: IQL,
    truth: TrueDynamics,
    starts: torch.Tensor,
) -> dict[str, float]:
    """True error under π after ``variant.steps`` steps of the library's re-fit toward π
    (:class:`adept.world_models.importance.Refitter`), from the pre-trained ``variant.candidate``,
    with the same batches where the rules draw alike (``sampler`` draws from ``train_part``, the
    training part of ``data``, reseeded for each variant)."""
    config = variant.config(base_config(args))
    _, model, bc = pretrained(data, train_part, config, args.seed)
    refitter = Refitter(model, config.refit)
    sampler.generator.manual_seed(args.seed)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    metrics = refitter.round(sampler, pi, BehaviorModel("bc", bc), variant.steps)
    seconds = time.perf_counter() - started
    pi_1, pi_10 = errors(model, pi, truth, starts, args.seed)
    return {
        "pi_1step": pi_1,
        "pi_10step": pi_10,
        "is_ess_fraction": float(metrics["world_model/is_ess_fraction"]),
        "seconds": seconds,
    }


def main(args: Args) -> None:
    for name in args.candidates:
        candidate(name)  # an unknown name stops here
    if args.refit_candidate not in CANDIDATES:
        raise SystemExit(f"unknown refit candidate {args.refit_candidate!r}")
    unknown = [r for r in args.refit_rules if r not in RULES]
    if unknown:
        raise SystemExit(f"unknown refit rules {unknown}; choose from {list(RULES)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    path, results = load_results(args.out, args.report)
    for dataset in args.datasets if args.measure else []:
        print(f"\n{dataset}", flush=True)
        measure(args, dataset, results, path)
    keys = [f"{d}|{c}" for d in args.datasets for c in args.candidates]
    rows = [results[k] for k in keys if k in results]
    # every re-fit variant stored for these datasets, the ones asked for and earlier ones
    refits = sorted(
        (
            {"dataset": d, **asdict(RefitVariant.parse(key)), **values}
            for d in args.datasets
            for key, values in results.get(f"{d}|refit", {}).items()
        ),
        key=lambda r: (
            args.datasets.index(r["dataset"]), r["candidate"], r["steps"], r["rule"],
            r["lr"] or 0.0, r["average"],
        ),
    )  # fmt: skip
    text = report(args, rows, refits)
    missing = missing_parts(args, results)
    if missing:
        text += "\n\nNot measured yet: " + "; ".join(missing) + "."
    print("\n" + text)
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.report) as tmp:
            tmp.write_text(f"# World models against MuJoCo\n\n{header(args)}\n\n{text}\n")
        print(f"wrote {args.report}")


def missing_parts(args: Args, results: dict[str, Any]) -> list[str]:
    """What the report of ``args`` lacks, one phrase per dataset."""
    out = []
    for d in args.datasets:
        parts = [c for c in args.candidates if f"{d}|{c}" not in results]
        stored = results.get(f"{d}|refit", {})
        variants = refit_variants(args) if args.refit else []
        absent = sum(v.key not in stored for v in variants)
        if absent:
            parts.append(f"{absent} of {len(variants)} re-fit variants from {args.refit_candidate}")
        if parts:
            out.append(f"{d}: " + ", ".join(parts))
    return out


def header(args: Args) -> str:
    """How the report was made: the command that makes it again, in a code block."""
    lines = [
        "python -m benchmarks.world_models",
        "--datasets " + " ".join(args.datasets),
        "--candidates " + " ".join(args.candidates),
        f"--out {args.out} --report {args.report}",
    ]
    command = " \\\n    ".join(lines)
    kept = args.report.with_suffix(".json").name if args.report else "results.json"
    return (
        f"```bash\n{command}\n```\n\n"
        "Made on a 2-core CPU, one process at two threads (see the module's docstring). The "
        f"command resumes: it measures what its results ({kept}, beside this file) lack and "
        "rewrites this file; `--no-measure` rewrites it from what is there. The reading is in "
        "README.md beside it."
    )


def report(args: Args, rows: list[dict[str, Any]], refits: list[dict[str, Any]]) -> str:
    """The tables of ``rows``, as markdown."""

    def whole(x: float) -> int | str:
        return int(x) if np.isfinite(x) else "–"

    shown = [
        {
            **r,
            "pretrain_steps": whole(r["pretrain_steps"]),
            "selected_step": whole(r["selected_step"]),
            "steps_per_s": "–" if r.get("timed_busy") else whole(r["steps_per_s"]),
            "train_s": "–" if r.get("timed_busy") else whole(r["train_s"]),
        }
        for r in rows
    ]
    parts = [
        f"True error vs MuJoCo, mean L2 over ≤ {args.starts} starts (raw state units); "
        f"β: the BC fit, π: IQL {args.policy_steps // 1000}k; 'steps': pre-training steps run "
        "(the candidate's cap unless stopped early), 'selected': the step of the weights kept; "
        "'WM train (s)': steps / measured steps per second ('–': a timing taken beside another "
        "job, by hand or by the load average, struck out; the next measuring run re-times it; "
        "a budget given as another model's training time still uses it).",
        format_table(
            {
                "dataset": "dataset",
                "model": "candidate",
                "params": "parameters",
                "WM steps/s": "steps_per_s",
                "WM train (s)": "train_s",
                "steps": "pretrain_steps",
                "selected": "selected_step",
                "β 1-step": "beta_1step",
                "β 10-step": "beta_10step",
                "π 1-step": "pi_1step",
                "π 10-step": "pi_10step",
            },
            shown,
        ),
    ]
    if refits:
        parts.append(
            "Re-fit toward π: 'steps' re-fit steps of batch 1024 from the pre-trained model"
            " (`adept.world_models.importance.Refitter`; lr: Adam's in the re-fit, average: the"
            " decay of the"
            " re-fit's weight average, 0 none); error under π (before: the model's row above)."
        )
        parts.append(
            format_table(
                {
                    "dataset": "dataset",
                    "model": "candidate",
                    "rule": "rule",
                    "lr": "lr",
                    "average": "average",
                    "steps": "steps",
                    "π 1-step": "pi_1step",
                    "π 10-step": "pi_10step",
                    "ESS / pool": "is_ess_fraction",
                },
                [
                    {
                        **r,
                        "lr": "pre-training's" if r["lr"] is None else f"{r['lr']:g}",
                        "average": f"{r['average']:g}",
                    }
                    for r in refits
                ],
            )
        )
    return "\n\n".join(parts)


if __name__ == "__main__":
    main(tyro.cli(Args))
