"""Command line: ``adept train``, ``adept eval``, ``adept bench``, ``adept report``,
``adept data make|info``, ``adept demo``.

Each command is a frozen dataclass parsed by tyro; its field docstrings are the ``--help`` text.
Bad input raises :class:`AdeptError`, printed here as one line with exit status 2. ``adept train``
is parsed in :mod:`adept.cli.train`: its options depend on the chosen agent and method.
"""

from __future__ import annotations

import builtins
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tyro

from adept.base.errors import AdeptError
from adept.cli.train import Train, parse_train, train_config_type
from adept.datasets.online_sac import OnlineSACConfig
from adept.report.command import Report
from adept.training import TrainConfig


@dataclass(frozen=True)
class DataMake:
    """Make a D4RL-protocol dataset on a Gymnasium v5 MuJoCo env, written as D4RL-layout hdf5."""

    name: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="NAME")]
    """Dataset to make, <env>-<kind>: env in {hopper, halfcheetah, walker2d}, kind in {random,
    medium, medium-replay, expert, medium-expert}."""
    out: Path | None = None
    """Output file (.hdf5). Default: the cache, $ADEPT_DATA_DIR or ~/.cache/adept/datasets."""
    num_steps: int | None = None
    """Transitions to record (default 1M, as D4RL; medium-expert records this many of each;
    medium-replay's size is set by its SAC run)."""
    seed: int = 0
    """Seed of the env, the behaviour policy and the SAC run; the dataset is a function of it."""
    sac_steps: int | None = None
    """SAC budget of the learned kinds (default 1M ≈ 1.7 h on 2 CPU cores): the expert's
    training steps and the cap on the search for the medium stop. One SAC run per env, seed and
    budget is cached and shared by all learned kinds."""
    sac_run: OnlineSACConfig = field(default_factory=OnlineSACConfig)
    """The online SAC run behind the learned kinds (medium stop rule: --sac-run.medium-fraction)."""
    progress: bool = True
    """Show progress bars."""

    def run(self) -> None:
        import time

        from adept.data.hdf5 import load_hdf5
        from adept.datasets.generate import make_dataset
        from adept.datasets.registry import cached_path
        from adept.datasets.summary import summarize

        tag = self.sac_run.tag()
        out = self.out
        if out is None:
            out = cached_path(self.name, self.num_steps, self.seed, self.sac_steps, tag)
        sac_config = None if self.sac_run == OnlineSACConfig() else self.sac_run
        start = time.perf_counter()
        path = make_dataset(
            self.name, out, self.num_steps, self.seed, self.progress, self.sac_steps, sac_config
        )
        info = summarize(load_hdf5(path))
        print(
            f"wrote {path} ({info['transitions']} transitions, {info['episodes']} episodes, "
            f"behaviour normalized score {info['normalized_score_mean']:.1f}; "
            f"{time.perf_counter() - start:.1f} s)"
        )
        if "note" in info:
            print(f"note: {info['note']}")


@dataclass(frozen=True)
class DataInfo:
    """Summarize a dataset: sizes, episode returns, the behaviour policy's normalized score."""

    dataset: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="DATASET")]
    """A .hdf5 path, minari:<dataset-id>, or a project name such as hopper-random."""
    env_id: str | None = None
    """Gymnasium env id, when the dataset does not name one (e.g. an original D4RL file)."""
    json: bool = False
    """Print the summary as JSON."""
    plot: Path | None = None
    """Also write a histogram of the episode returns to this PNG."""

    def run(self) -> None:
        from adept.datasets.registry import load_dataset
        from adept.datasets.summary import format_summary, is_synthetic, summarize

        if self.plot is not None and self.plot.suffix.lower() != ".png":
            raise AdeptError(f"--plot writes a PNG; give a path ending in .png, not {self.plot}")
        data = load_dataset(self.dataset, env_id=self.env_id, make_missing=False)
        if self.plot is not None and is_synthetic(data):
            raise AdeptError(
                f"--plot draws episode returns, and {self.dataset} holds synthetic one-step "
                "transitions; drop --plot"
            )
        summary = summarize(data)
        print(json.dumps(summary, indent=2) if self.json else format_summary(summary))
        if self.plot is not None:
            from adept.envs import normalized_score
            from adept.report.plots import plot_return_histogram

            returns = data.episode_returns()
            scores = None
            if data.env_id is not None:
                scores = normalized_score(returns, data.env_id, data.metadata)
            title = f"{self.dataset}: {len(returns)} episodes"
            png = plot_return_histogram(returns, self.plot, title, scores)
            if not self.json:
                print(f"histogram: {png}")


@dataclass(frozen=True)
class Eval:
    """Evaluate a run's latest checkpoint with the deterministic actor."""

    run_dir: Annotated[tyro.conf.Positional[Path], tyro.conf.arg(metavar="RUN_DIR")]
    """A training run directory."""
    episodes: int = 10
    """Evaluation episodes."""
    seed: int = 0
    """Seed of the evaluation episodes' start states."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Device for the actor."""

    def run(self) -> None:
        from adept.envs import evaluate
        from adept.training import load_agent

        agent, meta = load_agent(self.run_dir, self.device)
        result = evaluate(
            lambda obs: agent.act(obs, deterministic=True),
            meta["env_id"],
            self.episodes,
            seed=self.seed,
            metadata=meta,
        )
        print(
            f"{meta['env_id']} step {meta['step']}: return {result.mean_return:.1f} "
            f"± {result.returns.std():.1f}, normalized score {result.mean_normalized_score:.1f} "
            f"± {result.normalized_scores.std():.1f}, length {result.lengths.mean():.0f} "
            f"(min {result.lengths.min()}) over {self.episodes} episodes"
        )


@dataclass(frozen=True)
class Bench:
    """Run a grid of datasets × methods × agents × seeds, each cell an ``adept train`` run
    directory under --root; re-running the same command resumes it (finished cells are skipped,
    unfinished ones resume from their checkpoints). The exit status is the number of failed
    cells. Layers, each overriding the one before: --preset, --spec, then the options here."""

    preset: str | None = None
    """A grid that ships with adept: 'paper-ablation' (X, Diff+X, ADEPT+X for IQL and SAC, plus
    BC, on the random and medium-replay datasets, 1M steps, 5 seeds) or 'smoke' (every method
    once, seconds a cell); --list-presets prints them. The grids behind the committed reports
    are specs beside them (docs/results/<report>/grid.toml)."""
    list_presets: bool = False
    """Print the presets, one line each, and exit."""
    spec: Path | None = None
    """A TOML grid (e.g. docs/results/adept-claim-cpu50k/grid.toml): datasets, methods, agents,
    seeds, num_steps, eval_every, eval_episodes, [set] (options of every cell) and [variants]
    (name = {method = ..., option = value})."""
    datasets: tuple[str, ...] | None = None
    """Datasets, as adept train takes them: names (hopper-random, hopper-random-n5000),
    .hdf5 paths, minari:<id>."""
    methods: tuple[str, ...] | None = None
    """Methods, each a variant of its own name: none (X), diffusion (Diff+X), adept (ADEPT+X),
    synther (SynthER+X), pgd (PGD+X), dydiff (DyDiff+X)."""
    variant: Annotated[tuple[tuple[str, ...], ...], tyro.conf.UseAppendAction] = ()
    """Named variants, NAME:method=M[,OPTION=VALUE...][,agents=iql+sac][,datasets=A+B], e.g.
    adept-h5:method=adept,adept.rollout.horizon=5 (several after one flag, or the flag repeated)."""
    agents: tuple[str, ...] | None = None
    """Agents: iql, sac, td3bc, bc."""
    seeds: tuple[int, ...] | None = None
    """Seeds of every cell."""
    num_steps: int | None = None
    """Gradient steps of every cell (names the budget: 'cpu-20k', or 'paper-1m' at 1M)."""
    eval_every: int | None = None
    """Evaluate every N steps (default 5000)."""
    eval_episodes: int | None = None
    """Episodes per evaluation (default 10)."""
    set: Annotated[tuple[tuple[str, ...], ...], tyro.conf.UseAppendAction] = ()
    """Options of every cell, OPTION=VALUE as adept train spells them (adept.rollout.horizon=5;
    several after one flag, or the flag repeated)."""
    root: Path | None = None
    """The grid's folder (default runs/<preset or spec name>)."""
    extend: bool = False
    """Add the cells of new datasets, variants, agents or seeds to an existing root."""
    workers: int | None = None
    """Cells run at once (default: one per core; a local Ray instance gets workers × threads
    CPUs, a Ray cluster runs as many as its CPUs allow). Measured on 2 cores (IQL, 20k steps):
    2 workers × 1 thread ran 30.4 cells/hour, 1 worker × 2 threads 21.7."""
    threads: int | None = None
    """Torch threads per cell (default: cores / workers)."""
    pack: int = 1
    """Train the cells that differ only by seed in one process, up to this many (adept train
    --seeds: their agents' updates, and Diff+X's and ADEPT's world models, batched into one
    computation; a worker runs the pack). For GPUs: on a CPU it saves nothing."""
    backend: Literal["local", "ray"] = "local"
    """local: worker processes on this machine; ray: Ray tasks on a cluster sharing --root."""
    address: str | None = None
    """Ray cluster address (auto, or HOST:PORT); default: start a local Ray instance."""
    gpus_per_cell: float | None = None
    """Ray: GPUs per cell (fractional shares a GPU); default 0.25 when the cluster has GPUs."""
    max_retries: int = 3
    """Ray: retries of a cell whose worker died (it resumes from its checkpoint)."""
    report: Path | None = None
    """Also write the grid's report (as adept report ROOT --out DIR) to this folder when the
    grid ends, so one command runs or resumes a grid and renders its results."""
    archive: Path | None = None
    """Keep each finished cell's light files (config, metrics, summary; no checkpoints) in this
    folder, and take the finished cells found there instead of running them: commit it (e.g.
    beside the --report) and the same command continues the grid on another machine."""
    reuse: tuple[Path, ...] = ()
    """Other grids' --archive folders (or roots): a cell one of them already ran — the same
    config in every field the run reads (other agents' and methods' options aside), the same
    data — is taken from there instead of run, e.g. the IQL cells the synther-table grid shares
    with adept-claim. Its record names where it came from."""
    list: bool = False
    """List the root's cells and their states, and exit."""
    progress: bool = True
    """Show the overall progress bar."""

    def layers(self) -> Sequence[tuple[str, Mapping[str, object]]]:
        """The spec's layers in order: preset, spec file, command line."""
        from adept import bench

        layers: builtins.list[tuple[str, Mapping[str, object]]] = []
        if self.preset is not None:
            layers.append((f"preset {self.preset}", bench.preset(self.preset)))
        if self.spec is not None:
            layers.append((f"spec {self.spec}", bench.load_toml(self.spec)))
        cli: dict[str, object] = {
            key: value
            for key, value in (
                ("datasets", self.datasets),
                ("methods", self.methods),
                ("agents", self.agents),
                ("seeds", self.seeds),
                ("num_steps", self.num_steps),
                ("eval_every", self.eval_every),
                ("eval_episodes", self.eval_episodes),
            )
            if value is not None
        }
        if self.set:
            cli["set"] = bench.parse_assignments([a for group in self.set for a in group], "--set")
        if self.variant:
            cli["variants"] = dict(
                bench.parse_variant_arg(v) for group in self.variant for v in group
            )
        if cli:
            layers.append(("the command line", cli))
        return layers

    def run(self) -> None:
        from adept import bench

        if self.list_presets:
            print(bench.list_presets())
            return
        root = self.root
        if root is None and self.preset:
            root = Path("runs") / self.preset
        elif root is None and self.spec:
            # a report's grid.toml names its grid by its folder
            root = Path("runs") / (
                self.spec.parent.name if self.spec.stem == "grid" else self.spec.stem
            )
        if root is None:
            raise AdeptError("give the grid's folder with --root (or name a --preset or --spec)")
        if self.list:
            print(bench.list_cells(root))
            return
        layers = self.layers()
        if layers:
            spec = bench.resolve_spec(layers)
        else:  # `adept bench --root R` resumes the grid stored there
            spec = bench.GridSpec.from_json(bench.BenchRoot.read(root)["spec"])
        options = bench.BenchOptions(
            root=root,
            workers=self.workers,
            threads=self.threads,
            pack=self.pack,
            backend=self.backend,
            address=self.address,
            gpus_per_cell=self.gpus_per_cell,
            max_retries=self.max_retries,
            extend=self.extend,
            progress=self.progress,
            archive=self.archive,
            reuse=tuple(self.reuse),
        )
        result = bench.run_bench(spec, options)
        restored = f", {result.restored} from the archive" if result.restored else ""
        restored += f", {result.reused} from other grids" if result.reused else ""
        print(
            f"grid {result.root}: {result.done} of {result.total} cells done "
            f"({result.skipped} already were{restored}), {result.failed} failed, "
            f"{result.wall_time:.0f} s; tables and plots: adept report {result.root}"
        )
        if self.report is not None:
            Report(root=root, out=self.report).run()
        if result.failed:
            print(f"failed cells and their errors: {result.root / bench.BENCH_JSON}")
            raise SystemExit(min(result.failed, 100))


@dataclass(frozen=True)
class Demo:
    """The main job on its embedded default: IQL vs ADEPT+IQL on hopper-random at a CPU budget."""

    dataset: str = "hopper-random"
    """Dataset (made and cached on first use)."""
    num_steps: int = 10_000
    """Agent gradient steps of each run."""
    pretrain_steps: int = 5_000
    """ADEPT's world-model pre-training steps (the full default is 40k)."""
    seed: int = 0
    """Seed of both runs."""
    run_dir: Path = Path("runs/demo")
    """Where the runs and the learning-curve PNG go (finished runs are reused)."""

    def run(self) -> None:
        from dataclasses import replace

        from adept.datasets.registry import load_dataset
        from adept.datasets.summary import summarize
        from adept.methods import ADEPTConfig
        from adept.report.plots import plot_learning_curves
        from adept.training import train
        from adept.world_models.pretrain import PretrainConfig

        info = summarize(load_dataset(self.dataset))
        behaviour = info.get("normalized_score_mean", float("nan"))
        print(
            f"dataset {self.dataset}: {info['transitions']} transitions, {info['episodes']} "
            f"episodes, behaviour normalized score {behaviour:.1f}"
        )
        base = TrainConfig(
            dataset=self.dataset,
            agent="iql",
            num_steps=self.num_steps,
            seed=self.seed,
            eval_every=max(self.num_steps // 5, 1),
            checkpoint_every=max(self.num_steps // 5, 1),
            adept=ADEPTConfig(
                pretrain=PretrainConfig(steps=self.pretrain_steps, behavior_steps=2_000)
            ),
        )
        runs = {}
        summaries = {}
        for label, method in (("IQL", "none"), ("ADEPT+IQL", "adept")):
            run_dir = self.run_dir / f"{self.dataset}-iql-{method}-seed{self.seed}"
            print(f"training {label} ({self.num_steps} steps) → {run_dir}", flush=True)
            summaries[label] = train(replace(base, method=method, run_dir=run_dir))
            runs[label] = run_dir
        png = plot_learning_curves(
            runs,
            self.run_dir / f"{self.dataset}-learning-curve.png",
            f"{self.dataset}, {self.num_steps} steps, seed {self.seed}",
        )
        print(f"\n| {self.dataset} | normalized score (last) | best | wall time (s) |")
        print("|---|---|---|---|")
        for label, s in summaries.items():
            print(
                f"| {label} | {s['normalized_score_last']:.1f} | {s['normalized_score_best']:.1f} "
                f"| {s['wall_time']:.0f} |"
            )
        print(f"learning curves: {png}")


@dataclass(frozen=True)
class Data:
    """Make and inspect datasets."""

    command: (
        Annotated[DataMake, tyro.conf.subcommand("make")]
        | Annotated[DataInfo, tyro.conf.subcommand("info")]
    )

    def run(self) -> None:
        self.command.run()


Command = (
    Annotated[Train, tyro.conf.subcommand("train")]
    | Annotated[Eval, tyro.conf.subcommand("eval")]
    | Annotated[Bench, tyro.conf.subcommand("bench")]
    | Annotated[Report, tyro.conf.subcommand("report")]
    | Annotated[Data, tyro.conf.subcommand("data")]
    | Annotated[Demo, tyro.conf.subcommand("demo")]
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``adept`` console script and ``python -m adept``."""
    args = sys.argv[1:] if argv is None else argv
    try:
        from adept.registry import load_plugins

        load_plugins()
        if args[:1] == ["train"]:
            command: Any = Train(parse_train(args[1:]))
        else:
            command = tyro.cli(
                Command,
                args=args,
                prog="adept",
                description="Offline RL with adaptive diffusion world models.",
                config=(tyro.conf.OmitSubcommandPrefixes,),
            )
        command.run()
    except AdeptError as exc:
        print(f"adept: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("adept: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


__all__ = ["Train", "main", "parse_train", "train_config_type"]
