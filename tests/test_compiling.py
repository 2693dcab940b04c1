"""``--compile``: what ``auto`` resolves to, compiled updates equal eager ones to float rounding,
and a run asked to compile does (its losses go through torch.compile) and resumes eagerly."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch._dynamo.utils import counters

from adept.agents import AGENTS, AgentSpec
from adept.base import compiling
from adept.base.errors import AdeptError
from adept.data import ReplayBuffer
from adept.datasets import load_dataset
from adept.training import train
from tests.helpers import rows, stopped_at
from tests.test_methods import config
from tests.test_methods import dataset as dataset

CPU = torch.device("cpu")


def test_auto_compiles_the_agents_measured_faster_in_long_runs(monkeypatch):
    monkeypatch.delenv(compiling.ENV, raising=False)
    monkeypatch.setattr(compiling, "has_compiler", lambda: True)
    assert compiling.resolve("auto", CPU, "iql", 50_000)
    assert compiling.resolve("auto", CPU, "bc", compiling.MIN_STEPS)
    assert not compiling.resolve("auto", CPU, "iql", compiling.MIN_STEPS - 1), "too short"
    assert not compiling.resolve("auto", CPU, "sac", 50_000), "measured slower compiled"
    assert not compiling.resolve("auto", CPU, "td3bc", 50_000), "measured slower compiled"
    assert not compiling.resolve("auto", torch.device("cuda"), "iql", 50_000), "not measured"
    assert compiling.resolve("on", CPU, "sac", 10)
    assert not compiling.resolve("off", CPU, "iql", 10**6)
    monkeypatch.setattr(compiling, "has_compiler", lambda: False)
    assert not compiling.resolve("auto", CPU, "iql", 50_000), "no compiler: auto stays eager"
    with pytest.raises(AdeptError, match=r"^--compile on needs a C\+\+ compiler.*--compile off"):
        compiling.resolve("on", CPU, "iql", 50_000)
    monkeypatch.setenv(compiling.ENV, "on")  # the error names what asked for the compile
    with pytest.raises(AdeptError, match=r"^\$ADEPT_COMPILE=on .*needs a C\+\+.*unset \$ADEPT"):
        compiling.resolve("auto", CPU, "iql", 50_000)


def test_a_cpu_compile_needs_a_compiler_and_pythons_headers(monkeypatch, tmp_path):
    monkeypatch.setattr(compiling.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    monkeypatch.setattr(compiling.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert not compiling.has_compiler(), "no Python.h: inductor's CPU kernels cannot build"
    (tmp_path / "Python.h").touch()
    assert compiling.has_compiler()
    monkeypatch.setattr(compiling.shutil, "which", lambda name: None)
    assert not compiling.has_compiler(), "no C++ compiler"


#: The tests that compile need what inductor needs on a CPU (.ci/run installs it where it can).
needs_compiler = pytest.mark.skipif(
    not compiling.has_compiler(), reason="no C++ compiler or Python headers for torch.compile"
)


def test_the_environment_says_what_auto_means(monkeypatch):
    monkeypatch.setattr(compiling, "has_compiler", lambda: True)
    monkeypatch.setenv(compiling.ENV, "on")
    assert compiling.resolve("auto", CPU, "sac", 10)
    assert not compiling.resolve("off", CPU, "sac", 10), "an explicit choice wins"
    monkeypatch.setenv(compiling.ENV, "off")
    assert not compiling.resolve("auto", CPU, "iql", 50_000)
    monkeypatch.setenv(compiling.ENV, "yes")
    with pytest.raises(AdeptError, match="ADEPT_COMPILE must be on or off"):
        compiling.resolve("auto", CPU, "iql", 50_000)


@pytest.mark.slow
@needs_compiler
def test_a_compiled_update_equals_the_eager_one_to_float_rounding(dataset):
    data = load_dataset(dataset, progress=False)
    buffer = ReplayBuffer.from_transitions(data, device=CPU, seed=0)
    spec = AgentSpec.from_data(data, 100, CPU)
    eager, compiled = (AGENTS["iql"](spec) for _ in range(2))
    compiled.load_state_dict(eager.state_dict())
    compiled.compile()
    graphs = counters["stats"]["unique_graphs"]
    for _ in range(5):
        batch = buffer.sample(64)
        a, b = eager.update(batch), compiled.update(batch)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    assert counters["stats"]["unique_graphs"] > graphs, "the losses were not compiled"
    weights_a, weights_b = eager.state_dict(), compiled.state_dict()
    for name in ("actor", "critic", "critic_target", "value"):
        for key, value in weights_a[name].items():
            torch.testing.assert_close(weights_b[name][key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@needs_compiler
def test_a_run_asked_to_compile_compiles_and_resumes_eagerly(dataset, tmp_path, monkeypatch):
    eager = config(dataset, tmp_path / "eager", agent="iql", method="none")
    train(eager)
    run = replace(eager, run_dir=tmp_path / "run", compile="on")
    graphs = counters["stats"]["unique_graphs"]
    stopped_at(run, 5, monkeypatch)
    assert counters["stats"]["unique_graphs"] > graphs, "--compile on ran eagerly"
    train(replace(run, compile="off"))  # compile may change on a resume
    expected, got = rows(tmp_path / "eager"), rows(tmp_path / "run")
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for want, have in zip(expected, got, strict=True):
        for key, value in want.items():
            if key.startswith("train/") and value:
                assert float(have[key]) == pytest.approx(float(value), rel=1e-3, abs=1e-5), key
