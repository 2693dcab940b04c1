import csv
from dataclasses import replace

import pytest
import torch

import adept.train as train_module
from adept.data.generate import make_dataset
from adept.errors import AdeptError
from adept.methods import ModelBasedConfig
from adept.runs import load_checkpoint
from adept.train import TrainConfig, train
from adept.world_model import WorldModelConfig

TINY = ModelBasedConfig(
    world_model=WorldModelConfig(hidden=32, depth=1, denoising_steps=3),
    pretrain_steps=5,
    model_batch_size=32,
    behavior_steps=5,
    horizon=3,
    rollout_every=5,
    rollout_batch=16,
    model_buffer_size=200,
    model_update_steps=2,
    is_batch_size=64,
    diagnostics_batch=32,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=1500, seed=0, progress=False))


def config(dataset, run_dir, **kw) -> TrainConfig:
    base = TrainConfig(
        dataset=dataset,
        num_steps=10,
        run_dir=run_dir,
        batch_size=32,
        eval_every=10,
        eval_episodes=1,
        log_every=5,
        checkpoint_every=5,
        device="cpu",
        progress=False,
        adept=TINY,
    )
    return replace(base, **kw)


def rows(run_dir):
    with (run_dir / "metrics.csv").open() as f:
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in csv.DictReader(f)]


@pytest.mark.parametrize("method", ["diffusion", "adept"])
@pytest.mark.parametrize("agent", ["iql", "sac", "td3bc", "bc"])
def test_every_method_and_agent_runs(dataset, tmp_path, method, agent):
    summary = train(config(dataset, tmp_path / "run", agent=agent, method=method))
    assert summary["steps"] == 10
    logged = rows(tmp_path / "run")
    columns = set(logged[0])
    assert {"rollout/mean_return", "world_model/eps_m", "world_model/eps_r"} <= columns
    assert "policy/eps_pi_kl" in columns
    assert ("world_model/is_ess" in columns) == (method == "adept")
    assert logged[0]["step"] == "0", "pre-training metrics are logged at step 0"


def test_adept_resume_is_exact(dataset, tmp_path, monkeypatch):
    full = config(dataset, tmp_path / "full", method="adept", num_steps=20, eval_every=20)
    train(full)
    real_fit = train_module.fit

    def interrupted(agent, method, start, num_steps):
        for step, metrics in real_fit(agent, method, start, num_steps):
            if step == 13:
                raise KeyboardInterrupt
            yield step, metrics

    part = config(dataset, tmp_path / "part", method="adept", num_steps=20, eval_every=20)
    monkeypatch.setattr(train_module, "fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(part)
    monkeypatch.setattr(train_module, "fit", real_fit)
    train(part)
    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for key, value in a["method"]["world_model"]["model"].items():
        assert torch.equal(value, b["method"]["world_model"]["model"][key]), key


def test_mixed_batches_hold_real_and_synthetic_data(dataset):
    from adept.agents import AgentSpec
    from adept.data import ReplayBuffer, load_hdf5
    from adept.methods import make_method
    from adept.train import make_agent

    data = load_hdf5(dataset)
    buffer = ReplayBuffer.from_transitions(data, device="cpu")
    method = make_method("adept", data, buffer, 32, replace(TINY, real_ratio=0.25), seed=0)
    agent = make_agent(TrainConfig(agent="iql"), AgentSpec.from_data(data, 10, torch.device("cpu")))
    metrics = method.setup(agent)
    assert metrics["rollout/buffer_size"] > 0 and "behavior/nll" in metrics
    batch = method.sample(0)
    assert len(batch) == 32 and batch.action_log_probs is None
    real_rows = {tuple(r) for r in data.observations.round(5).tolist()}
    from_data = sum(tuple(r) in real_rows for r in batch.observations.numpy().round(5).tolist())
    assert from_data >= 8  # 8 real rows (synthetic start states are real too, so ≥)


def test_logged_behavior_needs_log_probs(dataset, tmp_path):
    import numpy as np

    from adept.data.hdf5 import load_hdf5, save_hdf5

    stripped = save_hdf5(load_hdf5(dataset).replace(action_log_probs=None), tmp_path / "nolp.hdf5")
    cfg = config(
        str(stripped), tmp_path / "run", method="adept", adept=replace(TINY, behavior="logged")
    )
    with pytest.raises(AdeptError, match=r"--adept\.behavior logged needs action_log_probs"):
        train(cfg)
    assert not (tmp_path / "run").exists(), "refused before anything is written"
    assert np.isfinite(
        train(
            config(dataset, tmp_path / "ok", method="adept", adept=replace(TINY, behavior="logged"))
        )["return_last"]
    )
