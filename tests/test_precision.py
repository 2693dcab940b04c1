"""``--precision bf16``: the training steps run under bf16 autocast (and nothing else does), the
runs stay finite and resume exactly, and cached models are kept apart from fp32 ones."""

from __future__ import annotations

import importlib
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import adept.training.run as run_module
from adept.agents import AGENTS
from adept.base import precision
from adept.base.errors import AdeptError
from adept.methods import METHODS
from adept.store.artifacts import artifacts_dir
from adept.store.runs import load_checkpoint
from adept.training import TrainConfig, train
from tests.helpers import changed, rows
from tests.test_methods import config, train_interrupted_then_resumed
from tests.test_methods import dataset as dataset


def test_auto_is_each_parts_device_default_and_bf16_casts_the_products(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("ADEPT_PRECISION")
    for part in ("agent", "model"):
        default = precision.AUTO["cpu"][part] if precision.native_bf16(cpu) else "fp32"
        assert precision.resolve("auto", cpu, part) == default
        assert precision.resolve("bf16", cpu, part) == "bf16"
        assert precision.resolve("fp32", cpu, part) == "fp32"
    layer = torch.nn.Linear(4, 4)
    with precision.autocast("bf16", cpu, "agent")():
        assert precision.active() == "bfloat16"
        assert layer(torch.ones(2, 4)).dtype == torch.bfloat16
    with precision.autocast("fp32", cpu, "model")():
        assert precision.active() is None
        assert layer(torch.ones(2, 4)).dtype == torch.float32


def test_auto_takes_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("ADEPT_PRECISION")
    monkeypatch.setitem(precision.AUTO, "cpu", {"agent": "bf16", "model": "fp32"})
    for native, agent in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(
            precision, "_cpu_flags", lambda n=native: frozenset({"avx512_bf16"} if n else {"avx2"})
        )
        assert precision.native_bf16(cpu) is native
        assert precision.resolve("auto", cpu, "agent") == agent
        assert precision.resolve("auto", cpu, "model") == "fp32"
        assert precision.resolve("bf16", cpu, "model") == "bf16", "asked for, it is given"
    for forced in ("fp32", "bf16"):  # $ADEPT_PRECISION decides what auto means
        monkeypatch.setenv("ADEPT_PRECISION", forced)
        assert {precision.resolve("auto", cpu, p) for p in ("agent", "model")} == {forced}
    monkeypatch.setenv("ADEPT_PRECISION", "fp16")
    with pytest.raises(AdeptError, match="ADEPT_PRECISION must be fp32 or bf16"):
        precision.resolve("auto", cpu, "agent")


@pytest.mark.slow
def test_auto_runs_each_part_in_its_own_precision(dataset, tmp_path, monkeypatch):
    """With auto meaning bf16 for the agent and fp32 for the models, ADEPT's agent updates run
    under bf16 while its world model pre-trains, rolls out and re-fits in fp32 (and is the fp32
    run's cache entry)."""
    fp32 = run_config(dataset, tmp_path / "fp32", "iql", "adept")
    train(fp32)
    cached = sorted(p for p in artifacts_dir().rglob("*.pt"))
    monkeypatch.setitem(precision.AUTO, "cpu", {"agent": "bf16", "model": "fp32"})
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    monkeypatch.delenv("ADEPT_PRECISION")
    seen: dict[str, set[str | None]] = {"update": set(), "setup": set(), "after_update": set()}
    agent_cls, method_cls = AGENTS["iql"], METHODS["adept"]

    def spy(cls: type, name: str, key: str) -> None:
        real = getattr(cls, name)

        def recorded(self, *args, **kwargs):
            seen[key].add(precision.active())
            return real(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, recorded)

    spy(agent_cls, "update", "update")
    spy(method_cls, "setup", "setup")
    spy(method_cls, "after_update", "after_update")
    train(replace(fp32, run_dir=tmp_path / "auto", precision="auto"))
    assert seen == {"update": {"bfloat16"}, "setup": {None}, "after_update": {None}}
    assert sorted(p for p in artifacts_dir().rglob("*.pt")) == cached, "the fp32 model, reused"
    a, b = weights(tmp_path / "fp32"), weights(tmp_path / "auto")
    assert any(not torch.equal(a[k], b[k]) for k in a), "the agent's bf16 changed nothing"


def test_steps_inside_one_bf16_context_train_on_the_current_weights():
    """Pre-training runs all its optimizer steps inside one context: each forward must use
    the weights as they are now, not a bf16 copy cached at the first step."""
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x @ torch.randn(8, 1)
    layer = torch.nn.Linear(8, 1)
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05)
    losses = []
    with precision.autocast("bf16", torch.device("cpu"), "model")():
        for _ in range(100):
            loss = (layer(x).float() - y).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    assert losses[-1] < 0.05 * losses[0]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["agent"]["actor"]


def run_config(dataset: str, run: Path, agent: str, method: str) -> TrainConfig:
    """test_methods' tiny run; SynthER, PGD and DyDiff with their own tests' tiny models."""
    if method in ("synther", "pgd", "dydiff"):
        module = importlib.import_module(f"tests.test_{method}")
        return replace(module.run_config(dataset, run), agent=agent)
    base = config(dataset, run, agent=agent, method=method)
    return replace(
        base, adept=changed(base.adept, diagnostics__true_error_every=1)
    )  # the MuJoCo check too


@pytest.mark.slow
@pytest.mark.parametrize(
    ("agent", "method"),
    [
        ("iql", "adept"),
        ("sac", "diffusion"),
        ("td3bc", "synther"),
        ("bc", "pgd"),
        ("iql", "dydiff"),
        ("sac", "none"),
        ("td3bc", "none"),
    ],
)
def test_bf16_runs_stay_finite_and_train_in_bf16(dataset, tmp_path, monkeypatch, agent, method):
    fp32 = run_config(dataset, tmp_path / "fp32", agent, method)
    train(fp32)
    seen: list[str | None] = []
    real_evaluate = run_module.evaluate

    def evaluate(*args, **kwargs):
        seen.append(precision.active())
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(run_module, "evaluate", evaluate)
    train(replace(fp32, run_dir=tmp_path / "bf16", precision="bf16"))
    assert seen and all(dtype is None for dtype in seen), "evaluation runs in fp32"
    a, b = weights(tmp_path / "fp32"), weights(tmp_path / "bf16")
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in b.values())
    assert any(not torch.equal(a[k], b[k]) for k in a), "bf16 changed nothing: not in force"
    logged = rows(tmp_path / "bf16")
    assert all(v == "" or math.isfinite(float(v)) for r in logged for v in r.values())


@pytest.mark.slow
@pytest.mark.parametrize(("agent", "method"), [("iql", "adept"), ("td3bc", "synther")])
def test_bf16_models_are_cached_apart_and_a_bf16_run_resumes_exactly(
    dataset,
    tmp_path,
    monkeypatch,
    agent,
    method,
):
    """SynthER's resume fetches its generator and samples from the cache again: under bf16 it
    must find the bf16 ones, not the fp32 ones of the same settings."""

    def make(name: str, prec: str) -> TrainConfig:
        base = run_config(dataset, tmp_path / name, agent, method)
        return replace(base, num_steps=20, eval_every=20, precision=prec)

    def entries() -> list[Path]:
        return [p for p in artifacts_dir().rglob("*") if p.suffix in (".pt", ".hdf5")]

    train(make("fp32", "fp32"))
    made = len(entries())
    train(make("full", "bf16"))
    assert len(entries()) == 2 * made, "bf16 models are other cache entries than fp32 ones"
    train_interrupted_then_resumed(make("part", "bf16"), 13, monkeypatch)
    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    assert len(entries()) == 2 * made
