import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from adept.base.errors import AdeptError
from adept.datasets.generate import make_dataset
from adept.methods.adept import ADEPTConfig, MixConfig
from adept.store.runs import load_checkpoint
from adept.training import TrainConfig, train
from adept.world_models.diagnostics import DiagnosticsConfig
from adept.world_models.importance import RefitConfig
from adept.world_models.model import WorldModelConfig
from adept.world_models.pretrain import PretrainConfig
from adept.world_models.rollout import RolloutConfig
from tests.helpers import changed, rows, stopped_at

TINY = ADEPTConfig(
    world_model=WorldModelConfig(hidden=32, depth=1, denoising_steps=3),
    pretrain=PretrainConfig(steps=5, batch_size=32, behavior_steps=5),
    rollout=RolloutConfig(horizon=3, every=5, batch_size=16, start=5),
    refit=RefitConfig(steps=2, batch_size=64),
    mix=MixConfig(buffer_size=200),
    diagnostics=DiagnosticsConfig(batch_size=32),
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


def train_interrupted_then_resumed(config: TrainConfig, at: int, monkeypatch) -> None:
    """Train ``config`` until step ``at``, stop as a killed run would, then resume it."""
    stopped_at(config, at, monkeypatch)
    train(config)


def refuses_before_writing(config: TrainConfig, option: dict, message: str) -> None:
    """``config`` with ``option`` set in its method's options fails with ``message``, and no
    run directory is left behind."""
    from adept.methods import METHODS

    field = METHODS[config.method].options
    assert field is not None
    config = replace(config, **{field: replace(getattr(config, field), **option)})
    with pytest.raises(AdeptError, match=message):
        train(config)
    assert config.run_dir is not None and not config.run_dir.exists()


def real_share(batch, data, column: str = "observations") -> int:
    """How many rows of ``batch`` are the dataset's own (their ``column`` found in ``data``)."""
    real = {row.tobytes() for row in getattr(data, column)}
    return sum(row.tobytes() in real for row in getattr(batch, column).numpy())


def resumes_exactly(make, tmp_path, monkeypatch, checkpoint_key: str, cache: bool) -> None:
    """A run of ``make(name)`` killed at step 13 and resumed equals an uninterrupted one (logs
    and actor); ``checkpoint_key`` is in the method's checkpoint exactly when the cache is off."""
    train(make("full"))
    train_interrupted_then_resumed(make("part"), 13, monkeypatch)
    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for key, value in a["agent"]["actor"].items():
        assert torch.equal(value, b["agent"]["actor"][key]), key
    assert (checkpoint_key in a["method"]) == (not cache), "without the cache, in the checkpoint"


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
    assert ("q/model" in columns) == ("q/real" in columns) == (agent != "bc"), "BC has no critic"
    assert logged[0]["step"] == "0", "pre-training metrics are logged at step 0"
    last = logged[-1]
    assert float(last["world_model/eps_m"]) > 0 and float(last["world_model/eps_r"]) >= 0
    assert float(last["policy/eps_pi_kl"]) > -0.05, "a Monte-Carlo KL estimate: near 0 or above"
    # two rounds (steps 5 and 10) of at most rollout_batch × horizon rows each
    sizes = [float(r["rollout/buffer_size"]) for r in logged if r.get("rollout/buffer_size")]
    assert len(sizes) == 2 and 0 < sizes[0] < sizes[1] <= 2 * 16 * 3
    if method == "adept":
        ess = float(last["world_model/is_ess"])
        weighted_rows = TINY.refit.batch_size * TINY.refit.resample_pool  # the resampling pool
        assert 1.0 <= ess <= weighted_rows


@pytest.mark.slow
@pytest.mark.parametrize(
    "adept",
    [changed(TINY, refit__average=0.0), changed(TINY, refit__average=0.9, refit__lr=1e-4)],
    ids=["plain", "averaged"],
)
def test_adept_resume_is_exact(dataset, tmp_path, monkeypatch, adept):
    full = config(
        dataset, tmp_path / "full", method="adept", num_steps=20, eval_every=20, adept=adept
    )
    part = config(
        dataset, tmp_path / "part", method="adept", num_steps=20, eval_every=20, adept=adept
    )
    train(full)
    train_interrupted_then_resumed(part, 13, monkeypatch)
    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    for key, value in a["method"]["world_model"]["model"].items():
        assert torch.equal(value, b["method"]["world_model"]["model"][key]), key


def test_averaged_refit_rolls_out_the_average_of_the_trained_copy(dataset):
    from adept.diffusion.ema import parameters_of

    decay = 0.75
    _, method, policy = built(dataset, changed(TINY, refit__average=decay, refit__lr=1e-2))
    method.setup(policy)
    refitter = method.refitter
    assert refitter is not None and refitter.online is not None
    assert refitter.online is not method.world_model
    assert refitter.online.optimizer.param_groups[0]["lr"] == 1e-2
    before = parameters_of(method.world_model)
    refitter.round(method.model_data, policy, method.behavior, steps=1)
    trained = parameters_of(refitter.online)
    rolled = parameters_of(method.world_model)
    assert any(not torch.equal(a, b) for a, b in zip(before, trained, strict=True)), "the copy"
    for b, t, r in zip(before, trained, rolled, strict=True):
        torch.testing.assert_close(r, decay * b + (1 - decay) * t)
    # without averaging, the steps train the rolled-out model itself
    _, plain, policy = built(dataset, changed(TINY, refit__average=0.0))
    plain.setup(policy)
    before = parameters_of(plain.world_model)
    plain.refitter.round(plain.model_data, policy, plain.behavior, steps=1)
    assert plain.refitter.online is None
    after = parameters_of(plain.world_model)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def built(dataset, config: ADEPTConfig, agent: str = "iql", num_steps: int = 100):
    """A world-model method and an agent on ``dataset``, as ``train`` builds them."""
    from adept.agents import AgentSpec
    from adept.data import ReplayBuffer, load_hdf5
    from adept.methods import make_method
    from adept.training import make_agent

    data = load_hdf5(dataset)
    buffer = ReplayBuffer.from_transitions(data, device="cpu")
    method = make_method("adept", data, buffer, 32, config, seed=0, num_steps=num_steps)
    torch.manual_seed(0)
    policy = make_agent(
        TrainConfig(agent=agent), AgentSpec.from_data(data, 10, torch.device("cpu"))
    )
    return data, method, policy


@pytest.mark.parametrize("real_ratio", [0.25, 0.75])
def test_mixed_batches_hold_the_configured_share_of_real_rows(dataset, real_ratio):
    data, method, policy = built(
        dataset, changed(TINY, mix__real_ratio=real_ratio, rollout__start=0)
    )
    metrics = method.setup(policy)
    assert metrics["rollout/buffer_size"] > 0 and "behavior/nll" in metrics
    batch = method.sample(0)
    assert len(batch) == 32 and batch.action_log_probs is None
    # a real row's (s, a, s′) is in D; an imagined row's a comes from π and s′ from the model
    real_rows = {
        tuple(r)
        for r in np.concatenate([data.observations, data.actions, data.next_observations], 1)
        .round(5)
        .tolist()
    }
    rows = torch.cat([batch.observations, batch.actions, batch.next_observations], 1)
    from_data = sum(tuple(r) in real_rows for r in rows.numpy().round(5).tolist())
    assert from_data == round(32 * real_ratio)


def test_rollouts_wait_for_the_warm_up(dataset):
    _, method, policy = built(dataset, changed(TINY, rollout__every=5, rollout__start=10))
    assert "rollout/buffer_size" not in method.setup(policy)
    for step in range(9):
        assert method.after_update(step, policy) == {}, f"no round before step 10 (at {step + 1})"
        assert len(method.model_buffer) == 0
        assert method.sample(step).observations.shape == (32, data_obs_dim(method))
    metrics = method.after_update(9, policy)
    assert "world_model/is_ess" in metrics and metrics["rollout/buffer_size"].item() > 0


def data_obs_dim(method) -> int:
    return method.data.obs_dim


def test_flush_on_refit_keeps_only_the_latest_rollouts(dataset):
    sizes = {}
    for flush in (False, True):
        _, method, policy = built(
            dataset, changed(TINY, rollout__start=0, mix__flush_on_refit=flush)
        )
        first = method.setup(policy)["rollout/buffer_size"]
        metrics = method.after_update(4, policy)
        second = metrics["rollout/buffer_size"].item()
        sizes[flush] = (first, second)
        # the critic's values on imagined rows: measured on the rows it trained on, flushed or not
        assert "q/model" in metrics, f"flush_on_refit={flush}: no Q on model rows"
    assert sizes[False][1] > sizes[False][0], "without flushing, rounds accumulate"
    assert sizes[True][1] < sizes[False][1], "flushed: the second round's rows only"
    assert sizes[True][1] <= TINY.rollout.batch_size * TINY.rollout.horizon


def test_clip_generated_switches_the_dataset_box(dataset):
    inside = {}
    for clip in (True, False):
        data, method, policy = built(dataset, changed(TINY, rollout__start=0, rollout__clip=clip))
        method.setup(policy)
        n = len(method.model_buffer)
        nxt = method.model_buffer.next_observations[:n]
        low = torch.as_tensor(data.stats().states.min)
        high = torch.as_tensor(data.stats().states.max)
        inside[clip] = bool(((nxt >= low) & (nxt <= high)).all())
    assert inside[True], "clipped: every generated state within the data's range"
    assert not inside[False], "an untrained model strays outside it when nothing clips"


@pytest.mark.slow
def test_diagnostics_leave_the_run_unchanged(dataset, tmp_path):
    """ε-diagnostics and the true error draw from streams of their own."""
    on = changed(
        TINY,
        diagnostics__model_error=True,
        diagnostics__true_error_every=1,
        diagnostics__true_error_samples=8,
    )
    off = changed(TINY, diagnostics__model_error=False, diagnostics__true_error_every=0)
    for name, adept in (("on", on), ("off", off)):
        train(config(dataset, tmp_path / name, method="adept", num_steps=15, adept=adept))
    logged = {name: rows(tmp_path / name) for name in ("on", "off")}
    assert "world_model/true_error_1step" in logged["on"][-1]
    assert "world_model/eps_m" not in logged["off"][-1]
    a = load_checkpoint(tmp_path / "on" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "off" / "checkpoint.pt")
    for part in ("agent",):
        for key, value in _flat(a[part]).items():
            assert torch.equal(value, _flat(b[part])[key]), key
    for key, value in a["method"]["world_model"]["model"].items():
        assert torch.equal(value, b["method"]["world_model"]["model"][key]), key
    shared = [k for k in logged["off"][-1] if k.startswith(("train/", "rollout/", "eval/"))]
    assert [[r[k] for k in shared] for r in logged["on"]] == [
        [r[k] for k in shared] for r in logged["off"]
    ]


def _flat(state, prefix=""):
    out = {}
    if isinstance(state, dict):
        for k, v in state.items():
            out.update(_flat(v, f"{prefix}{k}."))
    elif isinstance(state, torch.Tensor):
        out[prefix] = state
    return out


def test_logged_behavior_needs_log_probs(dataset, tmp_path):
    import numpy as np

    from adept.data.hdf5 import load_hdf5, save_hdf5

    stripped = save_hdf5(load_hdf5(dataset).replace(action_log_probs=None), tmp_path / "nolp.hdf5")
    cfg = config(
        str(stripped),
        tmp_path / "run",
        method="adept",
        adept=changed(TINY, pretrain__behavior="logged"),
    )
    needs = r"--adept\.pretrain\.behavior logged needs action_log_probs"
    with pytest.raises(AdeptError, match=needs):
        train(cfg)
    assert not (tmp_path / "run").exists(), "refused before anything is written"
    assert np.isfinite(
        train(
            config(
                dataset,
                tmp_path / "ok",
                method="adept",
                adept=changed(TINY, pretrain__behavior="logged"),
            )
        )["return_last"]
    )


def test_pretraining_keeps_the_ema_weights_with_the_best_held_out_loss(dataset, monkeypatch):
    from adept.data import load_hdf5
    from adept.diffusion.ema import parameters_of
    from adept.world_models.model import WorldModel
    from adept.world_models.pretrain import HeldOutSelector, pretrain

    seen: list[tuple[int, float]] = []
    consider = HeldOutSelector.consider

    scored: list[list[torch.Tensor]] = []

    def record(self, step, model):
        consider(self, step, model)
        seen.append((step, self.last_loss))
        scored.append(parameters_of(model))

    monkeypatch.setattr(HeldOutSelector, "consider", record)
    data = load_hdf5(dataset)
    config = changed(
        TINY, pretrain__steps=60, pretrain__select_every=10, pretrain__ema_decay=0.9, cache=False
    )
    cpu = torch.device("cpu")
    pretrain(data, config.world_model, replace(config.pretrain, ema_decay=0.0), 0, cpu)
    online = scored[0]  # the same training, unaveraged, at step 10
    seen.clear()
    scored.clear()
    result = pretrain(data, config.world_model, config.pretrain, seed=0, device=cpu)
    assert any(not torch.equal(a, b) for a, b in zip(scored[0], online, strict=True)), (
        "the candidates scored are the EMA's weights, not the trained ones"
    )
    metrics = result["metrics"]
    assert [step for step, _ in seen] == [10, 20, 30, 40, 50, 60]
    best_step, best_loss = min(seen, key=lambda s: s[1])
    assert metrics["world_model/selected_step"] == best_step
    assert metrics["world_model/heldout_loss"] == best_loss
    # the returned weights are the ones that scored it
    model = WorldModel(data, config.world_model, torch.device("cpu"))
    model.load_state_dict_all(result["world_model"])
    selector = HeldOutSelector(
        data.subset(holdout_of(data)), config.pretrain.select_rows, 0, torch.device("cpu")
    )
    assert model.heldout_loss(selector.rows, 0) == pytest.approx(best_loss, rel=1e-6)


def holdout_of(data):
    from adept.world_models.pretrain import holdout_mask

    return holdout_mask(len(data), TINY.pretrain.holdout_fraction, 0)


def test_weight_average_is_an_exponential_moving_average():
    from adept.diffusion.ema import weight_average

    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = weight_average(layer, 0.5)
    for value in (4.0, 8.0):
        with torch.no_grad():
            layer.weight.fill_(value)
        ema.update_parameters(layer)
    # starts at the weights it was made from: 0 → ½·0 + ½·4 = 2 → ½·2 + ½·8 = 5
    assert ema.module.weight.item() == 5.0
    assert layer.weight.item() == 8.0, "the averaged module is a copy"


@pytest.mark.slow
def test_ensemble_pretraining_stops_early_and_keeps_its_best_members_as_elites(dataset):
    from adept.data import load_hdf5
    from adept.world_models.model import WorldModel
    from adept.world_models.pretrain import pretrain

    data = load_hdf5(dataset)
    wm = replace(TINY.world_model, dynamics="ensemble", ensemble_size=4, ensemble_elites=2)
    config = PretrainConfig(steps=5000, select_every=20, select_patience=3, ema_decay=0.0)
    result = pretrain(data, wm, config, seed=0, device=torch.device("cpu"))
    steps = result["metrics"]["world_model/pretrain_steps"]
    assert steps < 5000 and steps % 20 == 0, "held-out early stopping ends pre-training"
    model = WorldModel(data, wm, torch.device("cpu"))
    model.load_state_dict_all(result["world_model"])
    held = data.subset(holdout_of(data))
    obs, act, nxt = (
        torch.as_tensor(x) for x in (held.observations, held.actions, held.next_observations)
    )
    errors = model.dynamics.member_errors(obs, act, nxt)  # type: ignore[attr-defined]
    assert sorted(model.dynamics.elites.tolist()) == sorted(torch.argsort(errors)[:2].tolist())


def test_selector_restores_the_best_candidate_not_the_last(dataset):
    from adept.data import load_hdf5
    from adept.world_models.model import WorldModel
    from adept.world_models.pretrain import HeldOutSelector, pretrain

    data = load_hdf5(dataset)
    config = changed(
        TINY, pretrain__steps=200, pretrain__select_every=0, pretrain__ema_decay=0.0, cache=False
    )
    trained = pretrain(data, config.world_model, config.pretrain, 0, torch.device("cpu"))
    trained = trained["world_model"]
    model = WorldModel(data, config.world_model, torch.device("cpu"))
    selector = HeldOutSelector(data.subset(holdout_of(data)), 8192, 0, torch.device("cpu"))
    fresh = copy.deepcopy(model.state_dict())
    model.load_state_dict_all(trained)
    good = copy.deepcopy(model.state_dict())
    selector.consider(100, model)
    model.load_state_dict(fresh)  # an untrained candidate scores worse
    selector.consider(200, model)
    assert selector.best_step == 100 and selector.stale == 1
    selector.restore(model)
    for key, value in good.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_real_share_can_grow_over_the_run(dataset):
    config = changed(TINY, mix__real_ratio=0.5, mix__real_ratio_final=1.0)
    _, method, _ = built(dataset, config, num_steps=101)
    assert [method.real_rows(s) for s in (0, 50, 100, 500)] == [16, 24, 32, 32]
    with pytest.raises(AdeptError, match="uncertainty-samples 2 or more"):
        built(dataset, changed(TINY, rollout__uncertainty_penalty=1.0))
