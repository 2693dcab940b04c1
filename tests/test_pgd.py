"""Policy-Guided Diffusion: the segment model's rows, the way back to transitions, training,
guidance, and ``--method pgd`` in the training loop."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from adept.data.segments import gather_segments, segment_starts
from adept.data.transitions import Transitions
from adept.diffusion.unet import UNetSize
from adept.methods.pgd import ACTION_CLIP, SegmentModel, SegmentRows, unstack

TINY = UNetSize(8, (1, 2), 3)


@pytest.fixture(scope="module")
def hopper_path(tmp_path_factory) -> str:
    from adept.datasets.generate import make_dataset

    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=2000, seed=0, progress=False))


@pytest.fixture(scope="module")
def hopper(hopper_path):
    from adept.data.hdf5 import load_hdf5

    return load_hdf5(hopper_path)


def test_rows_are_standardized_with_actions_through_arctanh(hopper):
    torch.manual_seed(0)
    model = SegmentModel(hopper, TINY, groups=2)
    everything = SegmentRows.of(gather_segments(hopper, np.arange(len(hopper)), 1))
    x = model.encode(everything)  # every row once, as segments of one row
    assert x.shape == (len(hopper), 1, hopper.obs_dim + hopper.act_dim + 2)
    flat = x[:, 0]
    assert flat.mean(0).abs().max() < 1e-3 and (flat.std(0) - 1).abs().max() < 1e-3
    back = model.decode(x)
    np.testing.assert_allclose(back.observations[:, 0], hopper.observations, atol=1e-4)
    np.testing.assert_allclose(back.rewards[:, 0], hopper.rewards, atol=1e-4)
    # actions come back through tanh: exact inside the clip, at ±0.999 beyond it
    clipped = np.clip(hopper.actions, -ACTION_CLIP, ACTION_CLIP)
    np.testing.assert_allclose(back.actions[:, 0], clipped, atol=1e-4)
    assert np.array_equal(back.terminals[:, 0].numpy() > 0, hopper.terminals)
    loss = model.loss(SegmentRows.of(gather_segments(hopper, np.array([0, 5]), 8)))
    assert loss.shape == (2,) and torch.isfinite(loss).all()


def test_unstack_gives_back_the_recorded_transitions_up_to_each_terminal(hopper):
    starts = segment_starts(hopper, length=16, stride=3, short="pad")
    seg = gather_segments(hopper, starts, 16)
    assert (~seg.mask[:, :-1]).any(), "short episodes padded: rows after terminals to drop"
    out = unstack(SegmentRows.of(seg), env_id="Hopper-v5")
    # expected: rows start + t for t ≤ 14, up to and including a terminal (the padding dropped);
    # every terminal of the data is among them (the terminal windows end one row after it)
    expected = []
    for start in seg.starts:
        for t in range(15):
            expected.append(start + t)
            if hopper.terminals[start + t]:
                break
    expected = np.array(expected)
    assert len(out) == len(expected)
    np.testing.assert_array_equal(out.observations, hopper.observations[expected])
    np.testing.assert_array_equal(out.next_observations, hopper.next_observations[expected])
    np.testing.assert_array_equal(out.rewards, hopper.rewards[expected])
    np.testing.assert_array_equal(out.terminals, hopper.terminals[expected])
    # each segment is an episode: its terminal, or a timeout at its last transition
    assert out.num_episodes == len(starts) and out.env_id == "Hopper-v5"
    assert (out.terminals | out.timeouts).sum() == len(starts)
    assert set(np.flatnonzero(hopper.terminals)) <= set(expected.tolist())


def integrator(episodes: int = 256, length: int = 16, seed: int = 0) -> Transitions:
    """s′ = s + a/2 in 2-D, episodes of ``length`` steps cut by timeouts: a dynamics a segment
    model must learn across rows and channels together."""
    g = np.random.default_rng(seed)
    obs, act = [], []
    for _ in range(episodes):
        s = g.normal(size=2)
        for _ in range(length):
            a = g.uniform(-0.9, 0.9, size=2)
            obs.append(s)
            act.append(a)
            s = s + a / 2
    obs_arr, act_arr = np.array(obs, np.float32), np.array(act, np.float32)
    timeouts = np.zeros(len(obs), dtype=bool)
    timeouts[length - 1 :: length] = True
    return Transitions(
        observations=obs_arr,
        actions=act_arr,
        rewards=act_arr[:, 0],
        next_observations=obs_arr + act_arr / 2,
        terminals=np.zeros(len(obs), dtype=bool),
        timeouts=timeouts,
    )


@pytest.mark.slow
def test_training_is_pure_and_teaches_the_model_the_dynamics():
    """Segments generated after training follow s_{t+1} = s_t + a_t / 2 far better than the
    untrained model's; training twice gives the same weights; the caller's RNG is untouched."""
    from adept.methods.pgd import SegmentTraining, train_segment_model

    data = integrator()
    small = UNetSize(16, (1, 2), 3)
    training = SegmentTraining(
        small, length=8, stride=2, steps=400, batch_size=64, ema_decay=0.95, groups=4
    )
    from tests.test_synther import trained_purely

    cpu = torch.device("cpu")
    trained_purely(
        lambda: train_segment_model(data, replace(training, steps=20), seed=0, device=cpu)
    )
    trained = train_segment_model(data, training, seed=0, device=cpu)  # the long one: once

    def error(state):
        torch.manual_seed(0)
        model = SegmentModel(data, small, groups=4)
        if state is not None:
            model.load_state_dict(state)
        x = model.edm.sample(
            (256, 8, model.channels), 16, generator=torch.Generator().manual_seed(1)
        )
        rows = model.decode(x)
        step = rows.observations[:, 1:] - rows.observations[:, :-1] - rows.actions[:, :-1] / 2
        return step.norm(dim=-1).mean().item()

    untrained, learnt = error(None), error(trained["model"])
    # measured: 0.21 after 400 steps, 2.55 untrained
    assert learnt < 0.3 * untrained, (learnt, untrained)


class Toward(torch.nn.Module):
    """A toy stochastic policy π(a | s) = N(a; 0.5, 0.2²) for every s."""

    def log_prob(self, obs, act):
        from adept.nets import gaussian_log_prob

        return gaussian_log_prob(act, torch.full_like(act, 0.5), torch.full_like(act, 0.2).log())


@pytest.mark.slow
def test_guidance_raises_log_pi_and_zero_guidance_is_the_unguided_sampler():
    from adept.methods.pgd import generate

    data = integrator()
    torch.manual_seed(0)
    model = SegmentModel(data, UNetSize(8, (1, 2), 3), groups=2)
    for p in model.edm.net.out.parameters():  # an untrained but non-trivial denoiser
        torch.nn.init.normal_(p, std=0.05)
    actor = Toward()

    def run(coeff):
        rows = generate(model, actor, 64, 8, 12, coeff, generator=torch.Generator().manual_seed(2))
        return rows, actor.log_prob(None, rows.actions.flatten(0, 1)).mean().item()

    plain = model.decode(
        model.edm.sample((64, 8, model.channels), 12, generator=torch.Generator().manual_seed(2))
    )
    zero, _ = run(0.0)
    assert torch.equal(zero.actions, plain.actions) and torch.equal(
        zero.observations, plain.observations
    )
    _, log_pi_plain = run(0.0)
    _, log_pi_guided = run(0.05)
    # measured: mean log π of the actions −13.9 unguided, −5.6 guided
    assert log_pi_guided > log_pi_plain + 1.0, (log_pi_plain, log_pi_guided)


def test_a_deterministic_actor_guides_as_a_unit_gaussian():
    from adept.methods.pgd import guidance_log_prob
    from adept.nets import DeterministicActor, Normalizer

    torch.manual_seed(0)
    actor = DeterministicActor(2, 2, Normalizer.identity(2), hidden=8, depth=1, noise=0.1)
    obs, act = torch.randn(5, 2), torch.rand(5, 2) * 2 - 1
    mean = actor(obs)
    expected = (-0.5 * (act - mean) ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    torch.testing.assert_close(guidance_log_prob(actor, obs, act), expected)
    assert not torch.allclose(actor.log_prob(obs, act), expected), "its own density is σ = 0.1"


# --- the method: presets, options, regeneration, the cache, resume -----------------------------


def run_config(dataset, run_dir, **kw):
    from adept.methods.pgd import PRESETS
    from tests.test_methods import config as methods_config

    # 16 segments of 9 rows (≤ 128 transitions) at steps 0 and 5 of a 10-step run
    smoke = replace(PRESETS["smoke"], num_segments=16, segment_length=9, regenerate_every=5)
    return methods_config(dataset, run_dir, **{"method": "pgd", "pgd": smoke, **kw})


def test_presets_are_configs_that_the_options_change():
    from adept.cli import parse_train
    from adept.methods.pgd import PRESETS, PGDConfig

    assert PGDConfig() == PRESETS["cpu"], "the defaults are the 'cpu' preset"
    paper = PRESETS["paper"]
    assert (paper.network, paper.segment_length) == ("pgd", 129)
    assert paper.training().size.dim == 1024 and paper.num_segments == 8192
    flags = ["--pgd.preset=paper", "--pgd.network", "cpu", "--pgd.sample-steps", "16"]
    mine = parse_train(["--method", "pgd", *flags]).pgd
    assert mine == replace(paper, network="cpu", sample_steps=16)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"real_ratio": -0.1}, "--pgd.real-ratio must be in"),
        ({"segment_length": 1}, "--pgd.segment-length must be at least 2"),
        ({"sample_steps": 1}, "--pgd.sample-steps must be at least 2"),
        ({"regenerate_every": 0}, "--pgd.regenerate-every must be positive"),
        ({"guidance": -1.0}, "--pgd.guidance must be ≥ 0"),
        ({"ema_decay": 1.0}, "--pgd.ema-decay must be in"),
    ],
)
def test_bad_options_fail_before_anything_is_written(hopper_path, tmp_path, option, message):
    from tests.test_methods import refuses_before_writing

    refuses_before_writing(run_config(hopper_path, tmp_path / "run"), option, message)


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["iql", "sac", "td3bc", "bc"])
def test_pgd_trains_every_agent_and_regenerates_on_schedule(hopper_path, tmp_path, agent):
    from adept.training import train
    from tests.helpers import rows

    summary = train(run_config(hopper_path, tmp_path / "run", agent=agent))
    assert summary["steps"] == 10 and np.isfinite(summary["normalized_score_last"])
    logged = rows(tmp_path / "run")
    generated = [int(r["step"]) for r in logged if r.get("pgd/transitions")]
    assert generated == [0, 5], "at set-up and every 5 steps, not at the run's last step"
    first = logged[0]
    assert np.isfinite(float(first["pgd/loss"])), "the model's training metrics at step 0"
    assert 0 < float(first["pgd/transitions"]) <= 16 * 8
    assert np.isfinite(float(first["pgd/log_pi"])) and float(first["pgd/true_error"]) > 0


def _method(dataset: str, real_ratio: float = 0.25, batch_size: int = 32, **kw):
    from dataclasses import replace

    from adept.agents import IQL, AgentSpec, IQLConfig
    from adept.data.buffer import ReplayBuffer
    from adept.datasets.registry import load_dataset
    from adept.methods import make_method

    data = load_dataset(dataset)
    config = replace(run_config(dataset, None).pgd, real_ratio=real_ratio, **kw)
    buffer = ReplayBuffer.from_transitions(data, device="cpu", seed=0)
    method = make_method("pgd", data, buffer, batch_size, config, seed=0, num_steps=100)
    torch.manual_seed(0)
    agent = IQL(AgentSpec.from_data(data, 100, torch.device("cpu")), IQLConfig(hidden=16))
    method.setup(agent)
    return data, method, agent


@pytest.mark.slow
@pytest.mark.parametrize("real_ratio", [0.0, 0.25, 1.0])
def test_batches_hold_the_configured_share_of_real_rows(hopper_path, real_ratio):
    from tests.test_methods import real_share

    data, method, _ = _method(hopper_path, real_ratio)
    batch = method.sample(0)
    assert len(batch) == 32
    assert real_share(batch, data) == round(32 * real_ratio), "exactly the share, not merely some"


@pytest.mark.slow
def test_regeneration_replaces_the_synthetic_data_with_the_current_policys(hopper_path):
    """Each regeneration empties the buffer and refills it with segments of the actor as it is
    now: guided toward a moved actor, the new actions are likelier under it than the old."""
    from adept.methods.pgd import guidance_log_prob

    _, method, agent = _method(hopper_path, guidance=20.0)
    s = method.synthetic
    before = s.actions[: len(s)].clone()
    _, unguided, _ = _method(hopper_path, guidance=0.0)
    assert torch.equal(before, unguided.synthetic.actions[: len(s)]), (
        "the set-up's segments are unguided (PGD's code: the actor is untrained then)"
    )
    with torch.no_grad():  # move the actor's mean far from where it was, and narrow it
        agent.actor.net[-1].bias.add_(1.5)
        agent.actor.log_std.fill_(math.log(0.2))
    metrics = method.after_update(4, agent)  # step 5 of a 100-step run: a regeneration
    after = method.synthetic
    assert len(after) == int(metrics["pgd/transitions"]), "replaced, not appended"
    old_rows = {row.tobytes() for row in before.numpy()}
    assert not any(row.tobytes() in old_rows for row in after.actions[: len(after)].numpy())
    obs = after.observations[: len(after)]
    with torch.no_grad():
        new = guidance_log_prob(agent.actor, obs, after.actions[: len(after)].clamp(-0.999, 0.999))
        old = guidance_log_prob(agent.actor, obs[: len(before)], before[: len(obs)])
    # measured: mean log π −33 for the new actions, −63 for the old, under the moved actor
    assert new.mean() > old.mean() + 10.0, (new.mean(), old.mean())


@pytest.mark.slow
def test_the_segment_model_is_cached_and_shared(hopper_path, tmp_path, monkeypatch):
    import adept.methods.pgd as pgd
    from adept.training import train

    train(run_config(hopper_path, tmp_path / "iql"))
    assert len(list((tmp_path / "adept-data" / "artifacts" / "pgd").glob("*.pt"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cached segment model should have been reused")

    monkeypatch.setattr(pgd, "train_segment_model", fail)
    train(run_config(hopper_path, tmp_path / "td3bc", agent="td3bc"))


@pytest.mark.slow
@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_resume_is_exact(hopper_path, tmp_path, monkeypatch, cache):
    from dataclasses import replace

    from tests.test_methods import resumes_exactly

    def make(name):
        config = run_config(hopper_path, tmp_path / name, num_steps=20, eval_every=20)
        return replace(config, pgd=replace(config.pgd, real_ratio=0.5, cache=cache))

    resumes_exactly(make, tmp_path, monkeypatch, "model", cache)


@pytest.mark.slow
def test_the_true_error_diagnostic_leaves_the_run_as_it_is(hopper_path, tmp_path):
    from dataclasses import replace

    from adept.store.runs import load_checkpoint
    from adept.training import train

    config = run_config(hopper_path, tmp_path / "on")
    train(config)
    train(replace(config, run_dir=tmp_path / "off", pgd=replace(config.pgd, true_error_samples=0)))
    a = load_checkpoint(tmp_path / "on" / "checkpoint.pt")["agent"]["actor"]
    b = load_checkpoint(tmp_path / "off" / "checkpoint.pt")["agent"]["actor"]
    assert all(torch.equal(a[k], b[k]) for k in a)
