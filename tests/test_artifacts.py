import functools
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import adept.methods.model_based as methods_module
from adept.agents import AgentSpec, IQLConfig, SACConfig
from adept.base.rng import seed_everything
from adept.data import ReplayBuffer, load_hdf5
from adept.data.transitions import Transitions
from adept.datasets.generate import make_dataset
from adept.methods import ModelBasedConfig, make_method
from adept.store.artifacts import artifacts_dir, cached, entry_path
from adept.store.runs import load_checkpoint
from adept.training import TrainConfig, make_agent, train
from adept.world_models.pretrain import pretrain_key
from tests.helpers import rows, tensors
from tests.test_methods import TINY as METHODS_TINY
from tests.test_methods import config

TINY = replace(METHODS_TINY, true_error_every=0)
CPU = torch.device("cpu")
SMALL_AGENTS = {"iql": IQLConfig(hidden=32), "sac": SACConfig(hidden=32)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=1000, seed=0, progress=False))


def entries(kind: str = "pretrain") -> list[Path]:
    return sorted((artifacts_dir() / kind).glob("*.pt"))


def run_config(dataset: str, run_dir: Path, **kw) -> TrainConfig:
    options = {"method": "adept", "checkpoint_every": 10, "adept": TINY, **SMALL_AGENTS, **kw}
    return config(dataset, run_dir, **options)


def agent_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return tensors(load_checkpoint(run_dir / "checkpoint.pt")["agent"])


@pytest.mark.slow
def test_a_run_ends_the_same_on_a_miss_a_hit_and_without_the_cache(dataset, tmp_path, monkeypatch):
    train(run_config(dataset, tmp_path / "miss"))
    assert len(entries()) == 1

    def must_not_compute(*args, **kwargs):
        raise AssertionError("the second run should load the cached pre-training")

    with monkeypatch.context() as patch:
        patch.setattr(methods_module, "pretrain", must_not_compute)
        train(run_config(dataset, tmp_path / "hit"))
    train(run_config(dataset, tmp_path / "uncached", adept=replace(TINY, cache=False)))
    assert len(entries()) == 1

    expected = rows(tmp_path / "miss")
    assert "behavior/nll" in expected[0] and "rollout/mean_return" in expected[-1]
    weights = agent_weights(tmp_path / "miss")
    for other in ("hit", "uncached"):
        assert rows(tmp_path / other) == expected, other
        for name, value in agent_weights(tmp_path / other).items():
            assert torch.equal(value, weights[name]), (other, name)


def setup_cell(data: Transitions, agent: str, config: ModelBasedConfig, seed: int = 0):
    """What ``train`` does up to the method's setup, for one grid cell."""
    seed_everything(seed)
    spec = AgentSpec.from_data(data, 10, CPU)
    policy = make_agent(TrainConfig(agent=agent, **SMALL_AGENTS), spec)
    buffer = ReplayBuffer.from_transitions(data, device=CPU, seed=seed)
    method = make_method("adept", data, buffer, 32, config, seed)
    method.setup(policy)
    return method


def model_state(method) -> dict[str, torch.Tensor]:
    return method.world_model.state_dict()


def test_cells_that_differ_only_in_the_agent_share_one_entry(dataset):
    data = load_hdf5(dataset)
    iql = setup_cell(data, "iql", TINY)
    sac = setup_cell(data, "sac", TINY)
    assert len(entries()) == 1
    # computed fresh under SAC's RNG consumption, it matches what IQL's cell stored
    fresh = setup_cell(data, "sac", replace(TINY, cache=False))
    for name, value in model_state(iql).items():
        assert torch.equal(value, model_state(sac)[name]), name
        assert torch.equal(value, model_state(fresh)[name]), name
    for name, value in iql.behavior.bc.actor.state_dict().items():
        assert torch.equal(value, fresh.behavior.bc.actor.state_dict()[name]), name

    schedule_only = replace(TINY, rollout_every=7, real_ratio=0.3, horizon=2, is_truncate=False)
    setup_cell(data, "iql", schedule_only)
    relabelled = data.replace(metadata={"kind": "other"}, source="elsewhere.hdf5")
    setup_cell(relabelled, "iql", TINY)
    assert len(entries()) == 1, "schedule fields and metadata are not part of the key"

    setup_cell(data, "iql", TINY, seed=1)
    assert len(entries()) == 2
    setup_cell(data, "iql", replace(TINY, world_model=replace(TINY.world_model, hidden=16)))
    assert len(entries()) == 3
    rewards = data.rewards.copy()
    rewards[0] += 1.0
    setup_cell(data.replace(rewards=rewards), "iql", TINY)
    assert len(entries()) == 4
    key = entry_path("pretrain", pretrain_key(data, TINY, 0, CPU)).with_suffix(".json")
    assert '"pretrain_steps": 5' in key.read_text(), "the key is stored for a human reader"


def test_a_pretrain_seed_shares_one_world_model_across_run_seeds(dataset):
    data = load_hdf5(dataset)
    shared = replace(TINY, pretrain_seed=7)
    a, b = setup_cell(data, "iql", shared, seed=1), setup_cell(data, "iql", shared, seed=2)
    assert len(entries()) == 1, "one entry for both runs"
    for name, value in model_state(a).items():
        assert torch.equal(value, model_state(b)[name]), name
    assert torch.equal(a.holdout.observations, b.holdout.observations), "the model's split"
    alone = setup_cell(data, "iql", TINY, seed=1)
    assert len(entries()) == 2, "without it, each run seed pre-trains its own"
    assert any(not torch.equal(v, model_state(alone)[k]) for k, v in model_state(a).items())


def _record_and_make(log: Path) -> dict[str, torch.Tensor]:
    with log.open("a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(0.5)  # long enough for the other process to ask for the same entry meanwhile
    return {"value": torch.arange(3)}


def _ask(root: Path, log: Path, barrier) -> None:
    barrier.wait()
    result = cached("demo", {"x": 1}, functools.partial(_record_and_make, log), root)
    assert torch.equal(result["value"], torch.arange(3))


@pytest.mark.slow
def test_two_processes_compute_an_entry_once(tmp_path):
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    log = tmp_path / "calls.txt"
    workers = [
        context.Process(target=_ask, args=(tmp_path / "store", log, barrier)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert len(log.read_text().splitlines()) == 1


def test_a_damaged_entry_is_computed_again(tmp_path, capsys):
    calls: list[int] = []

    def make() -> dict[str, torch.Tensor]:
        calls.append(1)
        return {"value": torch.linspace(0, 1, 100)}

    first = cached("demo", {"x": 1}, make, tmp_path)
    path = entry_path("demo", {"x": 1}, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = cached("demo", {"x": 1}, make, tmp_path)
    assert len(calls) == 2 and torch.equal(again["value"], first["value"])
    assert "computing it again" in capsys.readouterr().err
    assert torch.equal(cached("demo", {"x": 1}, make, tmp_path)["value"], first["value"])
    assert len(calls) == 2, "the rewritten entry is read back"
