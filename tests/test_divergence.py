"""Divergence: NaN/inf injected into each component of a run — the agent's loss and weights,
the world model's weights, its generated rows, the importance weights of its re-fit — stops
the run within one log interval with a one-line error naming the component and the step, the
last good checkpoint untouched and divergence.json written; or, with --on-divergence
rollback, rolls back with the failing component's learning rates scaled and finishes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import adept.training.run as run_module
import adept.world_models.importance as importance_module
from adept.base.errors import AdeptError
from adept.datasets.generate import make_dataset
from adept.store.runs import CHECKPOINT, DIVERGENCE, load_checkpoint
from adept.training import TrainConfig, train
from tests.helpers import changed, rows
from tests.test_faults import config as faults_config
from tests.test_methods import TINY

Poison = Callable[[Any, Any, dict[str, torch.Tensor]], None]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=1000, seed=0, progress=False))


def config(dataset: str, run_dir: Path, **kw: Any) -> TrainConfig:
    """test_faults' small IQL run (60 steps, logs every 10, checkpoints every 20), with
    test_methods' tiny world model for the model-based methods."""
    return faults_config(dataset, run_dir, **{"adept": TINY, **kw})


def poisoned(monkeypatch: pytest.MonkeyPatch, poison: Poison, at: set[int]) -> None:
    """Run ``poison(agent, method, metrics)`` right after the agent updates of steps ``at``."""
    real_fit = run_module.fit

    def fit(agent, method, start, num_steps, *contexts):
        for step, metrics in real_fit(agent, method, start, num_steps, *contexts):
            if step in at:
                poison(agent, method, metrics)
            yield step, metrics

    monkeypatch.setattr(run_module, "fit", fit)


def nan_loss(agent: Any, method: Any, metrics: dict[str, torch.Tensor]) -> None:
    metrics["train/q_loss"] = torch.tensor(math.nan)


def inf_actor_weight(agent: Any, method: Any, metrics: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        next(agent.actor.parameters()).view(-1)[0] = math.inf


def nan_world_model_weight(agent: Any, method: Any, metrics: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        next(method.world_model.parameters()).view(-1)[3] = math.nan


def nan_generated_rows(agent: Any, method: Any, metrics: dict[str, torch.Tensor]) -> None:
    method.model_buffer.next_observations[: method.model_buffer.size, 0] = math.nan


def step_and_component(message: str) -> tuple[int, str]:
    words = message.split("diverged at step ")[1]
    step = int(words.split(":")[0])
    component = words.split("non-finite values in the ")[1].split(" ")[0]
    return step, component


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "poison", "component", "place"),
    [
        ("none", nan_loss, "agent", "train/q_loss"),
        ("none", inf_actor_weight, "agent", "iql.actor."),
        ("adept", nan_world_model_weight, "method", "method.world_model.model."),
        ("diffusion", nan_generated_rows, "method", "method.model_buffer.data.next_observations"),
    ],
)
def test_a_poisoned_component_stops_the_run_within_one_log_interval(
    dataset, tmp_path, monkeypatch, method, poison, component, place
):
    run = tmp_path / "run"
    at = 33  # after the checkpoint at 20, between the logs at 30 and 40
    poisoned(monkeypatch, poison, {at})
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, run, method=method))
    message = str(exc.value)
    assert "\n" not in message and place in message and str(run / DIVERGENCE) in message
    step, blamed = step_and_component(message)
    assert blamed == component and at <= step <= at + 10, message
    state = load_checkpoint(run / CHECKPOINT)
    assert state["step"] == 20, "the last good checkpoint is kept as it was"
    event = json.loads((run / DIVERGENCE).read_text())["events"][-1]
    assert event["step"] == step and event["component"] == component
    assert event["action"] == "stopped" and event["last_good_checkpoint"] == 20
    assert any(place in where for where in event["nonfinite"])


def test_nan_importance_weights_are_blamed_on_the_world_model(dataset, tmp_path, monkeypatch):
    real = importance_module.importance_weights

    def nan_weights(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        out.weights[0] = math.nan
        return out

    monkeypatch.setattr(importance_module, "importance_weights", nan_weights)
    adept = changed(TINY, refit__loss="weighted")
    with pytest.raises(AdeptError) as exc:
        train(config(dataset, tmp_path / "run", method="adept", adept=adept))
    step, blamed = step_and_component(str(exc.value))
    assert blamed == "method" and step <= 10  # the first re-fit is at step 5, the first log 10


@pytest.mark.slow
def test_a_healthy_run_is_not_stopped_and_logs_no_rollbacks(dataset, tmp_path):
    train(config(dataset, tmp_path / "run", method="adept", on_divergence="rollback"))
    assert not (tmp_path / "run" / DIVERGENCE).exists()
    assert "divergence/rollbacks" not in rows(tmp_path / "run")[0]


def lr_of(state: dict[str, Any], part: str) -> float:
    return float(state["agent"][part]["param_groups"][0]["lr"])


@pytest.mark.slow
def test_rollback_restarts_from_the_last_good_checkpoint_with_lower_learning_rates(
    dataset, tmp_path, monkeypatch
):
    reference = tmp_path / "reference"
    train(config(dataset, reference))
    run = tmp_path / "run"
    calls = {"n": 0}
    real = inf_actor_weight

    def once(agent: Any, method: Any, metrics: dict[str, torch.Tensor]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            real(agent, method, metrics)

    poisoned(monkeypatch, once, {33})  # once: the rolled-back run passes step 33 clean
    summary = train(config(dataset, run, on_divergence="rollback"))
    assert summary["steps"] == 60
    logged = rows(run)
    assert [int(r["step"]) for r in logged] == [10, 20, 30, 40, 50, 60]
    assert rows(reference)[:2] == [
        {k: v for k, v in r.items() if k != "divergence/rollbacks"} for r in logged[:2]
    ], "the rows before the rollback are the reference run's"
    assert all(r["divergence/rollbacks"] == "1.0" for r in logged[2:])
    final, before = load_checkpoint(run / CHECKPOINT), load_checkpoint(reference / CHECKPOINT)
    for part in ("actor_opt", "critic_opt", "value_opt"):
        assert lr_of(final, part) == pytest.approx(0.5 * lr_of(before, part)), part
    assert final["divergence"]["events"] == [{"step": 40, "component": "agent", "lr_factor": 0.5}]
    event = json.loads((run / DIVERGENCE).read_text())["events"][0]
    assert event["action"] == "rolled back" and event["last_good_checkpoint"] == 20


def test_rollbacks_stop_after_the_limit(dataset, tmp_path, monkeypatch):
    poisoned(monkeypatch, inf_actor_weight, {33})  # every pass through step 33 diverges
    with pytest.raises(AdeptError, match=r"stopped \(2 rollbacks already"):
        train(config(dataset, tmp_path / "run", on_divergence="rollback", max_rollbacks=2))
    events = json.loads((tmp_path / "run" / DIVERGENCE).read_text())["events"]
    assert [e["action"] for e in events] == ["rolled back", "rolled back", "stopped"]


@pytest.mark.slow
def test_a_method_that_trains_nothing_during_the_run_cannot_roll_back(
    dataset, tmp_path, monkeypatch
):
    poisoned(monkeypatch, nan_generated_rows, {33})
    with pytest.raises(AdeptError, match=r"the method \(diffusion\) has no learning rate"):
        train(config(dataset, tmp_path / "run", method="diffusion", on_divergence="rollback"))


def test_divergence_options_are_checked(dataset, tmp_path):
    with pytest.raises(AdeptError, match="--divergence-lr-factor must be in"):
        train(config(dataset, tmp_path / "a", divergence_lr_factor=1.5))
    with pytest.raises(AdeptError, match="--max-rollbacks must be 0 or more"):
        train(config(dataset, tmp_path / "b", max_rollbacks=-1))
