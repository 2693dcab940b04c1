"""Faults injected into the files a run lives on: damaged checkpoints and logs, a full or
read-only disk, a second process on the same run, files that try to run code when loaded.
Each test breaks something on purpose and checks that nothing is lost: a one-line error
naming the file and the way out, the previous files intact, and a resumed run that ends as
an uninterrupted one would."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import adept.base.atomic as atomic_module
from adept.base.errors import AdeptError
from adept.cli import main
from adept.data.hdf5 import load_hdf5, save_hdf5
from adept.data.transitions import Transitions
from adept.datasets.generate import make_dataset
from adept.datasets.registry import cached_path, load_dataset
from adept.store.artifacts import cached, entry_path
from adept.store.runs import (
    CHECKPOINT,
    PREVIOUS_CHECKPOINT,
    RunDir,
    load_checkpoint,
    save_state,
)
from adept.training import TrainConfig, load_agent, train
from tests.helpers import d4rl_arrays, equal, rows, stopped_at, write_d4rl
from tests.test_train import config as train_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=1000, seed=0, progress=False))


def config(dataset: str, run_dir: Path, **kw: Any) -> TrainConfig:
    """test_train's small IQL run (60 steps, checkpoints every 20), smaller still."""
    base = train_config(dataset, run_dir, batch_size=16, **kw)
    return replace(base, iql=replace(base.iql, hidden=32))


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    """An uninterrupted run: what every damaged-then-resumed run must end as."""
    run = tmp_path_factory.mktemp("reference") / "run"
    train(config(dataset, run))
    return run


def interrupted(dataset: str, run: Path, monkeypatch: pytest.MonkeyPatch, at: int = 47) -> None:
    """Train ``run`` until step ``at`` and stop as Ctrl-C would (checkpoints at 20 and 40)."""
    stopped_at(config(dataset, run), at, monkeypatch)


def same_agent(a: Path, b: Path) -> bool:
    return equal(load_checkpoint(a / CHECKPOINT)["agent"], load_checkpoint(b / CHECKPOINT)["agent"])


def one_line(exc: pytest.ExceptionInfo[AdeptError], *names: object) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for name in names:
        assert str(name) in message, message
    return message


def flip(path: Path, position: int, bit: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 1 << bit
    path.write_bytes(bytes(raw))


def stray_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


# --- damaged checkpoints ---------------------------------------------------------------


def test_every_flipped_bit_in_a_checkpoint_is_caught_or_harmless(tmp_path):
    """torch.load reads a bit-flipped file without complaint (a weight silently changes): the
    SHA-256 stored with the contents must turn every such flip into an error."""
    generator = torch.Generator().manual_seed(0)
    state = {
        "step": 40,
        "agent": {"w": torch.randn(48, 32, generator=generator), "b": torch.zeros(32)},
        "half": torch.ones(5, dtype=torch.bfloat16),
        "rng": {"torch": torch.get_rng_state()},
        "metrics": {"columns": ["step", "x"], "rows": [{"step": 10, "x": 0.25}]},
    }
    path = tmp_path / "checkpoint.pt"
    save_state(path, state)
    raw = path.read_bytes()
    rng = random.Random(0)
    caught = 0
    for _ in range(300):
        damaged = bytearray(raw)
        damaged[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        try:
            loaded = load_checkpoint(path)
        except AdeptError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
            caught += 1
            continue
        assert equal(loaded, state), "a flipped bit changed the contents silently"
    assert caught >= 250, f"only {caught} of 300 flips were caught"


def test_strided_views_save_and_load_as_their_values(tmp_path):
    """Columns of a row-major table (a replay buffer's fields) are strided views, empty, of one
    row or many: each saves, is digested by its values and loads back equal."""
    table = torch.arange(5 * 7, dtype=torch.float32).reshape(5, 7)
    state = {
        "empty": table[:0, 3],
        "one": table[:1, 3],
        "column": table[:, 3],
        "block": table[:, 1:3],
    }
    path = tmp_path / "checkpoint.pt"
    save_state(path, state)
    loaded = load_checkpoint(path)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


@pytest.mark.parametrize("keep", [0, 1, 100, 0.5, -1])
def test_a_truncated_checkpoint_is_a_one_line_error_naming_it(tmp_path, keep):
    path = tmp_path / "checkpoint.pt"
    save_state(path, {"step": 1, "w": torch.ones(100)})
    raw = path.read_bytes()
    cut = round(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    path.write_bytes(raw[:cut])
    with pytest.raises(AdeptError) as exc:
        load_checkpoint(path, remedy="delete it")
    assert one_line(exc, path, "damaged", "delete it")


def test_saving_keeps_the_checkpoint_it_replaces(tmp_path):
    path = tmp_path / CHECKPOINT
    first, second = {"step": 20, "w": torch.zeros(3)}, {"step": 40, "w": torch.ones(3)}
    save_state(path, first, keep_previous=True)
    assert not (tmp_path / PREVIOUS_CHECKPOINT).exists()
    save_state(path, second, keep_previous=True)
    assert equal(load_checkpoint(path), second)
    assert equal(load_checkpoint(tmp_path / PREVIOUS_CHECKPOINT), first)
    assert stray_files(tmp_path) == []


def test_a_save_after_one_killed_between_its_two_renames_leaves_no_temporary(tmp_path):
    """Killed after checkpoint.prev.pt became a link of checkpoint.pt but before the new
    checkpoint replaced it: the next save renames a link onto a link of the same file, which
    POSIX does as nothing (found by tests/test_kills.py, seed 3)."""
    path = tmp_path / CHECKPOINT
    save_state(path, {"step": 15})
    os.link(path, tmp_path / PREVIOUS_CHECKPOINT)  # where the killed save stopped
    save_state(path, {"step": 20}, keep_previous=True)
    assert load_checkpoint(path)["step"] == 20
    assert load_checkpoint(tmp_path / PREVIOUS_CHECKPOINT)["step"] == 15
    assert stray_files(tmp_path) == []


@pytest.mark.slow
def test_a_damaged_run_checkpoint_offers_the_previous_one_which_resumes_exactly(
    dataset, reference, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    interrupted(dataset, run, monkeypatch)
    flip(run / CHECKPOINT, (run / CHECKPOINT).stat().st_size // 2)
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, run))
    one_line(exc, run / CHECKPOINT, "damaged", f"mv {run / PREVIOUS_CHECKPOINT}", "step 20")
    with pytest.raises(AdeptError) as exc:  # adept eval says the same
        load_agent(run)
    one_line(exc, PREVIOUS_CHECKPOINT)

    os.replace(run / PREVIOUS_CHECKPOINT, run / CHECKPOINT)  # the remedy the error gives
    train(config(dataset, run))
    assert rows(run) == rows(reference)
    assert same_agent(run, reference)


def test_both_checkpoints_damaged_says_so(dataset, tmp_path, monkeypatch):
    run = tmp_path / "run"
    interrupted(dataset, run, monkeypatch)
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        (run / name).write_bytes((run / name).read_bytes()[:100])
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, run))
    one_line(exc, "damaged too", f"delete {run}")


@pytest.mark.parametrize("damage", ["cut-short-line", "garbage", "truncated", "deleted"])
def test_a_damaged_metrics_log_is_rewritten_from_the_checkpoint(
    dataset, reference, tmp_path, monkeypatch, damage
):
    run = tmp_path / "run"
    interrupted(dataset, run, monkeypatch)
    log = run / "metrics.csv"
    text = log.read_text()
    if damage == "cut-short-line":  # a kill in the middle of appending a row
        log.write_text(text + "50,0.1,0.")
    elif damage == "garbage":
        log.write_text(text.replace(",", ";", 5) + "\x00\x00 not csv\n")
    elif damage == "truncated":
        log.write_text(text[: len(text) // 3])
    else:
        log.unlink()
    train(config(dataset, run))
    assert rows(run) == rows(reference)


def test_an_old_checkpoint_without_rows_resumes_from_the_log_and_drops_a_cut_short_line(
    dataset, reference, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    interrupted(dataset, run, monkeypatch)
    state = load_checkpoint(run / CHECKPOINT)
    del state["metrics"]  # as checkpoints were written before they carried the rows
    save_state(run / CHECKPOINT, state)
    log = run / "metrics.csv"
    log.write_text(log.read_text() + "4")  # step 40 being appended when the process died
    train(config(dataset, run))
    assert rows(run) == rows(reference)

    interrupted(dataset, tmp_path / "again", monkeypatch)
    state = load_checkpoint(tmp_path / "again" / CHECKPOINT)
    del state["metrics"]
    save_state(tmp_path / "again" / CHECKPOINT, state)
    log = tmp_path / "again" / "metrics.csv"
    log.write_text(log.read_text().replace("\n20,", "\nx0,"))
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, tmp_path / "again"))
    one_line(exc, log, "line 3 is malformed")


def test_damaged_config_and_summary_are_one_line_errors_with_their_remedy(dataset, tmp_path):
    run = tmp_path / "run"
    first = train(config(dataset, run, num_steps=20, eval_every=20))
    (run / "summary.json").write_text('{"normalized_score_last": 1.')
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, run, num_steps=20, eval_every=20))
    one_line(exc, run / "summary.json", "damaged", "delete it")
    (run / "summary.json").unlink()  # the remedy: the summary is written again from the log
    again = train(config(dataset, run, num_steps=20, eval_every=20))
    assert {k: v for k, v in again.items() if k != "wall_time"} == {
        k: v for k, v in first.items() if k != "wall_time"
    }

    (run / "config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, run, num_steps=20, eval_every=20))
    one_line(exc, run / "config.json", "damaged", f"delete {run}")
    with pytest.raises(AdeptError) as exc:
        load_agent(run)
    one_line(exc, run / "config.json", "damaged")


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_sac_snapshot_names_the_file_and_the_remedy(tmp_path, damage):
    from tests.test_online import EASY, tiny_run

    run = tiny_run(tmp_path, EASY)
    run.medium()
    path, size = run.medium_path, run.medium_path.stat().st_size
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: size // 2])
    else:  # inside the stored tensors: torch.load alone would read it without complaint
        flip(path, size // 2)
    with pytest.raises(AdeptError) as exc:
        run.medium()
    one_line(exc, path, f"delete {run.path} to train the SAC run again")


# --- a full or read-only disk ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_checkpoint_that_cannot_be_written_leaves_the_last_one_and_resumes_exactly(
    dataset, reference, tmp_path, monkeypatch, capsys, code
):
    """The disk fills (or turns read-only) while the second checkpoint is half written."""
    run = tmp_path / "run"
    real_write = Path.write_bytes

    def failing_write(self: Path, data: Any) -> int:
        if self.name.startswith(".checkpoint.") and (self.parent / CHECKPOINT).exists():
            real_write(self, bytes(data)[: len(data) // 2])
            raise OSError(code, os.strerror(code))
        return real_write(self, data)

    args = ["train", "--dataset", dataset, "--agent", "iql", "--num-steps", "60",
            "--run-dir", str(run), "--batch-size", "16", "--eval-every", "30",
            "--eval-episodes", "1", "--log-every", "10", "--checkpoint-every", "20",
            "--device", "cpu", "--no-progress", "--iql.hidden", "32"]  # fmt: skip
    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("adept: error: could not write")
    assert str(run / CHECKPOINT) in err and os.strerror(code) in err
    assert load_checkpoint(run / CHECKPOINT)["step"] == 20, "the last good checkpoint is whole"
    assert stray_files(run) == []

    monkeypatch.setattr(Path, "write_bytes", real_write)
    main(args)
    assert rows(run) == rows(reference)
    assert same_agent(run, reference)


def test_a_rename_refused_by_a_read_only_disk_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT
    save_state(path, {"step": 20})
    before = path.read_bytes()

    def read_only(src: Any, dst: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomic_module.os, "replace", read_only)
    with pytest.raises(AdeptError) as exc:
        save_state(path, {"step": 40}, keep_previous=True)
    one_line(exc, tmp_path / "checkpoint.", "Read-only file system")
    assert path.read_bytes() == before
    assert stray_files(tmp_path) == []


def small_transitions(n: int = 50, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed)
    return Transitions(
        observations=rng.normal(size=(n, 11)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=rng.normal(size=(n, 11)).astype(np.float32),
        terminals=np.zeros(n, dtype=bool),
        timeouts=np.zeros(n, dtype=bool),
        env_id="Hopper-v5",
    )


def test_a_dataset_write_that_fills_the_disk_leaves_the_previous_file(tmp_path, monkeypatch):
    path = save_hdf5(small_transitions(seed=0), tmp_path / "hopper-random.hdf5")
    before = path.read_bytes()
    real_create = h5py.Group.create_dataset
    calls = []

    def full_disk(self: h5py.Group, name: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if len(calls) == 3:  # observations and actions written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", full_disk)
    with pytest.raises(AdeptError) as exc:
        save_hdf5(small_transitions(seed=1), path)
    one_line(exc, path, "No space left on device")
    assert path.read_bytes() == before
    assert stray_files(tmp_path) == []


def test_a_flipped_bit_in_a_dataset_file_is_an_error_not_different_data(tmp_path):
    path = save_hdf5(small_transitions(), tmp_path / "hopper-random.hdf5")
    with h5py.File(path, "r") as f:
        offset = f["observations"].id.get_chunk_info(0).byte_offset
    flip(path, offset + 17, bit=3)
    with pytest.raises(AdeptError) as exc:
        load_hdf5(path)
    one_line(exc, path, "damaged")


# --- two processes on one run ----------------------------------------------------------


@pytest.mark.slow
def test_a_second_process_on_a_run_dir_is_refused_until_the_first_dies(dataset, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from adept.store.runs import RunDir\n"
         "RunDir(sys.argv[1], {'a': 1}); print('holding', flush=True); time.sleep(120)",
         str(run)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        with pytest.raises(AdeptError) as exc:
            train(config(dataset, run))
        one_line(exc, run, "in use by another process", f"pid {holder.pid}")
        assert sorted(p.name for p in run.iterdir()) == [".run.lock", "config.json"]
    finally:
        holder.kill()
        holder.wait()
    with RunDir(run, {"a": 1}) as again:  # the kernel freed the killed holder's lock
        assert again.resumed


def test_two_makes_of_one_cached_dataset_take_turns_and_make_it_once(tmp_path, monkeypatch):
    import fcntl

    import adept.datasets.generate as generate

    monkeypatch.setenv("ADEPT_DATA_DIR", str(tmp_path))
    made: list[Path] = []
    real_make, real_flock = generate._make, fcntl.flock

    def counted(name: str, out: Path, request: Any) -> Path:
        made.append(out)
        return real_make(name, out, request)

    def flock(handle: Any, operation: int) -> None:
        if operation == fcntl.LOCK_EX and not made:  # another process holds the lock: it makes
            monkeypatch.setattr(atomic_module.fcntl, "flock", real_flock)
            make_dataset("hopper-random", cached_path("hopper-random", 300), 300, progress=False)
        real_flock(handle, operation)

    monkeypatch.setattr(generate, "_make", counted)
    monkeypatch.setattr(atomic_module.fcntl, "flock", flock)
    data = load_dataset("hopper-random-n300")  # found missing, then waits for the other's turn
    assert len(made) == 1 and len(data) == 300, "the file the other process made is kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hopper-random-n300.hdf5.lock",
        "hopper-random-n300.hdf5",
    ]


def test_a_killed_writers_temporaries_are_discarded_by_the_next_lock_holder(dataset, tmp_path):
    """SIGKILL leaves an atomic write's temporary behind (tests/test_kills.py kills for real);
    whoever holds the lock next deletes it: a run dir, a dataset, a cache entry."""
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".checkpoint.4242.tmp.pt", run / ".metrics.4242.tmp.csv"]
    out = tmp_path / "d" / "hopper-random.hdf5"
    out.parent.mkdir()
    stale.append(out.parent / ".hopper-random.4242.tmp.hdf5")
    entry = entry_path("models", {"a": 1}, tmp_path / "cache")
    entry.parent.mkdir(parents=True)
    stale += [entry.parent / f".{entry.stem}.4242.tmp{suffix}" for suffix in (".pt", ".json")]
    kept = out.parent / ".other.4242.tmp.hdf5"  # another file's: not ours to delete
    for path in [*stale, kept]:
        path.write_bytes(b"half")
    with RunDir(run, {"a": 1}):
        pass
    make_dataset("hopper-random", out, 50, progress=False)
    cached("models", {"a": 1}, lambda: {"w": torch.ones(1)}, root=tmp_path / "cache")
    assert [p for p in stale if p.exists()] == [] and kept.exists()


# --- files that try to run code --------------------------------------------------------


class _Payload:
    """Pickles to a call of os.mkdir: loading it with plain pickle would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_a_malicious_checkpoint_is_refused_and_never_runs(dataset, tmp_path, monkeypatch):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    interrupted(dataset, run, monkeypatch)
    torch.save({"step": 40, "agent": _Payload(marker)}, run / CHECKPOINT)
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, run))
    one_line(exc, run / CHECKPOINT, "never unpickles code")
    with pytest.raises(AdeptError):
        load_agent(run)
    assert not marker.exists()


def test_a_malicious_cache_entry_is_refused_and_computed_again(tmp_path, capsys):
    marker = tmp_path / "pwned"
    key = {"what": "a model"}
    path = entry_path("models", key, tmp_path)
    path.parent.mkdir(parents=True)
    torch.save({"w": _Payload(marker)}, path)
    result = cached("models", key, lambda: {"w": torch.ones(2)}, root=tmp_path)
    assert torch.equal(result["w"], torch.ones(2)) and not marker.exists()
    assert "never unpickles code" in capsys.readouterr().err
    assert torch.equal(cached("models", key, lambda: {}, root=tmp_path)["w"], torch.ones(2))


def test_the_library_never_unpickles():
    """Every load in the package goes through weights_only=True, JSON or HDF5."""
    source = Path(__file__).resolve().parent.parent / "adept"
    offenders = []
    for file in source.rglob("*.py"):
        for number, line in enumerate(file.read_text().splitlines(), start=1):
            risky = ("pickle.load", "allow_pickle=True", "weights_only=False", "import dill")
            if any(word in line for word in risky) or (
                "torch.load(" in line and "weights_only=True" not in line
            ):
                offenders.append(f"{file.name}:{number}: {line.strip()}")
    assert offenders == []


# --- bad data --------------------------------------------------------------------------


def broken(arrays: dict[str, np.ndarray], fault: str) -> dict[str, np.ndarray]:
    """``arrays`` (conftest's two D4RL episodes, hopper dims) with one fault."""
    arrays = {k: v.copy() for k, v in arrays.items()}
    if fault == "nan-row":
        arrays["next_observations"][2, 4] = np.nan
    elif fault == "inf-reward":
        arrays["rewards"][1] = np.inf
    elif fault == "wrong-dims":
        arrays["observations"] = arrays["observations"][:, :9]
        arrays["next_observations"] = arrays["next_observations"][:, :9]
    elif fault == "flag-not-0-1":
        arrays["terminals"] = arrays["terminals"].astype(np.float32)
        arrays["terminals"][5] = 2.0
    elif fault == "too-long":  # no timeouts at all: 1200 steps run into one episode
        arrays = {k: np.concatenate([v] * 200)[:1200] for k, v in arrays.items()}
        arrays["terminals"][:] = False
        arrays["timeouts"][:] = False
    elif fault == "empty":
        arrays = {k: v[:0] for k, v in arrays.items()}
    elif fault == "mismatched-lengths":
        arrays["rewards"] = arrays["rewards"][:-1]
    return arrays


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("nan-row", "'next_observations' holds 1 NaN/inf"),
        ("inf-reward", "'rewards' holds 1 NaN/inf"),
        ("wrong-dims", "dims 9/3 but Hopper-v5 has 11/3"),
        ("flag-not-0-1", "'terminals' must hold flags (0 or 1), but 1 row(s)"),
        ("too-long", "1 episode(s) run longer than Hopper-v5's 1000-step limit"),
        ("empty", "holds no transitions"),
        ("mismatched-lengths", "'rewards' has 6 rows but 'observations' has 7"),
    ],
)
def test_bad_data_is_a_one_line_error_naming_the_file(tmp_path, fault, message):
    path = write_d4rl(tmp_path / "hopper_random-v2.hdf5", broken(d4rl_arrays(), fault))
    with pytest.raises(AdeptError) as exc:
        load_dataset(str(path), env_id="Hopper-v5")
    one_line(exc, path, message)


def test_actions_outside_the_box_are_clipped_with_a_count(tmp_path, capsys):
    arrays = d4rl_arrays()
    arrays["actions"][1] = [1.5, -0.2, -3.0]
    arrays["actions"][4, 0] = 1.0001
    data = load_dataset(str(write_d4rl(tmp_path / "hopper.hdf5", arrays)), env_id="Hopper-v5")
    err = capsys.readouterr().err
    assert "3 action value(s) in 2 row(s) lie outside Hopper-v5's action box; clipped" in err
    np.testing.assert_array_equal(data.actions[1], np.float32([1.0, -0.2, -1.0]))
    assert data.actions.max() <= 1.0 and data.actions.min() >= -1.0
    np.testing.assert_array_equal(data.actions[[0, 2, 3, 5, 6]], arrays["actions"][[0, 2, 3, 5, 6]])


def test_a_row_both_terminal_and_timed_out_is_kept_terminal_with_a_warning(tmp_path, capsys):
    arrays = d4rl_arrays()
    arrays["timeouts"][3] = True  # row 3 is terminal
    data = load_dataset(str(write_d4rl(tmp_path / "hopper.hdf5", arrays)), env_id="Hopper-v5")
    assert "1 row(s) are both terminal and timed out" in capsys.readouterr().err
    assert data.terminals[3] and not data.timeouts[3] and data.timeouts[6]
