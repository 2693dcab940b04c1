"""CUDA graphs for the agent update (adept.accel.graphs): the graphed update is the eager update.

On the CPU the graph path runs emulated (static inputs copied in, learning rates read from device
tensors filled before each replay, outputs overwritten in place at each replay), so these tests
check everything but the capture itself, bitwise against the eager update. The last test
captures real graphs and runs only where a CUDA device is.
"""

from __future__ import annotations

import pytest
import torch

import adept.training.loop as loop_module
from adept.accel.graphs import GraphedPackUpdate, GraphedUpdate, Graphs
from adept.accel.pack import Pack
from adept.agents import AGENTS
from adept.base.errors import AdeptError
from adept.base.rng import Streams, rng_state
from adept.data.buffer import Batch, ReplayBuffer
from adept.data.hdf5 import load_hdf5
from adept.methods import Method
from adept.training import TrainConfig, fit
from adept.training.loop import Averager
from tests.helpers import tensors
from tests.test_pack import batch, spec

STEPS = 9  # IQL's cosine schedule runs over spec().num_steps = 25: the rate moves every step


def _agent(name: str, device: str = "cpu"):
    torch.manual_seed(0)
    s = spec()
    if device != "cpu":
        s = type(s)(**{**s.__dict__, "device": torch.device(device)})
    return AGENTS[name](s, AGENTS[name].options_type())


def _batches(device: str = "cpu"):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        b = batch(g)
        out.append(type(b)(**{k: v.to(device) for k, v in b.__dict__.items() if v is not None}))
    return out


@pytest.mark.parametrize("name, graphs", [("iql", 1), ("sac", 1), ("td3bc", 2), ("bc", 1)])
def test_the_graphed_update_is_the_eager_update(name, graphs):
    """Same weights, optimizer moments, schedules and metrics, bitwise, after updates that pass
    through warm-up, capture and replays; as the training loop consumes metrics (averaged as they
    come, read later), which the replays' in-place outputs must not change."""
    eager, graphed = _agent(name), _agent(name)
    update = GraphedUpdate(graphed, warmup=2)
    logged = {"eager": [], "graphed": []}
    for key, step in (("eager", eager.update), ("graphed", update)):
        torch.manual_seed(5)
        averager = Averager()
        for i, b in enumerate(_batches(), 1):
            averager.add(step(b))
            if i % 3 == 0:  # logged every 3 steps: later rows start on a replay's outputs
                logged[key].append(averager.pop())
    assert update.graphs.captured == graphs  # one per signature (TD3+BC: with its actor step)
    want, got = tensors(eager.state_dict()), tensors(graphed.state_dict())
    assert want.keys() == got.keys()
    for path, value in want.items():
        torch.testing.assert_close(got[path], value, atol=0, rtol=0, msg=path)
    assert graphed.state_dict()["actor_opt"]["param_groups"][0]["lr"] == pytest.approx(
        eager.state_dict()["actor_opt"]["param_groups"][0]["lr"], rel=0, abs=0
    )
    assert logged["graphed"] == logged["eager"]


def test_the_training_loop_with_graphs_is_the_loop_without(d4rl_file, monkeypatch):
    """``fit(..., graphs=True)`` replays graphs, with the batches, random numbers and metrics of
    the eager loop."""
    made: list[GraphedUpdate] = []

    class Recorded(GraphedUpdate):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(loop_module, "GraphedUpdate", Recorded)
    data = load_hdf5(d4rl_file)
    runs = []
    for graphs in (False, True):
        agent = _agent("td3bc")
        method = Method(data, ReplayBuffer.from_transitions(data, device="cpu", seed=3), 16)
        torch.manual_seed(7)
        averager, rows = Averager(), []
        for step, metrics in fit(agent, method, 0, 10, graphs=graphs):
            averager.add(metrics)
            if step % 4 == 0:
                rows.append(averager.pop())
        runs.append((rows, tensors(agent.state_dict())))
    assert len(made) == 1 and made[0].graphs.captured == 2  # the graphed run replayed graphs
    (want_rows, want), (got_rows, got) = runs
    assert got_rows == want_rows and len(got_rows) == 2
    for path, value in want.items():
        torch.testing.assert_close(got[path], value, atol=0, rtol=0, msg=path)


def test_batches_with_and_without_behaviour_log_probs_replay_one_graph():
    """ADEPT's batches carry the dataset's log β(a|s) while they are all real and lose it once
    model rows join them: the same graph replays both (agents never read it)."""
    eager, graphed = _agent("iql"), _agent("iql")
    update = GraphedUpdate(graphed, warmup=1)
    for i, b in enumerate(_batches()):
        if i % 2 == 0:
            b = Batch(**{**b.__dict__, "action_log_probs": torch.zeros(len(b))})
        eager.update(b)
        update(b)
    assert update.graphs.captured == 1
    for path, value in tensors(eager.state_dict()).items():
        torch.testing.assert_close(tensors(graphed.state_dict())[path], value, atol=0, rtol=0)


def test_outputs_are_overwritten_by_the_next_replay_as_a_graph_s_are():
    """What a caller keeps of a replay's metrics is the graph's static outputs: the next replay
    changes them (the loop averages each step's metrics at once, so it never keeps them)."""
    agent = _agent("iql")
    update = GraphedUpdate(agent, warmup=1)
    torch.manual_seed(0)
    batches = _batches()
    update(batches[0])  # warm-up
    kept = update(batches[1])  # captured
    value = float(kept["train/q_loss"])
    update(batches[2])  # replayed
    assert float(kept["train/q_loss"]) != value


def test_a_graphed_pack_is_the_pack():
    def run(graphed: bool):
        agents, states = [], []
        for seed in (0, 1):
            torch.manual_seed(seed)
            agents.append(AGENTS["td3bc"](spec(), AGENTS["td3bc"].options_type()))
            states.append(rng_state())
        pack, streams = Pack(agents), Streams(states)
        update = GraphedPackUpdate(pack, warmup=1) if graphed else pack.update
        generators = [torch.Generator().manual_seed(100 + s) for s in (0, 1)]
        averagers = [Averager(), Averager()]
        for _ in range(6):
            batches = [batch(g) for g in generators]
            noises = []
            for s, agent in enumerate(agents):
                with streams.of(s):
                    noises.append(agent.draw(batches[s]))
            for s, metrics in enumerate(update(batches, noises)):
                averagers[s].add(metrics)
        if graphed:
            assert update.graphs.captured == 2
        return [tensors(pack.agent_state(s)) for s in (0, 1)], [a.pop() for a in averagers]

    (want, want_metrics), (got, got_metrics) = run(False), run(True)
    for s in (0, 1):
        for path, value in want[s].items():
            torch.testing.assert_close(got[s][path], value, atol=0, rtol=0, msg=path)
    assert got_metrics == want_metrics


def test_graphs_refuse_a_changed_input_and_a_cpu_capture():
    graphs = Graphs(torch.device("cpu"), lambda: [], warmup=1)
    graphs("k", lambda x: {"y": x["x"] * 2}, ({"x": torch.ones(2)},))
    graphs("k", lambda x: {"y": x["x"] * 2}, ({"x": torch.ones(2)},))
    with pytest.raises(ValueError, match="changed their fields"):
        graphs("k", lambda x: {"y": x["x"] * 2}, ({"z": torch.ones(2)},))
    with pytest.raises(ValueError, match="need a CUDA device"):
        Graphs(torch.device("cpu"), lambda: [], emulate=False)


def test_cuda_graphs_need_a_cuda_device():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    with pytest.raises(AdeptError, match=r"--cuda-graphs needs a CUDA device.*drop --cuda-graphs"):
        TrainConfig(cuda_graphs=True).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("name", ["iql", "sac", "td3bc"])
def test_captured_cuda_graphs_update_as_the_eager_update(name):
    """Real capture and replay: equal to the eager update up to the learning rate's rounding to
    float32 in the captured fused Adam step."""
    eager, graphed = _agent(name, "cuda"), _agent(name, "cuda")
    update = GraphedUpdate(graphed, warmup=2)
    assert not update.graphs.emulate
    torch.manual_seed(5)
    for b in _batches("cuda"):
        eager.update(b)
    torch.manual_seed(5)
    for b in _batches("cuda"):
        update(b)
    assert update.graphs.captured >= 1
    want, got = tensors(eager.state_dict()), tensors(graphed.state_dict())
    for path, value in want.items():
        torch.testing.assert_close(got[path], value, atol=1e-5, rtol=1e-4, msg=path)
