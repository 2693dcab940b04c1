import dataclasses
import functools
import multiprocessing
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import adept.methods.adept as methods_module
from adept.agents import AgentSpec, IQLConfig, SACConfig
from adept.base.rng import seed_everything
from adept.data import ReplayBuffer, load_hdf5
from adept.data.transitions import Transitions
from adept.datasets.generate import make_dataset
from adept.methods import ADEPTConfig, make_method
from adept.store.artifacts import artifacts_dir, cached, entry_path, key_hash
from adept.store.runs import load_checkpoint
from adept.training import TrainConfig, make_agent, train
from adept.world_models.pretrain import pretrain_key
from tests.helpers import changed, rows, tensors
from tests.test_methods import TINY as METHODS_TINY
from tests.test_methods import config

TINY = changed(METHODS_TINY, diagnostics__true_error_every=0)
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


def setup_cell(data: Transitions, agent: str, config: ADEPTConfig, seed: int = 0):
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

    schedule_only = changed(
        TINY, rollout__every=7, mix__real_ratio=0.3, rollout__horizon=2, refit__truncate=False
    )
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
    key = pretrain_key(data, TINY.world_model, TINY.pretrain, 0, CPU)
    stored = entry_path("pretrain", key).with_suffix(".json").read_text()
    assert '"steps": 5' in stored, "the key is stored for a human reader"


def grown(config):
    """``config`` as an instance of a subclass with one more field, at its default: what a new
    knob makes of a config."""
    cls = dataclasses.make_dataclass(
        type(config).__name__,
        [("new_knob", int, dataclasses.field(default=0))],
        bases=(type(config),),
        frozen=True,
    )
    return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})


@pytest.mark.parametrize(
    "artifact",
    [
        "pretrain: world model",
        "pretrain: pre-training",
        "synther: generator",
        "synther: samples",
        "pgd/dydiff: trajectory model",
    ],
)
def test_a_field_added_to_a_config_changes_its_artifacts_key(dataset, artifact):
    """Cache keys are derived from the configs, not listed by hand: a new knob, even at its
    default, can never reuse an entry made without it."""
    from adept.methods.pgd import PGDConfig
    from adept.methods.synther import SynthERConfig, generator_key, samples_key
    from adept.methods.trajectories import training_key

    data = load_hdf5(dataset)
    synther = SynthERConfig()
    key, config = {
        "pretrain: world model": (
            lambda c: pretrain_key(data, c, TINY.pretrain, 0, CPU),
            TINY.world_model,
        ),
        "pretrain: pre-training": (
            lambda c: pretrain_key(data, TINY.world_model, c, 0, CPU),
            TINY.pretrain,
        ),
        "synther: generator": (
            lambda c: generator_key(data, c, 0, CPU),
            synther.generator(len(data)),
        ),
        "synther: samples": (lambda c: samples_key({"generator": "g"}, c), synther.sampling()),
        "pgd/dydiff: trajectory model": (
            lambda c: training_key(data, c, 1, 0, CPU),
            PGDConfig().training(),
        ),
    }[artifact]
    assert key_hash(key(grown(config))) != key_hash(key(config))


def test_a_pretrain_seed_shares_one_world_model_across_run_seeds(dataset):
    data = load_hdf5(dataset)
    shared = changed(TINY, generator_seed=7)
    a, b = setup_cell(data, "iql", shared, seed=1), setup_cell(data, "iql", shared, seed=2)
    assert len(entries()) == 1, "one entry for both runs"
    for name, value in model_state(a).items():
        assert torch.equal(value, model_state(b)[name]), name
    assert torch.equal(a.diagnostics.holdout.observations, b.diagnostics.holdout.observations), (
        "the model's split"
    )
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
