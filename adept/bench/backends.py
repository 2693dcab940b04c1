"""Where cells run: local worker processes (one cell or seed pack each), or Ray tasks on a cluster
sharing the grid's folder; one cell's execution, its record and its log."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adept.base.errors import AdeptError
from adept.bench.spec import Cell, now
from adept.bench.store import LOG_TAIL_LINES, MARKER, done_fields


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run one cell, or a pack of cells that differ only by seed (one
    ``adept train --seeds`` process); JSON-serializable, sent to processes and Ray."""

    id: str
    config: dict[str, Any]
    log: str
    threads: int
    cells: dict[str, str] = field(default_factory=dict)
    """A pack's cells: cell id → run directory (empty for a single cell)."""

    def members(self) -> dict[str, str]:
        """Cell id → run directory of every cell this task runs."""
        return dict(self.cells) or {self.id: str(self.config["run_dir"])}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def pack_tasks(
    tasks: Sequence[CellTask], cells: Mapping[str, tuple[Cell, Any]], pack: int
) -> list[CellTask]:
    """``tasks`` with the cells that differ only by seed gathered, ``pack`` seeds at most, into
    tasks of one ``adept train --seeds`` process each (in seed order; a lone cell stays as it
    is). The pack's run directory is its cells' parent, so each seed trains in its own cell's
    directory, and ``for_seed`` gives back exactly each cell's own config."""
    from adept.store.runs import to_jsonable

    if pack <= 1:
        return list(tasks)
    groups: dict[tuple[str, str, str], list[CellTask]] = {}
    for task in tasks:
        cell = cells[task.id][0]
        groups.setdefault((cell.label, cell.variant, cell.agent), []).append(task)
    out: list[CellTask] = []
    for (label, variant, agent), members in groups.items():
        members.sort(key=lambda t: cells[t.id][0].seed)
        for start in range(0, len(members), pack):
            chunk = members[start : start + pack]
            if len(chunk) == 1:
                out.append(chunk[0])
                continue
            seeds = tuple(cells[t.id][0].seed for t in chunk)
            first = cells[chunk[0].id][1]
            config = dataclasses.replace(first, seeds=seeds, run_dir=Path(first.run_dir).parent)
            for t in chunk:
                if config.for_seed(cells[t.id][0].seed) != cells[t.id][1]:
                    raise AssertionError(f"pack of {t.id}: its seed's config is not the cell's")
            name = f"{label}/{variant}/{agent}/seeds{'+'.join(map(str, seeds))}"
            log = Path(chunk[0].log).with_name(name.replace("/", "__") + ".log")
            out.append(
                CellTask(
                    name,
                    to_jsonable(config),
                    str(log),
                    chunk[0].threads,
                    {t.id: str(t.config["run_dir"]) for t in chunk},
                )
            )
    return out


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if type(exc).__name__ == "AdeptError" else f"{type(exc).__name__}: {text}"


def _attempt(run_dir: Path) -> int:
    """Count this start of the cell in its run dir (Ray retries are visible to the driver)."""
    from adept.store.runs import atomic_write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    marker = run_dir / MARKER
    attempts = 0
    with contextlib.suppress(OSError, ValueError, KeyError):
        attempts = int(json.loads(marker.read_text())["attempts"])
    atomic_write_json(
        marker,
        {
            "attempts": attempts + 1,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": now(),
        },
    )
    return attempts + 1


def execute_cell(
    task: CellTask | Mapping[str, Any], redirect: bool = False
) -> dict[str, dict[str, Any]]:
    """Run one cell (or a pack of them) in this process and return the bench.json record of
    each, by cell id (never raises but for KeyboardInterrupt). ``redirect``: append this
    process's output to the task's log (Ray workers; a local worker process already writes
    there)."""
    import torch

    from adept.registry import load_plugins
    from adept.store.runs import CHECKPOINT, SUMMARY, load_checkpoint
    from adept.training import TrainConfig, config_from_json, train

    load_plugins()  # agents and methods registered outside adept, as the parent knew them

    if not isinstance(task, CellTask):
        task = CellTask(**task)
    log = Path(task.log)
    started = time.perf_counter()
    members = task.members()
    records: dict[str, dict[str, Any]] = {cell_id: {} for cell_id in members}
    with contextlib.ExitStack() as stack:
        if redirect:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(log.open("a", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        try:
            config = config_from_json(TrainConfig, task.config)
            torch.set_num_threads(task.threads)
            for cell_id, run_dir in members.items():
                records[cell_id]["attempts"] = attempt = _attempt(Path(run_dir))
                print(f"[{now()}] cell {cell_id}: attempt {attempt}", flush=True)
                checkpoint = Path(run_dir) / CHECKPOINT
                if checkpoint.exists() and not (Path(run_dir) / SUMMARY).exists():
                    step = load_checkpoint(checkpoint)["step"]
                    print(f"[{now()}] cell {cell_id}: resuming from step {step}", flush=True)
            train(config)
            error = "the run ended without its summary"
        except Exception as exc:  # one failed cell never stops the grid
            traceback.print_exc()
            print(f"adept-bench: error: {_one_line(exc)}", file=sys.stderr, flush=True)
            error = _one_line(exc)
    wall_time = round(time.perf_counter() - started, 3)
    for cell_id, run_dir in members.items():  # a failed pack's finished seeds are done
        record = records[cell_id]
        summary = Path(run_dir) / SUMMARY
        if summary.exists():
            record.update(done_fields(json.loads(summary.read_text())))
        else:
            record.update(state="failed", error=error, log_tail=_tail(log))
        record["wall_time"] = wall_time
    return records


def worker_main(argv: Sequence[str]) -> int:
    """``python -m adept.bench TASK_JSON``: a local worker process runs one cell (or pack)."""
    task = CellTask(**json.loads(argv[0]))
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    try:
        records = execute_cell(task)
    except KeyboardInterrupt:
        return 130
    return 0 if all(r["state"] == "done" for r in records.values()) else 1


Started = Callable[[str], None]
Finished = Callable[[str, dict[str, Any]], None]


def _env_threads(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def run_local(
    tasks: Sequence[CellTask], workers: int, started: Started, finished: Finished
) -> None:
    """Each cell in its own Python process, ``workers`` at a time; on Ctrl-C the running
    cells are interrupted (they resume from their last checkpoint next time)."""
    pending = list(tasks)
    running: dict[str, tuple[subprocess.Popen[bytes], CellTask, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < workers:
                task = pending.pop(0)
                Path(task.log).parent.mkdir(parents=True, exist_ok=True)
                with open(task.log, "ab") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "adept.bench", task.to_json()],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=_env_threads(task.threads),
                    )
                running[task.id] = (proc, task, time.perf_counter())
                for cell_id in task.members():
                    started(cell_id)
            for task_id, (proc, task, t0) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[task_id]
                wall_time = time.perf_counter() - t0
                for cell_id, run_dir in task.members().items():
                    finished(cell_id, _local_record(proc.returncode, task, run_dir, wall_time))
            time.sleep(0.1)
    except KeyboardInterrupt:
        for proc, _, _ in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)  # SIGINT may be ignored (a background start)
        deadline = time.monotonic() + 30
        for proc, _, _ in running.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
        raise


def _local_record(
    returncode: int, task: CellTask, cell_dir: str, wall_time: float
) -> dict[str, Any]:
    """The record of the cell in ``cell_dir`` after its task's process exited."""
    from adept.store.runs import SUMMARY

    run_dir = Path(cell_dir)
    record: dict[str, Any] = {"wall_time": round(wall_time, 3)}
    with contextlib.suppress(OSError, ValueError, KeyError):
        record["attempts"] = int(json.loads((run_dir / MARKER).read_text())["attempts"])
    if (run_dir / SUMMARY).exists():  # a failed pack's finished seeds are done
        record.update(done_fields(json.loads((run_dir / SUMMARY).read_text())))
        return record
    tail = _tail(Path(task.log))
    errors = [line for line in tail.splitlines() if line.startswith("adept-bench: error: ")]
    if errors:
        error = errors[-1].removeprefix("adept-bench: error: ")
    elif returncode < 0:
        error = f"the cell's process was killed by {signal.Signals(-returncode).name}"
    else:
        error = f"the cell's process exited with status {returncode}"
    record.update(state="failed", error=error, log_tail=tail)
    return record


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise AdeptError("--backend ray needs Ray; pip install 'adept-rl[ray]'") from None
    return ray


def check_ray_address(address: str | None) -> None:
    """Fail fast on a HOST:PORT nothing listens on (Ray itself waits a long time)."""
    if address in (None, "auto", "local") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise AdeptError(f"--address must be auto or HOST:PORT, got '{address}'")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise AdeptError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            "'ray start --head' or give the head node's address"
        ) from None


def run_ray(
    tasks: Sequence[CellTask],
    address: str | None,
    gpus_per_cell: float | None,
    max_retries: int,
    started: Started,
    finished: Finished,
    num_cpus: int | None = None,
) -> None:
    """Each cell a Ray task (``num_cpus`` = its threads), retried ``max_retries`` times when
    its worker dies; a retried cell resumes from its checkpoint. Needs the ray extra."""
    ray = import_ray()
    from adept.data.cache import data_dir

    # workers on other nodes do not inherit this environment: name the shared dataset cache
    init: dict[str, Any] = {
        "log_to_driver": False,
        "include_dashboard": False,
        "runtime_env": {"env_vars": {"ADEPT_DATA_DIR": str(data_dir().absolute())}},
    }
    if address in (None, "local"):
        init["num_cpus"] = num_cpus
    else:
        init["address"] = address
    try:
        ray.init(**init)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise AdeptError(f"cannot connect to Ray at {address} ({_one_line(exc)})") from None
    try:
        gpus = gpus_per_cell
        if gpus is None:
            gpus = 0.25 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        remote = ray.remote(_ray_cell)
        pending: dict[Any, CellTask] = {}
        submitted = time.time()
        waiting = {
            cell_id: Path(run_dir) / MARKER
            for task in tasks
            for cell_id, run_dir in task.members().items()
        }
        for task in tasks:
            ref = remote.options(
                num_cpus=task.threads, num_gpus=gpus, max_retries=max_retries
            ).remote(dataclasses.asdict(task))
            pending[ref] = task
        while pending:
            # Ray says nothing when a task starts: a cell is running once it marks its start
            for cell_id, marker in list(waiting.items()):
                with contextlib.suppress(OSError):
                    if marker.stat().st_mtime >= submitted:
                        del waiting[cell_id]
                        started(cell_id)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                task = pending.pop(ref)
                for cell_id in task.members():
                    if waiting.pop(cell_id, None) is not None:
                        started(cell_id)
                try:
                    records = ray.get(ref)
                except Exception as exc:  # the task died more than max_retries times
                    lost = {
                        "state": "failed",
                        "error": f"Ray task lost: {_one_line(exc)}",
                        "log_tail": _tail(Path(task.log)),
                    }
                    records = {cell_id: dict(lost) for cell_id in task.members()}
                for cell_id, record in records.items():
                    finished(cell_id, record)
    except KeyboardInterrupt:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        ray.shutdown()


def _ray_cell(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return execute_cell(task, redirect=True)
