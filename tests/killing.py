"""The child side of the SIGKILL tests (tests/test_kills.py): run one adept command in a process
forked from a server that has imported adept once, count the calls of the places where a kill
hurts most, and — when told to — SIGKILL the process at the k-th call of one of them.

Each place ("site") is a function the command calls many times; the kill lands inside the
phase the site belongs to:

============  ==================================================================  ============
site          the function                                                        the phase
============  ==================================================================  ============
write         ``Path.write_bytes`` of an atomic write's temporary (a random       checkpoint,
              prefix of the bytes is written first)                               json, cache
rename        ``os.replace`` of an atomic write (before or after it)              checkpoint
link          ``os.link`` keeping ``checkpoint.prev.pt`` (before or after it)     checkpoint
hdf5          ``h5py.Group.create_dataset`` (columns half written)                dataset write
env-step      ``gymnasium.wrappers.TimeLimit.step``                               evaluation,
                                                                                  data making
update        ``torch.optim.Adam.step``                                           any training
pretrain      ``WorldModel.train_step``                                           world-model
                                                                                  pre-training
refit         ``importance_sampled_update``                                       IS round
rollout       ``adept.methods.adept.rollout``                               rollout round
diffusion     ``DiffusionTrainer.step``                                           SynthER, PGD,
                                                                                  DyDiff models
progress      ``tqdm.__init__``, holding tqdm's lock (taken even for a disabled   any loop
              bar)
timer         a random instant after the start                                    anywhere
============  ==================================================================  ============
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import h5py
import torch
import torch._dynamo
from tqdm.std import tqdm

import adept.base.atomic
import adept.datasets.generate
import adept.datasets.online_sac
import adept.diffusion.training
import adept.methods.adept
import adept.methods.dydiff
import adept.methods.pgd
import adept.methods.synther
import adept.training
import adept.world_models.importance
import adept.world_models.model
from adept.cli import main

SITES = (
    "write",
    "rename",
    "link",
    "hdf5",
    "env-step",
    "update",
    "pretrain",
    "refit",
    "rollout",
    "diffusion",
    "progress",
)


@dataclass(frozen=True)
class Kill:
    """SIGKILL at the ``call``-th call of ``site`` (``timer``: ``when`` seconds after the
    start); ``fraction`` places the kill inside the call where a site allows it (the share of
    bytes written, or before/after a rename)."""

    site: str
    call: int = 1
    fraction: float = 0.5
    when: float = 0.0


def run(argv: list[str], data_dir: str, kill: Kill | None, counts: str | None, status: str) -> None:
    """Run ``adept <argv>`` with ``$ADEPT_DATA_DIR`` at ``data_dir``; die as ``kill`` says.
    ``counts``: a file to write each site's call count to when the command ends, the sites in
    the order of their first call. ``status``: a file that says how the run ended — 'killed'
    (written just before the SIGKILL), 'done', or the error — so the parent does not depend on
    the exit code that the forkserver relays (it once came back as 255, 'status lost')."""
    os.environ["ADEPT_DATA_DIR"] = data_dir
    torch.set_num_threads(1)
    # tqdm takes its lock even for a disabled bar, and the lock it makes by default is a
    # multiprocessing one that every child of the server would share: a child killed while
    # holding it would hang every later child. This process's own lock dies with it.
    tqdm.set_lock(threading.RLock())
    calls: Counter[str] = Counter()
    report = Path(status)

    def die() -> None:
        report.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)

    def hit(site: str, inside: Callable[[], Any] | None = None) -> None:
        calls[site] += 1
        if kill is not None and kill.site == site and calls[site] == kill.call:
            if inside is not None:
                inside()
            die()

    _install(hit, kill)
    if kill is not None and kill.site == "timer":
        timer = threading.Timer(kill.when, die)
        timer.daemon = True
        timer.start()
    try:
        main(argv)
    except BaseException as exc:
        report.write_text(f"failed: {type(exc).__name__}: {exc}")
        raise
    report.write_text("done")
    if counts is not None:
        Path(counts).write_text(json.dumps(calls))


def _install(hit: Callable[..., None], kill: Kill | None) -> None:
    """Wrap every site's function so that it calls ``hit`` first (this process only: it was
    forked for one command)."""
    after = kill is not None and kill.fraction >= 0.5  # rename/link: die after the call

    def counted(owner: Any, name: str, site: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            hit(site)
            return real(*args, **kwargs)

        setattr(owner, name, wrapper)

    def around(owner: Any, name: str, site: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            hit(site, (lambda: real(*args, **kwargs)) if after else None)
            return real(*args, **kwargs)

        setattr(owner, name, wrapper)

    real_write = Path.write_bytes

    def write_bytes(self: Path, data: Any) -> int:
        if self.name.startswith(".") and ".tmp" in self.name:
            raw = bytes(data)
            share = 0.5 if kill is None else kill.fraction
            hit("write", lambda: real_write(self, raw[: int(len(raw) * share)]))
        return real_write(self, data)

    Path.write_bytes = write_bytes  # type: ignore[method-assign]
    real_init = tqdm.__init__

    def progress(self: tqdm, *args: Any, **kwargs: Any) -> None:
        hit("progress", lambda: tqdm.get_lock().acquire())
        real_init(self, *args, **kwargs)

    tqdm.__init__ = progress  # type: ignore[method-assign]
    around(adept.base.atomic.os, "replace", "rename")
    around(os, "link", "link")
    counted(h5py.Group, "create_dataset", "hdf5")
    counted(gymnasium.wrappers.TimeLimit, "step", "env-step")
    counted(torch.optim.Adam, "step", "update")
    counted(adept.world_models.model.WorldModel, "train_step", "pretrain")
    counted(adept.world_models.importance, "importance_sampled_update", "refit")
    counted(adept.methods.adept, "rollout", "rollout")
    counted(adept.diffusion.training.DiffusionTrainer, "step", "diffusion")
