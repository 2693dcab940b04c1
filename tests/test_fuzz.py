"""Fuzzing the dataset loader: random D4RL-layout files, valid and subtly broken, through
``load_dataset``. Whatever the file, the answer is a valid ``Transitions`` or an ``AdeptError``
of one line — never another exception, never a hang, never a file left behind.

Hypothesis draws a valid file (1 to 40 rows, Hopper's dims, optional log-probs and metadata)
and then up to four faults from the list in ``FAULTS``; derandomized, so the suite is
deterministic (``ADEPT_FUZZ_EXAMPLES`` sets how many files, default 150).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adept.base.errors import AdeptError
from adept.data.transitions import Transitions
from adept.datasets.registry import load_dataset

EXAMPLES = int(os.environ.get("ADEPT_FUZZ_EXAMPLES", "150"))
KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
ALL_KEYS = (*KEYS, "infos/action_log_probs")
FAULTS = (
    "drop",  # a required key missing
    "dtype",  # a column of another type: ints, float64, strings, complex, a compound type
    "length",  # a column with more or fewer rows than the others
    "nonfinite",  # NaN or ±inf in a float column
    "extra",  # extra datasets and groups, D4RL's infos/* among them
    "group",  # a required key that is a group, not a dataset
    "huge",  # a column that declares 2^20 to 2^40 rows and stores none of them
    "shape",  # a column of another rank or width
    "flags",  # terminals or timeouts other than 0/1
    "metadata",  # a metadata group of odd attributes, or a dataset named metadata
    "empty",  # no rows at all
)


@st.composite
def files(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """A valid file's arrays and metadata, and the faults to write into it."""
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays: dict[str, Any] = {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_observations": rng.normal(size=(n, 11)).astype(np.float32),
        "terminals": rng.random(n) < 0.1,
        "timeouts": np.zeros(n, dtype=bool),
    }
    if draw(st.booleans()):
        arrays["infos/action_log_probs"] = rng.normal(size=n).astype(np.float32)
    metadata = draw(st.sampled_from([None, {"env_id": "Hopper-v5"}, {"kind": "random"}]))
    faults = draw(
        st.lists(st.tuples(st.sampled_from(FAULTS), st.integers(0, 2**16)), min_size=0, max_size=4)
    )
    return {"arrays": arrays, "metadata": metadata}, faults


def write(path: Path, spec: dict[str, Any], faults: list[tuple[str, Any]]) -> None:
    """Write the file of ``spec`` with ``faults`` applied (in the D4RL layout)."""
    arrays: dict[str, Any] = dict(spec["arrays"])
    groups: list[str] = []
    huge: dict[str, tuple[int, ...]] = {}
    metadata: Any = spec["metadata"]
    for fault, seed in faults:
        rng = np.random.default_rng(seed)
        present = [k for k in ALL_KEYS if k in arrays]
        key = present[rng.integers(len(present))] if present else None
        if fault == "drop" and key is not None:
            del arrays[key]
        elif fault == "dtype" and key is not None:
            kind = rng.integers(5)
            value = np.asarray(arrays[key])
            if kind == 0:
                arrays[key] = value.astype(np.float64)
            elif kind == 1:
                arrays[key] = (value * 3).astype(np.int64)
            elif kind == 2:
                arrays[key] = value.astype("S8")
            elif kind == 3:
                arrays[key] = value.astype(np.complex64)
            else:
                compound = np.zeros(value.shape[:1], dtype=[("a", "f4"), ("b", "i4")])
                arrays[key] = compound
        elif fault == "length" and key is not None:
            value = np.asarray(arrays[key])
            arrays[key] = (
                value[: rng.integers(len(value))]
                if rng.random() < 0.5 and len(value)
                else np.concatenate([value, np.repeat(value[:1], rng.integers(1, 5), axis=0)])
            )
        elif fault == "nonfinite":
            floats = [k for k in present if np.asarray(arrays[k]).dtype.kind == "f"]
            if floats:
                name = floats[rng.integers(len(floats))]
                value = np.array(arrays[name], copy=True)
                if value.size:
                    value.flat[rng.integers(value.size)] = [np.nan, np.inf, -np.inf][
                        rng.integers(3)
                    ]
                arrays[name] = value
        elif fault == "extra":
            arrays[f"infos/qpos{rng.integers(9)}"] = rng.normal(size=(3, 2))
            groups.append(f"extra{rng.integers(9)}/nested")
        elif fault == "group" and key is not None:
            del arrays[key]
            groups.append(key)
        elif fault == "huge" and key is not None:
            value = np.asarray(arrays.pop(key))
            huge[key] = (2 ** int(rng.integers(20, 41)), *value.shape[1:])
        elif fault == "shape" and key is not None:
            value = np.asarray(arrays[key])
            arrays[key] = value[:, None] if value.ndim == 1 else value[:, : rng.integers(0, 3)]
        elif fault == "flags":
            name = ["terminals", "timeouts"][rng.integers(2)]
            if name in arrays and len(arrays[name]):
                value = np.asarray(arrays[name]).astype(np.int64)
                value[rng.integers(len(value))] = int(rng.integers(2, 9))
                arrays[name] = value
        elif fault == "metadata":
            metadata = "dataset" if rng.random() < 0.5 else {"env_id": 7, "x": "[not json"}
        elif fault == "empty":
            arrays = {k: np.asarray(v)[:0] for k, v in arrays.items()}
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f.create_dataset(name, data=value)
        for name in groups:
            if name not in f:
                f.create_group(name)
        for name, shape in huge.items():
            if name not in f:
                f.create_dataset(name, shape=shape, dtype="f4", chunks=(1024, *shape[1:]))
        if metadata == "dataset":
            if "metadata" not in f:
                f.create_dataset("metadata", data=np.arange(3))
        elif isinstance(metadata, dict):
            group = f.require_group("metadata")
            for name, value in metadata.items():
                group.attrs[name] = value


@contextmanager
def no_hang(seconds: int) -> Iterator[None]:
    def hung(*_: object) -> None:
        raise TimeoutError(f"load_dataset took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files())
def test_any_d4rl_layout_file_loads_or_is_a_one_line_error(tmp_path_factory, drawn):
    spec, faults = drawn
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "fuzzed.hdf5"
    write(path, spec, faults)
    before = sorted(folder.iterdir())
    os.environ["ADEPT_DATA_DIR"] = str(folder / "cache")
    try:
        with no_hang(30):
            data = load_dataset(str(path), progress=False)
    except AdeptError as exc:
        assert "\n" not in str(exc) and str(exc), f"not one line: {exc!r}"
        assert str(path) in str(exc), f"the error does not name the file: {exc}"
    else:
        assert isinstance(data, Transitions) and len(data) > 0
        assert data.observations.dtype == np.float32 and data.observations.ndim == 2
        assert np.isfinite(data.observations).all() and np.isfinite(data.rewards).all()
        assert data.terminals.dtype == np.bool_ and len(data.terminals) == len(data)
    finally:
        os.environ.pop("ADEPT_DATA_DIR", None)
    assert sorted(folder.iterdir()) == before, "loading left a file behind"


def test_the_fuzzer_writes_valid_files_that_load(tmp_path):
    """Without faults, every drawn file loads (so a fault, not the fuzzer, makes the errors)."""
    rng = np.random.default_rng(0)
    n = 12
    spec = {
        "arrays": {
            "observations": rng.normal(size=(n, 11)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": rng.normal(size=(n, 11)).astype(np.float32),
            "terminals": np.zeros(n, dtype=bool),
            "timeouts": np.zeros(n, dtype=bool),
        },
        "metadata": {"env_id": "Hopper-v5"},
    }
    write(tmp_path / "ok.hdf5", spec, [])
    assert len(load_dataset(str(tmp_path / "ok.hdf5"))) == n
    write(tmp_path / "huge.hdf5", spec, [("huge", 1)])
    with pytest.raises(AdeptError, match=r"huge\.hdf5"):
        load_dataset(str(tmp_path / "huge.hdf5"))


def test_columns_that_declare_more_rows_than_memory_holds_are_refused_unread(tmp_path):
    """A few kB on disk can declare terabytes (chunks never written read as zeros): reading
    them would exhaust the memory, so the declared size is checked first."""
    path = tmp_path / "declares-2e12-rows.hdf5"
    rows = 2**40
    with h5py.File(path, "w") as f:
        for key, width in (("observations", 11), ("actions", 3), ("next_observations", 11)):
            f.create_dataset(key, shape=(rows, width), dtype="f4", chunks=(1024, width))
        for key in ("rewards", "terminals", "timeouts"):
            f.create_dataset(key, shape=(rows,), dtype="f4", chunks=(1024,))
    assert path.stat().st_size < 100_000
    with no_hang(10), pytest.raises(AdeptError) as exc:
        load_dataset(str(path))
    message = str(exc.value)
    assert "\n" not in message and str(path) in message and "more than half" in message
