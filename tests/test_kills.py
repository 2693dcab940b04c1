"""SIGKILL at any point, then the same command again: it must end exactly as an uninterrupted
run — the same metrics.csv (wall time aside), weights and summary for ``adept train``, the same
dataset for ``adept data make`` — and leave no half-written file behind.

Each command runs once uninterrupted (the reference; it also counts how often it calls each
kill site of tests/killing.py), then as a chain: killed once in each phase it has (PHASES, at a
random call), then at random sites and instants, run again after each kill, then run to the
end. The kill points are drawn from ``ADEPT_KILL_SEED``
(default 0) and their number from ``ADEPT_KILLS`` (default 4 per command): set them to search
further, e.g. ``ADEPT_KILL_SEED=7 ADEPT_KILLS=20 pytest tests/test_kills.py``.

The commands run in processes forked from one server that imported adept once (a fresh
interpreter per run would cost more than the runs), two at a time with one thread each.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adept.data.hdf5 import load_hdf5, read_metadata
from adept.store.runs import load_checkpoint
from tests.helpers import rows
from tests.killing import SITES, Kill
from tests.killing import run as run_child

pytestmark = pytest.mark.slow  # kill chains: every command killed at every site

SEED = int(os.environ.get("ADEPT_KILL_SEED", "0"))
KILLS = int(os.environ.get("ADEPT_KILLS", "4"))
PHASES = ("pretrain", "diffusion", "refit", "rollout", "env-step", "hdf5", "write")
"""The phases every command is killed in first, when it has them: world-model pre-training,
generator training, the IS round, the rollouts, an evaluation (or the data's recording), the
hdf5 write, a checkpoint write."""

TRAIN = [
    "--num-steps", "20", "--batch-size", "16", "--eval-every", "10", "--eval-episodes", "1",
    "--log-every", "5", "--checkpoint-every", "5", "--device", "cpu", "--no-progress",
]  # fmt: skip
WORLD_MODEL = [
    "--adept.world-model.hidden", "32", "--adept.world-model.depth", "1",
    "--adept.world-model.denoising-steps", "3", "--adept.pretrain.steps", "6",
    "--adept.pretrain.select-every", "3", "--adept.pretrain.batch-size", "32",
    "--adept.pretrain.behavior-steps", "5",
    "--adept.rollout.horizon", "3", "--adept.rollout.every", "5",
    "--adept.rollout.batch-size", "16", "--adept.rollout.start", "5",
    "--adept.mix.buffer-size", "200", "--adept.diagnostics.batch-size", "32",
]  # fmt: skip
REFIT = ["--adept.refit.steps", "2", "--adept.refit.batch-size", "64"]
"""ADEPT's re-fit (Diff+X has none, and refuses its options)."""
SAC_RUN = [
    "--sac-steps", "200", "--sac-run.start-steps", "50", "--sac-run.batch-size", "32",
    "--sac-run.eval-every", "50", "--sac-run.eval-episodes", "1",
    "--sac-run.checkpoint-every", "100", "--sac-run.sac.hidden", "32",
]  # fmt: skip

# every agent, every method (each method with another agent), and both kinds of data making
# fmt: off
COMMANDS: dict[str, list[str]] = {
    "iql": ["--agent", "iql", "--iql.hidden", "32"],
    "sac": ["--agent", "sac", "--sac.hidden", "32"],
    "td3bc": ["--agent", "td3bc", "--td3bc.hidden", "32"],
    "bc": ["--agent", "bc", "--bc.hidden", "32"],
    "adept+iql": [
        "--agent", "iql", "--iql.hidden", "32", "--method", "adept", *WORLD_MODEL, *REFIT
    ],
    "diffusion+sac": [
        "--agent", "sac", "--sac.hidden", "32", "--method", "diffusion", *WORLD_MODEL
    ],
    "synther+td3bc": [
        "--agent", "td3bc", "--td3bc.hidden", "32", "--method", "synther",
        "--synther.preset", "smoke", "--synther.num-samples", "500",
        "--synther.sample-batch", "256",
    ],
    "pgd+bc": [
        "--agent", "bc", "--bc.hidden", "32", "--method", "pgd", "--pgd.preset", "smoke",
        "--pgd.num-segments", "16", "--pgd.segment-length", "9", "--pgd.regenerate-every", "5",
    ],
    "dydiff+iql": [
        "--agent", "iql", "--iql.hidden", "32", "--method", "dydiff", "--dydiff.preset", "smoke",
        "--dydiff.rollout-batch", "16", "--dydiff.one-step.dynamics", "ensemble",
        "--dydiff.one-step.hidden", "32", "--dydiff.one-step.depth", "2",
        "--dydiff.one-step.ensemble-size", "3", "--dydiff.one-step.ensemble-elites", "2",
        "--dydiff.one-step-steps", "20",
    ],
    "make random": ["hopper-random", "--num-steps", "600"],
    "make medium": ["hopper-medium", "--num-steps", "300", *SAC_RUN],
    "make medium-expert": ["hopper-medium-expert", "--num-steps", "200", *SAC_RUN],
}
# fmt: on


@dataclass
class Chain:
    """What became of one command: the kills that landed (site, call), and the folders of its
    reference and killed-then-finished runs."""

    name: str
    reference: Path
    killed: Path
    landed: list[Kill] = field(default_factory=list)
    missed: int = 0
    seconds: float = 0.0


def argv(name: str, folder: Path, dataset: Path) -> list[str]:
    if name.startswith("make "):
        return ["data", "make", *COMMANDS[name], "--out", str(folder / "out.hdf5"), "--no-progress"]
    return ["train", "--dataset", str(dataset), "--run-dir", str(folder / "run"), *TRAIN,
            *COMMANDS[name]]  # fmt: skip


def launch(
    context: Any,
    args: list[str],
    folder: Path,
    kill: Kill | None,
    counts: Path | None,
    timeout: float = 300.0,
) -> str:
    """Run ``adept <args>`` in a forked child; how it ended: 'killed', 'done' or the failure."""
    status = folder / "status.txt"
    folder.mkdir(parents=True, exist_ok=True)
    status.unlink(missing_ok=True)
    process = context.Process(
        target=run_child,
        args=(args, str(folder / "data"), kill, None if counts is None else str(counts), status),
    )
    process.start()
    process.join(timeout=timeout)
    if process.exitcode is None:
        process.kill()
        pytest.fail(f"adept {' '.join(args)} hung")
    ended = status.read_text() if status.exists() else f"no status (exit code {process.exitcode})"
    status.unlink(missing_ok=True)
    return ended


def chain(context: Any, name: str, root: Path, dataset: Path) -> Chain:
    start = time.monotonic()
    result = Chain(name, root / "reference", root / "killed")
    counts = root / "counts.json"
    ended = launch(context, argv(name, result.reference, dataset), result.reference, None, counts)
    assert ended == "done", f"the reference run of {name} {ended}"
    duration = time.monotonic() - start  # of the reference run (the lines above cost nothing)
    calls = {site: n for site, n in json.loads(counts.read_text()).items() if n > 0}
    assert set(calls) <= set(SITES)
    rng = random.Random(f"{SEED}/{name}")
    args = argv(name, result.killed, dataset)
    # first one kill in each phase the command has, in the order the reference run entered them
    # (a kill in a phase that the resumed run no longer passes through would miss; writes come
    # all along, so last), then more kills anywhere
    sites = sorted((site for site in calls if site in PHASES), key=lambda s: s == "write")
    sites += [rng.choice([*sorted(calls), "timer"]) for _ in range(KILLS - len(sites))]
    for site in sites:
        kill = Kill(
            site,
            call=rng.randint(1, max(1, calls.get(site, 1) // 2)),
            fraction=rng.random(),
            when=rng.uniform(0.0, duration / 2),
        )
        ended = launch(context, args, result.killed, kill, None)
        if ended == "killed":
            result.landed.append(kill)
        else:
            assert ended == "done", f"{name} after a kill: {ended}"
            result.missed += 1  # the call or instant came after the (resumed) run's end
    ended = launch(context, args, result.killed, None, None)
    assert ended == "done", f"{name} did not finish: {ended}"
    result.seconds = time.monotonic() - start
    return result


def server() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.killing"])
    return context


@pytest.fixture(scope="module")
def chains(tmp_path_factory) -> dict[str, Chain]:
    from adept.datasets.generate import make_dataset

    root = tmp_path_factory.mktemp("kills")
    dataset = make_dataset("hopper-random", root / "hopper-random.hdf5", 1000, progress=False)
    context = server()
    with ThreadPoolExecutor(2) as pool:
        futures = {n: pool.submit(chain, context, n, root / f"c{i}", dataset)
                   for i, n in enumerate(COMMANDS)}  # fmt: skip
        done = {name: future.result() for name, future in futures.items()}
    landed = sum(len(c.landed) for c in done.values())
    print(f"\n{landed} kills landed over {len(done)} commands (seed {SEED}):")
    for c in done.values():
        sites = ", ".join(f"{k.site}#{k.call}" for k in c.landed) or "none"
        print(f"  {c.name}: {sites}; {c.missed} missed; {c.seconds:.1f} s")
    return done


def comparable(state: Any) -> Any:
    """A checkpoint's contents without what depends on the clock (wall time, and the log rows
    that carry it: metrics.csv is compared on its own)."""
    if isinstance(state, dict):
        return {k: comparable(v) for k, v in state.items() if k not in ("wall_time", "metrics")}
    return state


def temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_killed_anywhere_then_run_again_ends_as_the_uninterrupted_run(chains, name):
    from tests.helpers import equal

    c = chains[name]
    assert not temporaries(c.killed), "a killed write's temporary file was left behind"
    if name.startswith("make "):
        a, b = load_hdf5(c.reference / "out.hdf5"), load_hdf5(c.killed / "out.hdf5")
        for column in ("observations", "actions", "rewards", "next_observations", "terminals"):
            assert np.array_equal(getattr(a, column), getattr(b, column)), column
        ma, mb = read_metadata(c.reference / "out.hdf5"), read_metadata(c.killed / "out.hdf5")
        clock = {k for k in ma.keys() | mb.keys() if k == "created" or k.endswith("wall_time_s")}
        assert {k: v for k, v in ma.items() if k not in clock} == {
            k: v for k, v in mb.items() if k not in clock
        }
        return
    ref, run = c.reference / "run", c.killed / "run"
    assert rows(run) == rows(ref)
    summary = [json.loads((r / "summary.json").read_text()) for r in (ref, run)]
    for s in summary:
        s.pop("wall_time")
    assert summary[0] == summary[1]
    assert equal(
        comparable(load_checkpoint(run / "checkpoint.pt")),
        comparable(load_checkpoint(ref / "checkpoint.pt")),
    ), "the weights (or optimizer, RNG, buffers) differ from the uninterrupted run's"


def test_the_kills_land_in_every_phase(chains):
    """The property is only as strong as the places it kills in: each phase must be hit."""
    landed = {k.site for c in chains.values() for k in c.landed}
    assert set(PHASES) <= landed
    assert sum(len(c.landed) for c in chains.values()) >= 3 * len(chains)


def test_a_child_killed_holding_the_progress_lock_hangs_no_later_child(tmp_path):
    """tqdm takes its lock even for a disabled bar; a timer kill can land while a child holds
    it. Every child of the server must have its own lock, or the next one waits forever (it
    once hung the suite on a slower machine)."""
    context = server()
    args = ["data", "make", "hopper-random", "--num-steps", "50", "--no-progress"]
    first = launch(context, [*args, "--out", str(tmp_path / "a.hdf5")], tmp_path / "a",
                   Kill("progress"), None)  # fmt: skip
    assert first == "killed"
    second = launch(context, [*args, "--out", str(tmp_path / "b.hdf5")], tmp_path / "b", None,
                    None, timeout=60)  # fmt: skip
    assert second == "done"
