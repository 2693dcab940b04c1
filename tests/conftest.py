"""Fixtures every test module gets: an isolated data folder, fp32 and no compile, and a small
D4RL-layout file. Helpers that tests import are in :mod:`tests.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import d4rl_arrays, write_d4rl


@pytest.fixture
def d4rl_file(tmp_path: Path) -> Path:
    return write_d4rl(tmp_path / "hopper_random-v2.hdf5", d4rl_arrays(), {"algorithm": "random"})


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's dataset cache or Minari folder from a test."""
    monkeypatch.setenv("ADEPT_DATA_DIR", str(tmp_path / "adept-data"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    # --precision auto means fp32 in every test, and in the processes tests start: the suite's
    # numbers must not depend on whether this CPU has bf16 (a test that wants bf16 asks for it)
    monkeypatch.setenv("ADEPT_PRECISION", "fp32")
    # --compile auto means off: the suite's runs do not pay compile times (a test that wants a
    # compiled update asks for it)
    monkeypatch.setenv("ADEPT_COMPILE", "off")
