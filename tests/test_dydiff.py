"""DyDiff: the action-conditioned trajectory model, policy injection, the return filter, and
``--method dydiff`` in the training loop."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from adept.diffusion.unet import UNetSize
from adept.methods.dydiff import (
    Imagined,
    StateTrajectoryModel,
    imagine,
    select,
    to_batch,
)
from adept.methods.trajectories import SegmentRows, SegmentTraining
from tests.test_pgd import integrator

TINY = UNetSize(8, (1, 2), 3)


@pytest.mark.slow
def test_samples_start_at_the_given_state_and_follow_the_actions_after_training():
    """On s′ = s + a/2, sampled states given (s_0, a) follow the dynamics of those actions far
    better than the untrained model, and better than any model blind to the actions can (it can
    only draw increments from their marginal: mean error ≈ 0.47); row 0 is s_0 exactly;
    training is pure."""
    from adept.methods.dydiff import train_trajectory_model
    from tests.test_synther import trained_purely

    data = integrator()
    small = UNetSize(16, (1, 2), 3)
    training = SegmentTraining(
        small, length=8, stride=2, steps=400, batch_size=64, ema_decay=0.95, groups=4
    )
    cpu = torch.device("cpu")
    trained_purely(
        lambda: train_trajectory_model(data, replace(training, steps=20), seed=0, device=cpu)
    )
    trained = train_trajectory_model(data, training, seed=0, device=cpu)  # the long one: once
    g = torch.Generator().manual_seed(1)
    first = torch.randn(256, 2, generator=g)
    actions = torch.rand(256, 8, 2, generator=g) * 1.8 - 0.9

    def error(state):
        torch.manual_seed(0)
        model = StateTrajectoryModel(data, small, groups=4)
        if state is not None:
            model.load_state_dict(state)
        states = model.sample(first, actions, 16, generator=torch.Generator().manual_seed(2))
        assert torch.equal(states[:, 0], first), "row 0 is the given first state"
        step = states[:, 1:] - states[:, :-1] - actions[:, :-1] / 2
        return step.norm(dim=-1).mean().item()

    untrained, learnt = error(None), error(trained["model"])
    # measured: 0.23 after 400 steps, 2.50 untrained; 0.57 with the actions masked out of the
    # condition (the blind floor), 0.31 after 250 steps of batch 32
    assert learnt < 0.3 and learnt < 0.3 * untrained, (learnt, untrained)


def test_the_loss_is_conditional_on_the_actions():
    data = integrator()
    torch.manual_seed(0)
    model = StateTrajectoryModel(data, TINY, groups=2)
    for p in model.edm.net.out.parameters():
        torch.nn.init.normal_(p, std=0.05)
    obs = torch.randn(4, 8, 2)
    act = torch.rand(4, 8, 2)
    rows = SegmentRows(obs, act, torch.zeros(4, 8), torch.zeros(4, 8))
    moved = replace(rows, actions=act + 1.0)

    def loss(r):
        return model.loss(r, generator=torch.Generator().manual_seed(0))

    assert loss(rows).shape == (4,)
    assert not torch.allclose(loss(rows), loss(moved)), "the actions reach the denoiser"


class Stub:
    """Deterministic stand-ins: a policy a = tanh(s₀) on the first channel, a one-step model
    s′ = s + 1, a trajectory model returning s_0 + 10 t, and a reward head r = s′₀ with a
    terminal where s′₀ > 25."""

    class Dynamics:
        act_dim = 1

        def sample(self, obs, act):
            return obs + 1.0

        mode = sample

    def __init__(self):
        self.dynamics = self.Dynamics()
        self.queried: list[torch.Tensor] = []

    def sample_actions(self, obs, deterministic=False, noise=None):
        self.queried.append(obs.clone())
        return torch.tanh(obs[:, :1])

    def reward(self, obs, act, nxt):
        return nxt[:, 0], (nxt[:, 0] > 25).float() * 2 - 1

    def trajectories(self):
        outer = self

        class Model:
            def sample(self, first, actions, steps):
                outer.seen_actions = actions.clone()
                t = torch.arange(actions.shape[1], dtype=torch.float32)
                return first[:, None] + 10 * t[None, :, None]

        return Model()


def test_policy_injection_averages_the_diffused_states_and_requeries_the_policy():
    stub = Stub()
    starts = torch.tensor([[0.0, 0.0], [-30.0, 0.0]])
    plain = imagine(stub, stub.trajectories(), stub, starts, 4, 2, 0)  # type: ignore[arg-type]
    t = torch.arange(4, dtype=torch.float32)[None, :, None]
    torch.testing.assert_close(plain.observations, starts[:, None] + t)  # s_t = s_0 + t
    once = imagine(stub, stub.trajectories(), stub, starts, 4, 2, 1)  # type: ignore[arg-type]
    # one injection: (s_0 + 10 t + s_0 + t) / 2 = s_0 + 5.5 t
    torch.testing.assert_close(once.observations, starts[:, None] + 5.5 * t)
    torch.testing.assert_close(once.actions, torch.tanh(once.observations[..., :1]))
    torch.testing.assert_close(stub.queried[-1], once.observations.flatten(0, 1))
    torch.testing.assert_close(stub.seen_actions, torch.tanh((starts[:, None] + t)[..., :1]))
    twice = imagine(stub, stub.trajectories(), stub, starts, 4, 2, 2)  # type: ignore[arg-type]
    torch.testing.assert_close(twice.observations, starts[:, None] + 7.75 * t)
    # rewards r_t = s_{t+1,0}; the first trajectory ends at its first s′₀ > 25 (t = 2: 23.25 → 31)
    torch.testing.assert_close(twice.rewards[0], torch.tensor([7.75, 15.5, 23.25]))
    assert twice.terminals[0].tolist() == [False, False, False]
    far = imagine(stub, stub.trajectories(), stub, starts + 10, 4, 2, 2)  # type: ignore[arg-type]
    assert far.terminals[0].tolist() == [False, True, True]
    assert far.alive()[0].tolist() == [True, True, False], "up to the first terminal"
    assert far.returns()[0].item() == pytest.approx(17.75 + 25.5)


def test_without_injection_the_actions_are_those_that_made_the_states():
    """A stochastic policy: the one-step rollout keeps the actions it stepped with (re-drawing
    them afterwards would pair each s_{t+1} with an action that did not produce it)."""

    noisy = Noisy()
    torch.manual_seed(0)
    out = imagine(noisy, None, noisy, torch.zeros(8, 1), 5, 2, 0, deterministic=False)  # type: ignore[arg-type]
    steps = out.observations[:, 1:] - out.observations[:, :-1]
    torch.testing.assert_close(steps, out.actions[:, :-1])


class Noisy(Stub):
    """A stochastic policy a = s + ε (ε the given standard normal draw, or a fresh one; its mode
    a = s) in a one-step model s′ = s + a, so the states record the actions."""

    def sample_actions(self, obs, deterministic=False, noise=None):
        if deterministic:
            return obs[:, :1].clone()
        eps = torch.randn(len(obs), 1) if noise is None else noise
        return obs[:, :1] + eps

    class Dynamics:
        act_dim = 1

        def sample(self, obs, act):
            return obs + act

        def mode(self, obs, act):
            raise AssertionError("a sampled rollout steps the one-step model's samples")

    def __init__(self):
        super().__init__()
        self.dynamics = self.Dynamics()


class Echo:
    """A trajectory model that returns the states the actions make: s_t = s_0 + Σ_{u<t} a_u."""

    def sample(self, first, actions, steps):
        moves = torch.cumsum(actions[:, :-1], dim=1)
        return torch.cat([first[:, None], first[:, None] + moves], dim=1)


def test_policy_injection_requeries_a_stochastic_policy_with_the_same_noise():
    """Where injection leaves the states where they were, the re-queried actions are the ones
    the states were made with: π's noise is drawn once per step, not again at each re-query
    (fresh noise would pair every s_{t+1} with an action that did not make it)."""

    noisy = Noisy()
    torch.manual_seed(0)
    plain = imagine(noisy, None, noisy, torch.zeros(8, 1), 5, 2, 0, deterministic=False)  # type: ignore[arg-type]
    torch.manual_seed(0)
    out = imagine(noisy, Echo(), noisy, torch.zeros(8, 1), 5, 2, 2, deterministic=False)  # type: ignore[arg-type]
    torch.testing.assert_close(out.observations, plain.observations)
    torch.testing.assert_close(out.actions, plain.actions)
    steps = out.observations[:, 1:] - out.observations[:, :-1]
    torch.testing.assert_close(steps, out.actions[:, :-1])


def test_by_default_injection_follows_the_policys_mode_and_the_models_mean():
    """DyDiff's code: π(s, deterministic=True) and the one-step model's mean, in the initial
    rollout and at every re-query; no random draw."""

    class Modes(Noisy):
        class Dynamics:
            act_dim = 1

            def sample(self, obs, act):
                raise AssertionError("a deterministic rollout steps the one-step model's mean")

            def mode(self, obs, act):
                return obs + act

        def __init__(self):
            super().__init__()
            self.dynamics = self.Dynamics()

    modes = Modes()
    starts = torch.tensor([[1.0], [-0.5]])
    state = torch.get_rng_state()
    out = imagine(modes, Echo(), modes, starts, 4, 2, 2)  # type: ignore[arg-type]
    assert torch.equal(torch.get_rng_state(), state), "no random draw"
    t = torch.arange(4, dtype=torch.float32)[None, :, None]
    torch.testing.assert_close(out.observations, starts[:, None] * 2**t)  # a = s, s′ = 2s
    torch.testing.assert_close(out.actions, out.observations)


def _imagined(returns, terminal_at=None):
    n = len(returns)
    obs = torch.arange(n, dtype=torch.float32)[:, None, None].expand(n, 4, 1).clone()
    rewards = torch.tensor(returns, dtype=torch.float32)[:, None].expand(n, 3) / 3
    terminals = torch.zeros(n, 3, dtype=torch.bool)
    if terminal_at is not None:
        terminals[0, terminal_at] = True
    return Imagined(obs, torch.zeros(n, 4, 1), rewards, terminals, torch.zeros(()))


def test_the_filter_keeps_the_best_share():
    returns = torch.tensor([3.0, -1.0, 9.0, 0.0, 5.0])
    assert select(returns, 0.6, "top", 0.05).tolist() == [0, 2, 4]
    assert select(returns, 0.0, "top", 0.05).tolist() == []
    assert select(returns, 1.0, "top", 0.05).tolist() == [0, 1, 2, 3, 4]
    g = torch.Generator().manual_seed(0)
    # a low temperature is the hard filter; a high one keeps low returns too
    assert select(returns, 0.6, "softmax", 0.01, g).tolist() == [0, 2, 4]
    drawn = [tuple(select(returns, 0.4, "softmax", 100.0, g).tolist()) for _ in range(200)]
    assert any(1 in d or 3 in d for d in drawn)


def test_kept_trajectories_become_transitions_up_to_the_first_terminal():
    imagined = _imagined([3.0, 6.0], terminal_at=1)
    batch = to_batch(imagined, torch.tensor([0, 1]))
    # trajectory 0: 2 transitions, the second terminal; trajectory 1: 3, a timeout at the end
    assert len(batch) == 5
    assert batch.terminals.tolist() == [0, 1, 0, 0, 0]
    assert batch.timeouts.tolist() == [0, 0, 0, 0, 1]
    assert batch.observations[:, 0].tolist() == [0, 0, 1, 1, 1]


# --- the method: presets, options, rollouts, the cache, resume ---------------------------------


@pytest.fixture(scope="module")
def hopper_path(tmp_path_factory) -> str:
    from adept.datasets.generate import make_dataset

    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=2000, seed=0, progress=False))


def run_config(dataset, run_dir, **kw):
    from adept.methods.dydiff import PRESETS
    from adept.world_models.model import WorldModelConfig
    from tests.test_methods import config as methods_config

    # 16 starts of 8 rows at steps 0 and 5 of a 10-step run; a small one-step ensemble
    ensemble = WorldModelConfig(
        dynamics="ensemble", hidden=32, depth=2, ensemble_size=3, ensemble_elites=2
    )
    smoke = replace(PRESETS["smoke"], rollout_batch=16, one_step=ensemble, one_step_steps=50)
    return methods_config(dataset, run_dir, **{"method": "dydiff", "dydiff": smoke, **kw})


def test_presets_are_configs_that_the_options_change():
    from adept.cli import parse_train
    from adept.methods.dydiff import PRESETS, DyDiffConfig

    assert DyDiffConfig() == PRESETS["cpu"], "the defaults are the 'cpu' preset"
    paper = PRESETS["paper"]
    assert paper.training().size.dim == 128 and paper.length == 100
    flags = ["--dydiff.preset", "paper", "--dydiff.network", "cpu", "--dydiff.rollout-batch", "64"]
    mine = parse_train(["--method", "dydiff", *flags]).dydiff
    assert mine == replace(paper, network="cpu", rollout_batch=64)
    assert paper.one_step.dynamics == "ensemble" and paper.one_step_pretrain().ema_decay == 0.0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"real_ratio": 1.1}, "--dydiff.real-ratio must be in"),
        ({"keep_fraction": -0.5}, "--dydiff.keep-fraction must be in"),
        ({"length": 1}, "--dydiff.length must be at least 2"),
        ({"rollout_every": 0}, "--dydiff.rollout-every must be positive"),
        ({"iterative_times": -1}, "--dydiff.iterative-times must be ≥ 0"),
        ({"temperature": 0.0}, "--dydiff.temperature must be positive"),
    ],
)
def test_bad_options_fail_before_anything_is_written(hopper_path, tmp_path, option, message):
    from tests.test_methods import refuses_before_writing

    refuses_before_writing(run_config(hopper_path, tmp_path / "run"), option, message)


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["iql", "sac", "td3bc", "bc"])
def test_dydiff_trains_every_agent_and_rolls_out_on_schedule(hopper_path, tmp_path, agent):
    from adept.training import train
    from tests.helpers import rows

    summary = train(run_config(hopper_path, tmp_path / "run", agent=agent))
    assert summary["steps"] == 10 and np.isfinite(summary["normalized_score_last"])
    logged = rows(tmp_path / "run")
    rounds = [int(r["step"]) for r in logged if r.get("dydiff/buffer_size")]
    assert rounds == [0, 5], "at set-up and every 5 steps, not at the run's last step"
    first = logged[0]
    assert np.isfinite(float(first["dydiff/loss"])) and "one_step/heldout_loss" in first
    kept = round(0.6 * 16)  # ≤ 7 transitions each
    assert 0 < float(first["dydiff/buffer_size"]) <= kept * 7
    assert float(first["dydiff/return_kept"]) >= float(first["dydiff/return_all"])
    assert float(first["dydiff/true_error_1"]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("real_ratio", [0.0, 0.6, 1.0])
def test_batches_hold_the_configured_share_of_real_rows(hopper_path, real_ratio):
    from adept.agents import IQL, AgentSpec, IQLConfig
    from adept.data.buffer import ReplayBuffer
    from adept.datasets.registry import load_dataset
    from adept.methods import make_method
    from tests.test_methods import real_share

    data = load_dataset(hopper_path)
    config = replace(run_config(hopper_path, None).dydiff, real_ratio=real_ratio)
    buffer = ReplayBuffer.from_transitions(data, device="cpu", seed=0)
    method = make_method("dydiff", data, buffer, 32, config, seed=0, num_steps=100)
    torch.manual_seed(0)
    method.setup(IQL(AgentSpec.from_data(data, 100, torch.device("cpu")), IQLConfig(hidden=16)))
    batch = method.sample(0)
    assert len(batch) == 32
    # imagined trajectories start at real states: count the real next states
    expected = round(32 * real_ratio)
    assert real_share(batch, data, "next_observations") == expected, "exactly the share"


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [True, False])
def test_the_rollouts_follow_the_configured_policy_and_model_draws(
    hopper_path, monkeypatch, deterministic
):
    """``--dydiff.deterministic`` (on by default, DyDiff's) reaches the set-up's and every later
    round's rollouts: π's mode and the one-step model's mean, or samples of both."""
    import adept.methods.dydiff as dydiff
    from adept.agents import IQL, AgentSpec, IQLConfig
    from adept.data.buffer import ReplayBuffer
    from adept.datasets.registry import load_dataset
    from adept.methods import make_method

    assert dydiff.DyDiffConfig().deterministic, "DyDiff's code imagines deterministically"
    data = load_dataset(hopper_path)
    config = replace(run_config(hopper_path, None).dydiff, deterministic=deterministic)
    method = make_method(
        "dydiff", data, ReplayBuffer.from_transitions(data, seed=0), 32, config, 0, num_steps=100
    )
    agent = IQL(AgentSpec.from_data(data, 100, torch.device("cpu")), IQLConfig(hidden=16))
    drawn: list[bool] = []
    monkeypatch.setattr(agent.actor, "sample", lambda obs, deterministic, noise: (
        drawn.append(not deterministic) or torch.zeros(len(obs), data.act_dim)
    ))  # fmt: skip
    model = method.world_model.dynamics
    monkeypatch.setattr(model, "sample", lambda obs, act: drawn.append(True) or obs)
    monkeypatch.setattr(model, "mode", lambda obs, act: drawn.append(False) or obs)
    method.setup(agent)
    method.after_update(4, agent)  # step 5: a rollout round
    assert len(drawn) > 8 and set(drawn) == {not deterministic}


@pytest.mark.slow
def test_both_models_are_cached_and_shared(hopper_path, tmp_path, monkeypatch):
    import adept.methods.dydiff as dydiff
    from adept.training import train

    train(run_config(hopper_path, tmp_path / "iql"))
    artifacts = tmp_path / "adept-data" / "artifacts"
    assert len(list((artifacts / "dydiff").glob("*.pt"))) == 1
    assert len(list((artifacts / "pretrain").glob("*.pt"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cached models should have been reused")

    monkeypatch.setattr(dydiff, "train_trajectory_model", fail)
    monkeypatch.setattr(dydiff, "pretrain", fail)
    train(run_config(hopper_path, tmp_path / "td3bc", agent="td3bc"))


@pytest.mark.slow
@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_resume_is_exact(hopper_path, tmp_path, monkeypatch, cache):
    from tests.test_methods import resumes_exactly

    def make(name):
        config = run_config(hopper_path, tmp_path / name, num_steps=20, eval_every=20)
        return replace(config, dydiff=replace(config.dydiff, cache=cache))

    resumes_exactly(make, tmp_path, monkeypatch, "models", cache)


@pytest.mark.parametrize(("method", "option"), [("dydiff", "length"), ("pgd", "train_length")])
def test_a_segment_no_episode_holds_is_refused_before_anything_is_written(tmp_path, method, option):
    """Both trajectory methods refuse a training length that no episode holds (halfcheetah's
    episodes end only by time limit, so short ones cannot be padded) in one line naming it."""
    from adept.datasets.generate import make_dataset
    from tests.test_methods import refuses_before_writing
    from tests.test_pgd import run_config as pgd_config

    path = make_dataset("halfcheetah-random", tmp_path / "hc.hdf5", num_steps=2000, seed=0)
    make = run_config if method == "dydiff" else pgd_config
    flag = f"--{method}.{option.replace('_', '-')}"
    refuses_before_writing(make(str(path), tmp_path / "run"), {option: 1001}, f"lower {flag}$")
