"""Several seeds in one process: a seed trained in a pack ends as it ends trained alone.

Bitwise equality is impossible: a pack's matrix products are batched over the seed axis and sum
in another order than one seed's, so a packed seed drifts from its alone run by rounding
(measured: ≤ 1e-6 on weights after 25 updates). The tolerances below are 10–100× that drift and
far below what any error in the pack (a wrong slice, a shared moment, a missed step) produces.
"""

from __future__ import annotations

import json
from typing import ClassVar

import pytest
import torch

import adept.training.run as run_module
import adept.training.seeds as seeds_module
from adept.accel.pack import Pack
from adept.agents import AGENTS
from adept.agents.base import AgentSpec
from adept.base.rng import Streams, rng_state
from adept.cli import main
from adept.data.buffer import Batch
from adept.datasets.generate import make_dataset
from adept.methods import METHODS, Method
from adept.store.runs import load_checkpoint
from adept.training import TrainConfig, train
from adept.training.divergence import Divergence
from tests.helpers import changed, rows, stopped_at, tensors
from tests.test_train import config

SEEDS = (0, 1, 2)
ATOL = 1e-5  # on weights and Adam moments after 25 updates; the drift is ≤ 1e-6


def spec() -> AgentSpec:
    return AgentSpec(
        obs_dim=11,
        act_dim=3,
        obs_mean=torch.zeros(11),
        obs_std=torch.ones(11),
        return_range=100.0,
        num_steps=25,
        device=torch.device("cpu"),
    )


def batch(g: torch.Generator) -> Batch:
    return Batch(
        observations=torch.randn(64, 11, generator=g),
        actions=torch.rand(64, 3, generator=g) * 2 - 1,
        rewards=torch.randn(64, generator=g),
        next_observations=torch.randn(64, 11, generator=g),
        terminals=(torch.rand(64, generator=g) < 0.1).float(),
        timeouts=torch.zeros(64),
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["iql", "sac", "td3bc", "bc"])
def test_a_packed_seed_updates_as_it_does_alone(name):
    alone = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        agent = AGENTS[name](spec(), AGENTS[name].options_type())
        g = torch.Generator().manual_seed(100 + seed)
        for _ in range(25):
            metrics = agent.update(batch(g))
        alone.append((agent.state_dict(), metrics))

    agents, states = [], []
    for seed in SEEDS:
        torch.manual_seed(seed)
        agents.append(AGENTS[name](spec(), AGENTS[name].options_type()))
        states.append(rng_state())
    pack, streams = Pack(agents), Streams(states)
    generators = [torch.Generator().manual_seed(100 + seed) for seed in SEEDS]
    for _ in range(25):
        batches = [batch(g) for g in generators]
        noises = []
        for s, agent in enumerate(agents):
            with streams.of(s):
                noises.append(agent.draw(batches[s]))
        packed_metrics = pack.update(batches, noises)

    for s in range(len(SEEDS)):
        want, got = tensors(alone[s][0]), tensors(pack.agent_state(s))
        assert want.keys() == got.keys()
        for path, value in want.items():
            torch.testing.assert_close(got[path], value, atol=ATOL, rtol=0, msg=path)
        assert packed_metrics[s].keys() == alone[s][1].keys()
        for key, value in alone[s][1].items():
            assert float(packed_metrics[s][key]) == pytest.approx(float(value), rel=1e-4, abs=1e-5)
        # acting reads the packed weights (views), with no copy
        obs = torch.randn(5, 11)
        torch.manual_seed(0)
        reference = AGENTS[name](spec(), AGENTS[name].options_type())
        reference.load_state_dict(alone[s][0])
        torch.testing.assert_close(
            agents[s].act(obs.numpy()), reference.act(obs.numpy()), atol=1e-4, rtol=0
        )
    # the seeds are independent runs, not copies of one
    first, second = tensors(pack.agent_state(0)), tensors(pack.agent_state(1))
    assert not torch.allclose(first[".actor.net.0.weight"], second[".actor.net.0.weight"])


def test_release_gives_the_agents_back_their_own_parameters():
    agents = []
    for seed in SEEDS:
        torch.manual_seed(seed)
        agents.append(AGENTS["sac"](spec(), AGENTS["sac"].options_type()))
    own = [agent.actor.net[0].weight for agent in agents]
    pack = Pack(agents)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        batches = [batch(g) for _ in SEEDS]
        pack.update(batches, [agent.draw(b) for agent, b in zip(agents, batches, strict=True)])
    packed = [tensors(pack.agent_state(s)) for s in range(len(SEEDS))]
    pack.release()
    for s, agent in enumerate(agents):
        assert agent.actor.net[0].weight is own[s] and own[s].requires_grad
        for path, value in tensors(agent.state_dict()).items():
            torch.testing.assert_close(value, packed[s][path], atol=0, rtol=0, msg=path)
        agent.update(batch(g))  # an ordinary agent again


def test_a_pack_refuses_agents_of_different_configurations():
    torch.manual_seed(0)
    a = AGENTS["iql"](spec(), AGENTS["iql"].options_type())
    b = AGENTS["iql"](spec(), AGENTS["iql"].options_type(expectile=0.9))
    with pytest.raises(ValueError, match="share their class and configuration"):
        Pack([a, b])


# --- adept train --seeds ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=2000, seed=0, progress=False))


def assert_rows_close(got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if a[key] != b[key]:
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-4), key


def stopped_pack_at(cfg: TrainConfig, at: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """``adept train --seeds`` stopped as Ctrl-C would stop it, before update ``at``."""
    real = Pack.update
    calls = {"n": 0}

    def update(self, batches, noises):
        calls["n"] += 1
        if calls["n"] == at:
            raise KeyboardInterrupt
        return real(self, batches, noises)

    with monkeypatch.context() as patch:
        patch.setattr(Pack, "update", update)
        with pytest.raises(KeyboardInterrupt):
            train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["iql", "sac"])
def test_train_seeds_writes_the_runs_that_training_each_seed_alone_writes(dataset, tmp_path, agent):
    packed = config(dataset, tmp_path / "pack", agent=agent, seeds=SEEDS)
    summaries = train(packed)["runs"]
    assert set(summaries) == {str(tmp_path / "pack" / f"seed{s}") for s in SEEDS}
    for seed in SEEDS:
        alone = config(dataset, tmp_path / f"alone{seed}", agent=agent, seed=seed)
        train(alone)
        run = tmp_path / "pack" / f"seed{seed}"
        # the seed's run directory is the one --seed would write: same config, resumable alone
        stored = json.loads((run / "config.json").read_text())["config"]
        assert stored["seed"] == seed and stored["seeds"] == []
        assert_rows_close(rows(run), rows(tmp_path / f"alone{seed}"))
        want = tensors(load_checkpoint(tmp_path / f"alone{seed}" / "checkpoint.pt")["agent"])
        got = tensors(load_checkpoint(run / "checkpoint.pt")["agent"])
        assert want.keys() == got.keys()
        for path, value in want.items():
            torch.testing.assert_close(got[path], value, atol=1e-4, rtol=0, msg=path)
        # the checkpoint holds this seed only (no other seed's slice saved through a view)
        assert got[".actor.net.0.weight"].untyped_storage().nbytes() == (
            got[".actor.net.0.weight"].numel() * 4
        )
    assert rows(tmp_path / "pack" / "seed0") != rows(tmp_path / "pack" / "seed1")


@pytest.mark.slow
def test_a_stopped_pack_resumes_exactly(dataset, tmp_path, monkeypatch):
    full = config(dataset, tmp_path / "full", agent="sac", seeds=SEEDS)
    train(full)
    part = config(dataset, tmp_path / "part", agent="sac", seeds=SEEDS)
    stopped_pack_at(part, 48, monkeypatch)  # after the checkpoint at 40, mid log-window
    for seed in SEEDS:
        assert load_checkpoint(tmp_path / "part" / f"seed{seed}" / "checkpoint.pt")["step"] == 40
    train(part)
    for seed in SEEDS:
        a, b = tmp_path / "full" / f"seed{seed}", tmp_path / "part" / f"seed{seed}"
        assert rows(b) == rows(a)
        want = tensors(load_checkpoint(a / "checkpoint.pt"))
        got = tensors(load_checkpoint(b / "checkpoint.pt"))
        for path, value in want.items():
            if "wall_time" not in path:
                assert torch.equal(got[path], value), path


@pytest.mark.slow
def test_a_packed_seed_resumes_alone_and_a_seed_ahead_rejoins_the_pack(
    dataset, tmp_path, monkeypatch
):
    full = config(dataset, tmp_path / "full", seeds=SEEDS)
    train(full)
    part = config(dataset, tmp_path / "part", seeds=SEEDS)
    stopped_pack_at(part, 28, monkeypatch)  # every seed's checkpoint at 20
    # seed 0 goes on alone to a checkpoint at 40 (its previous one is the pack's at 20)
    stopped_at(part.for_seed(0), 47, monkeypatch)
    assert load_checkpoint(tmp_path / "part" / "seed0" / "checkpoint.pt")["step"] == 40
    # the pack resumes all three from 20: seed 0 from its previous checkpoint
    packs = []
    real_pack = seeds_module.Pack

    def pack(agents):
        packs.append(len(agents))
        return real_pack(agents)

    monkeypatch.setattr(seeds_module, "Pack", pack)
    train(part)
    assert packs == [3]
    for seed in SEEDS:
        assert rows(tmp_path / "part" / f"seed{seed}") == rows(tmp_path / "full" / f"seed{seed}")


@pytest.mark.slow
def test_a_diverging_seed_leaves_the_pack_and_is_finished_alone(dataset, tmp_path, monkeypatch):
    real_find = run_module.find_divergence
    reported = []

    def find(step, row, agent, method):
        # seed 1's first check at step 40 in the pack reports a divergence, once
        if step == 40 and not reported and agent is seats_agent[1]:
            reported.append(step)
            return Divergence(step, "agent", "iql", ["train/q_loss"])
        return real_find(step, row, agent, method)

    seats_agent: dict[int, object] = {}
    real_pack = seeds_module.Pack

    def pack(agents):
        if not seats_agent:
            seats_agent.update(enumerate(agents))
        return real_pack(agents)

    alone_runs = []
    real_train_in = seeds_module.train_in

    def train_in(run, cfg, data, env_id):
        alone_runs.append(cfg.seed)
        return real_train_in(run, cfg, data, env_id)

    monkeypatch.setattr(seeds_module, "Pack", pack)
    monkeypatch.setattr(run_module, "find_divergence", find)
    monkeypatch.setattr(seeds_module, "train_in", train_in)
    summaries = train(config(dataset, tmp_path / "pack", seeds=SEEDS))["runs"]
    assert reported == [40] and alone_runs == [1]
    assert len(summaries) == 3
    for seed in SEEDS:
        alone = config(dataset, tmp_path / f"alone{seed}", seed=seed)
        real_train_in_summary = train(alone)
        assert summaries[str(tmp_path / "pack" / f"seed{seed}")]["steps"] == 60
        assert_rows_close(rows(tmp_path / "pack" / f"seed{seed}"), rows(tmp_path / f"alone{seed}"))
        assert real_train_in_summary["steps"] == 60


def test_cli_train_seeds(dataset, tmp_path, capsys):
    main(
        [
            "train",
            "--dataset",
            dataset,
            "--agent",
            "bc",
            "--seeds",
            "3",
            "4",
            "--num-steps",
            "20",
            "--batch-size",
            "16",
            "--eval-every",
            "20",
            "--eval-episodes",
            "1",
            "--run-dir",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    for seed in (3, 4):
        assert f"run dir: {tmp_path / 'runs' / f'seed{seed}'}" in out
        assert (tmp_path / "runs" / f"seed{seed}" / "summary.json").exists()


@pytest.mark.slow
def test_one_seed_left_to_pack_runs_in_the_ordinary_loop(dataset, tmp_path, monkeypatch):
    def no_pack(agents):
        raise AssertionError("a pack of one was built")

    monkeypatch.setattr(seeds_module, "Pack", no_pack)
    summaries = train(config(dataset, tmp_path / "one", seeds=(5,)))["runs"]
    train(config(dataset, tmp_path / "alone", seed=5))
    assert list(summaries) == [str(tmp_path / "one" / "seed5")]
    assert rows(tmp_path / "one" / "seed5") == rows(tmp_path / "alone")


class Counting(Method):
    """A method with work between updates and no packed path: it counts its calls per seed."""

    name = "counting"
    calls: ClassVar[dict[int, list[int]]] = {}

    def __init__(self, data, buffer, batch_size, config=None, seed=0, num_steps=None):
        super().__init__(data, buffer, batch_size)
        self.seed = seed

    def after_update(self, step, agent):
        Counting.calls.setdefault(self.seed, []).append(step)
        return {"counting/draw": torch.rand(())}  # from the seed's own stream


def test_a_method_without_a_packed_path_trains_in_a_pack_seed_by_seed_and_says_so(
    dataset, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(METHODS, "counting", Counting)
    Counting.calls = {}
    train(config(dataset, tmp_path / "pack", method="counting", seeds=(0, 1), num_steps=20))
    assert Counting.calls == {0: list(range(20)), 1: list(range(20))}, "each seed, every step"
    assert "--method counting has no packed path" in capsys.readouterr().err
    Counting.calls = {}
    train(config(dataset, tmp_path / "alone", method="counting", seed=1, num_steps=20))
    packed = [r["counting/draw"] for r in rows(tmp_path / "pack" / "seed1") if r["counting/draw"]]
    alone = [r["counting/draw"] for r in rows(tmp_path / "alone") if r["counting/draw"]]
    assert packed == alone, "its draws come from its seed's stream, as alone"


def test_seeds_named_twice_are_refused(dataset, tmp_path):
    with pytest.raises(Exception, match="names a seed twice"):
        train(config(dataset, tmp_path / "x", seeds=(1, 1)))


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, options",
    [
        ("adept", {}),  # IS weights, resampled, the re-fit training an averaged copy
        ("adept", {"refit__loss": "weighted", "refit__average": 0.0}),
        ("adept", {"refit__rule": "uniform"}),
        ("diffusion", {}),
    ],
    ids=["adept", "adept-weighted-unaveraged", "adept-uniform", "diffusion"],
)
def test_world_model_methods_in_a_pack_write_the_runs_they_write_alone(
    dataset, tmp_path, method, options
):
    """ADEPT and Diff+X in a pack (re-fits and rollouts batched over the seeds' world models):
    each seed's rollouts, re-fits and diagnostics come out as in its run alone (its own world
    model, buffers and random streams)."""

    from tests.test_methods import TINY

    adept = changed(
        TINY,
        rollout__batch_size=64,
        rollout__horizon=4,
        diagnostics__true_error_every=1,
        cache=False,
        **options,
    )
    kw = dict(method=method, num_steps=30, adept=adept, eval_every=30, log_every=5)
    train(config(dataset, tmp_path / "pack", seeds=(0, 1), **kw))
    for seed in (0, 1):
        train(config(dataset, tmp_path / f"alone{seed}", seed=seed, **kw))
        got, want = rows(tmp_path / "pack" / f"seed{seed}"), rows(tmp_path / f"alone{seed}")
        assert any(r.get("rollout/mean_return") for r in want), "the runs rolled out"
        assert_rows_close(got, want)
        want_model = tensors(load_checkpoint(tmp_path / f"alone{seed}" / "checkpoint.pt")["method"])
        assert any("world_model" in path for path in want_model)
        got_model = tensors(
            load_checkpoint(tmp_path / "pack" / f"seed{seed}" / "checkpoint.pt")["method"]
        )
        for path, value in want_model.items():
            if value.is_floating_point():
                torch.testing.assert_close(got_model[path], value, atol=1e-4, rtol=0, msg=path)
    assert rows(tmp_path / "pack" / "seed0") != rows(tmp_path / "pack" / "seed1")
