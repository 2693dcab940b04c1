"""Command line: ``adept data make``, ``adept data info``, ``adept demo``.

Each command is a frozen dataclass parsed by tyro; its field docstrings are the ``--help`` text.
Bad input raises :class:`AdeptError`, printed here as one line with exit status 2.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from adept.errors import AdeptError


@dataclass(frozen=True)
class DataMake:
    """Make a D4RL-protocol dataset on a Gymnasium v5 MuJoCo env, written as D4RL-layout hdf5."""

    name: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="NAME")]
    """Dataset to make, <env>-<kind>: env in {hopper, halfcheetah, walker2d}, kind in {random}."""
    out: Path | None = None
    """Output file (.hdf5). Default: the cache, $ADEPT_DATA_DIR or ~/.cache/adept/datasets."""
    num_steps: int = 1_000_000
    """Transitions to record (D4RL: 1M)."""
    seed: int = 0
    """Seed of the env and the behaviour policy; the dataset is a function of it."""
    progress: bool = True
    """Show a progress bar."""

    def run(self) -> None:
        import time

        from adept.data.generate import make_dataset
        from adept.data.registry import cached_path

        out = (
            self.out if self.out is not None else cached_path(self.name, self.num_steps, self.seed)
        )
        start = time.perf_counter()
        path = make_dataset(self.name, out, self.num_steps, self.seed, progress=self.progress)
        print(f"wrote {path} ({self.num_steps} transitions, {time.perf_counter() - start:.1f} s)")


@dataclass(frozen=True)
class DataInfo:
    """Summarize a dataset: sizes, episode returns, the behaviour policy's normalized score."""

    dataset: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="DATASET")]
    """A .hdf5 path, minari:<dataset-id>, or a project name such as hopper-random."""
    env_id: str | None = None
    """Gymnasium env id, when the dataset does not name one (e.g. an original D4RL file)."""
    json: bool = False
    """Print the summary as JSON."""

    def run(self) -> None:
        from adept.data.registry import load_dataset
        from adept.data.summary import format_summary, summarize

        summary = summarize(load_dataset(self.dataset, env_id=self.env_id))
        print(json.dumps(summary, indent=2) if self.json else format_summary(summary))


@dataclass(frozen=True)
class Demo:
    """The main job on its embedded default: make hopper-random (cached) and summarize it."""

    dataset: str = "hopper-random"
    """Project dataset to make and summarize."""

    def run(self) -> None:
        from adept.data.registry import cached_path, load_dataset
        from adept.data.summary import format_summary, summarize

        if not self.dataset.endswith(".hdf5"):
            print(f"dataset {self.dataset}: {cached_path(self.dataset)}")
        print(format_summary(summarize(load_dataset(self.dataset))))


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
    Annotated[Data, tyro.conf.subcommand("data")] | Annotated[Demo, tyro.conf.subcommand("demo")]
)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``adept`` console script and ``python -m adept``."""
    command = tyro.cli(
        Command,
        args=argv,
        prog="adept",
        description="Offline RL with adaptive diffusion world models.",
        config=(tyro.conf.OmitSubcommandPrefixes,),
    )
    try:
        command.run()
    except AdeptError as exc:
        print(f"adept: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("adept: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
