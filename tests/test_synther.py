"""SynthER's transition generator: layout, standardization, training and sample quality."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from adept.data.buffer import Batch
from adept.data.transitions import Transitions
from adept.diffusion.edm import EDMConfig
from adept.diffusion.training import DiffusionTrainer
from adept.methods.synther import TransitionModel
from tests.test_methods import config as methods_config


def linear_system(n: int = 4000, seed: int = 0) -> Transitions:
    """s′ = s + a, r = a₀ − a₁, terminal where s₀ + a₀ > 1.6: a structure a generator must learn
    jointly, not dimension by dimension."""
    g = np.random.default_rng(seed)
    obs = g.normal(size=(n, 2)).astype(np.float32)
    act = g.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    nxt = obs + act
    return Transitions(
        observations=obs,
        actions=act,
        rewards=act[:, 0] - act[:, 1],
        next_observations=nxt,
        terminals=nxt[:, 0] > 1.6,
        timeouts=np.zeros(n, dtype=bool),
    )


def dynamics_error(batch: Batch) -> float:
    return float((batch.next_observations - batch.observations - batch.actions).norm(dim=1).mean())


def test_layout_standardization_and_round_trip():
    data = linear_system()
    model = TransitionModel(data, hidden=16, depth=1)
    batch = Batch.of(data)
    x = model.encode(batch)
    assert x.shape == (len(data), 2 + 2 + 1 + 2 + 1)
    assert x[:, :-1].mean(0).abs().max() < 1e-4 and (x[:, :-1].std(0) - 1).abs().max() < 1e-3
    assert torch.equal(x[:, -1], batch.terminals), "the terminal flag is left in {0, 1}"
    back = model.decode(x)
    for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
        torch.testing.assert_close(getattr(back, name), getattr(batch, name), atol=1e-5, rtol=0)
    assert back.timeouts.sum() == 0


def test_decoded_terminals_are_thresholded_at_one_half():
    model = TransitionModel(linear_system(), hidden=16, depth=1)
    x = torch.zeros(3, model.dim)
    x[:, -1] = torch.tensor([0.2, 0.49, 0.51])
    assert model.decode(x).terminals.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.slow
def test_training_teaches_the_generator_the_dynamics():
    torch.manual_seed(0)
    data = linear_system()
    model = TransitionModel(data, hidden=64, depth=2)
    untrained = dynamics_error(model.sample(2000, 24, torch.Generator().manual_seed(1)))
    trainer = DiffusionTrainer(model, num_steps=800, lr=2e-3, prefix="synther")
    batches = Batch.of(data)
    g = torch.Generator().manual_seed(2)
    for _ in range(800):
        out = trainer.step(batches.take(torch.randint(len(data), (256,), generator=g)))
    samples = model.sample(2000, 24, torch.Generator().manual_seed(1))
    trained = dynamics_error(samples)
    data_scale = dynamics_error(Batch.of(data.replace(next_observations=data.observations)))
    # measured: trained 0.071, untrained 2.16, |a| (what s′ = s would miss) 0.76
    assert trained < 0.2 * data_scale and trained < 0.2 * untrained, (trained, untrained)
    assert out["synther/lr"].item() == pytest.approx(0.0, abs=1e-9), "the cosine ends at 0"
    assert 0.0 < samples.terminals.mean().item() < 0.5


def test_gradients_are_clipped_to_the_configured_norm():
    data = linear_system(n=512)
    model = TransitionModel(data, hidden=16, depth=1)
    trainer = DiffusionTrainer(model, num_steps=10, grad_clip=1e-3, prefix="synther")
    out = trainer.step(Batch.of(data))
    assert out["synther/grad_norm"].item() > 1e-3, "the norm before clipping is reported"
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    after = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert after.item() == pytest.approx(1e-3, rel=1e-3), "the step used the clipped gradient"


def test_upsampled_data_round_trips_through_a_d4rl_file(tmp_path):
    from adept.data.hdf5 import load_hdf5, save_hdf5
    from adept.datasets.summary import summarize
    from adept.methods.synther import upsample

    torch.manual_seed(0)
    model = TransitionModel(linear_system(), hidden=16, depth=1)
    synthetic = upsample(
        model, 70, 32, 4, generator=torch.Generator().manual_seed(1), env_id="Hopper-v5"
    )
    assert len(synthetic) == 70 and synthetic.metadata["kind"] == "synther"
    assert np.array_equal(synthetic.timeouts, ~synthetic.terminals), "one-step episodes"
    path = save_hdf5(synthetic, tmp_path / "synthetic.hdf5", metadata={"source_dataset": "toy"})
    back = load_hdf5(path)
    for name, value in synthetic.arrays().items():
        assert np.array_equal(getattr(back, name), value), name
    assert back.env_id == "Hopper-v5" and back.metadata["source_dataset"] == "toy"
    assert back.num_episodes == 70, "each transition an episode of its own"
    info = summarize(back)
    assert info["transitions"] == 70 and info["terminals"] == int(synthetic.terminals.sum())
    with pytest.raises(ValueError, match="n ≥ 1"):
        upsample(model, 0, 32, 4)


def test_upsampled_actions_are_clipped_to_the_bounds_and_the_share_is_recorded():
    from adept.methods.synther import upsample

    torch.manual_seed(0)
    model = TransitionModel(linear_system(), hidden=16, depth=1)  # untrained: actions spill out
    low, high = np.array([-0.5, -1.0], np.float32), np.array([0.5, 1.0], np.float32)
    raw = upsample(model, 200, 64, 4, generator=torch.Generator().manual_seed(1))
    clipped = upsample(
        model, 200, 64, 4, generator=torch.Generator().manual_seed(1), action_bounds=(low, high)
    )
    outside = ((raw.actions < low) | (raw.actions > high)).any(axis=1)
    assert 0.2 < outside.mean() < 1.0, "the untrained generator's actions cross the bounds"
    assert clipped.metadata["actions_clipped"] == pytest.approx(outside.mean())
    assert np.array_equal(clipped.actions, np.clip(raw.actions, low, high))
    assert np.array_equal(clipped.next_observations, raw.next_observations), "only actions move"
    assert "actions_clipped" not in raw.metadata


@pytest.mark.slow
def test_the_terminal_classifier_relabels_wrong_flags():
    """Terminal where s′₀ > 1.6 (linear_system): a set of transitions whose flags are a
    generator's guesses — a fifth of them flipped — comes back with the true flags."""
    from adept.methods.synther import relabel_terminals, terminal_classifier

    data = linear_system(n=8000)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    classifier = terminal_classifier(data, 1500, seed=0, device=torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), before), "the caller's RNG is left as it was"
    test = linear_system(n=4000, seed=1)
    flipped = np.random.default_rng(2).random(len(test)) < 0.2
    guessed = test.replace(terminals=test.terminals ^ flipped, timeouts=np.zeros(4000, bool))
    relabelled = relabel_terminals(guessed, classifier, torch.device("cpu"))
    assert (relabelled.terminals != test.terminals).mean() < 0.01
    assert np.array_equal(relabelled.timeouts, ~relabelled.terminals), "one-step episodes"
    assert relabelled.metadata["terminals_relabelled"] == pytest.approx(flipped.mean(), abs=0.01)
    assert np.array_equal(relabelled.next_observations, test.next_observations)


def trained_purely(train):
    """``train()``'s result, after checking that it leaves torch's RNG as it was and that a
    second call returns the same weights (a short training checks this as well as a long one:
    ``train`` may take the number of steps, and is then called with few for the check)."""
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    first = train()
    assert torch.equal(torch.get_rng_state(), rng), "the caller's RNG is left as it was"
    again = train()
    for name, value in first["model"].items():
        assert torch.equal(value, again["model"][name]), name
    return first


def test_train_generator_is_pure_and_returns_the_average():
    from dataclasses import replace

    from adept.methods.synther import SynthERConfig, train_generator

    data = linear_system(n=512)
    options = SynthERConfig(
        hidden=16, depth=1, train_steps=30, batch_size=64, lr=1e-2, ema_decay=0.9
    )
    small = options.generator(len(data))
    cpu = torch.device("cpu")
    first = trained_purely(lambda: train_generator(data, small, seed=0, device=cpu))
    assert np.isfinite(first["metrics"]["synther/loss"])
    # the weights returned are the EMA's: with a decay near 1 they stay at the initial weights
    torch.manual_seed(0)
    initial = TransitionModel(data, 16, 1, EDMConfig(), small.block_layers).state_dict()
    frozen = train_generator(data, replace(small, ema_decay=1 - 1e-9), seed=0, device=cpu)
    moved = train_generator(data, replace(small, ema_decay=0.01), seed=0, device=cpu)
    name = "edm.net.inp.weight"
    torch.testing.assert_close(frozen["model"][name], initial[name], atol=1e-6, rtol=0)
    assert not torch.allclose(moved["model"][name], initial[name], atol=1e-3)


# --- the method: presets, options, the loop, the cache, resume --------------------------------


@pytest.fixture(scope="module")
def hopper(tmp_path_factory) -> str:
    from adept.datasets.generate import make_dataset

    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=1500, seed=0, progress=False))


def run_config(dataset, run_dir, **kw):
    from adept.methods.synther import PRESETS

    smoke = replace(PRESETS["smoke"], num_samples=500, sample_batch=256)
    return methods_config(dataset, run_dir, **{"method": "synther", "synther": smoke, **kw})


def test_presets_are_configs_that_the_options_change():
    from adept.cli import parse_train
    from adept.methods.synther import PRESETS, SynthERConfig

    assert SynthERConfig() == PRESETS["cpu"], "the defaults are the 'cpu' preset"
    paper = PRESETS["paper"]
    assert paper.hidden == 2048 and paper.num_samples == 5_000_000
    # SynthER's batch rule: 1024 from 800k transitions, 256 below
    assert paper.generator(1_000_000).batch_size == 1024
    assert paper.generator(125_000).batch_size == 256
    flags = ["--synther.preset", "paper", "--synther.hidden", "64", "--synther.sample-steps=16"]
    mine = parse_train(["--method", "synther", *flags]).synther
    assert mine == replace(paper, hidden=64, sample_steps=16)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"real_ratio": 1.5}, "--synther.real-ratio must be in"),
        ({"num_samples": 0}, "--synther.num-samples must be positive"),
        ({"sample_steps": 1}, "--synther.sample-steps must be at least 2"),
        ({"ema_decay": 1.0}, "--synther.ema-decay must be in"),
    ],
)
def test_bad_options_fail_before_anything_is_written(hopper, tmp_path, option, message):
    from tests.test_methods import refuses_before_writing

    refuses_before_writing(run_config(hopper, tmp_path / "run"), option, message)


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["iql", "sac", "td3bc", "bc"])
def test_synther_trains_every_agent(hopper, tmp_path, agent):
    import csv

    from adept.training import train

    summary = train(run_config(hopper, tmp_path / "run", agent=agent))
    assert summary["steps"] == 10 and np.isfinite(summary["normalized_score_last"])
    with (tmp_path / "run" / "metrics.csv").open() as f:
        first = next(csv.DictReader(f))
    assert first["step"] == "0", "the generator's metrics are logged at step 0"
    assert float(first["synther/num_samples"]) == 500
    assert np.isfinite(float(first["synther/loss"]))
    assert 0.0 <= float(first["synther/actions_clipped"]) <= 1.0
    assert 0.0 <= float(first["synther/terminals_relabelled"]) <= 1.0


def _method(dataset: str, real_ratio: float, batch_size: int = 32):
    from dataclasses import replace

    from adept.data.buffer import ReplayBuffer
    from adept.datasets.registry import load_dataset
    from adept.methods import make_method

    data = load_dataset(dataset)
    config = replace(run_config(dataset, None).synther, real_ratio=real_ratio)
    buffer = ReplayBuffer.from_transitions(data, device="cpu", seed=0)
    method = make_method("synther", data, buffer, batch_size, config, seed=0)
    method.setup(agent=None)  # type: ignore[arg-type]  # SynthER's set-up needs no agent
    return data, method


@pytest.mark.slow
@pytest.mark.parametrize("clip", [True, False])
def test_synthetic_actions_stay_in_the_dataset_s_range_unless_asked_not_to(hopper, clip):
    from dataclasses import replace

    from adept.data.buffer import ReplayBuffer
    from adept.datasets.registry import load_dataset
    from adept.methods import make_method

    data = load_dataset(hopper)
    config = replace(run_config(hopper, None).synther, clip_actions=clip)
    buffer = ReplayBuffer.from_transitions(data, device="cpu", seed=0)
    method = make_method("synther", data, buffer, 32, config, seed=0)
    metrics = method.setup(agent=None)  # type: ignore[arg-type]
    actions = method.synthetic.actions[: len(method.synthetic)].numpy()
    inside = (actions >= data.actions.min(0)) & (actions <= data.actions.max(0))
    from adept.methods.synther import samples_key

    other = replace(config, clip_actions=not clip)
    key = samples_key({}, config.sampling())
    assert key != samples_key({}, other.sampling()), "a cache key apart"
    assert key != samples_key({}, replace(config, terminals="generated").sampling())
    if clip:
        assert inside.all() and metrics["synther/actions_clipped"] > 0
    else:
        assert not inside.all(), "the smoke generator's actions cross the range"
        assert "synther/actions_clipped" not in metrics


@pytest.mark.slow
@pytest.mark.parametrize("real_ratio", [0.0, 0.25, 1.0])
def test_batches_hold_the_configured_share_of_real_rows(hopper, real_ratio):
    from tests.test_methods import real_share

    data, method = _method(hopper, real_ratio)
    batch = method.sample(0)
    assert len(batch) == 32
    assert real_share(batch, data) == round(32 * real_ratio), "exactly the share, not merely some"


@pytest.mark.slow
def test_generator_and_synthetic_file_are_cached_and_shared(hopper, tmp_path, monkeypatch):
    import adept.methods.synther as synther
    from adept.data.hdf5 import load_hdf5
    from adept.datasets.summary import summarize
    from adept.training import train

    train(run_config(hopper, tmp_path / "iql"))
    entries = sorted((tmp_path / "adept-data" / "artifacts" / "synther-samples").glob("*.hdf5"))
    assert len(entries) == 1

    def fail(*args, **kwargs):
        raise AssertionError("the cached generator and samples should have been reused")

    monkeypatch.setattr(synther, "train_generator", fail)
    monkeypatch.setattr(synther, "synthesize", fail)
    train(run_config(hopper, tmp_path / "td3bc", agent="td3bc"))
    synthetic = load_hdf5(entries[0])
    info = summarize(synthetic)  # what `adept data info` prints
    assert info["transitions"] == 500 and info["kind"] == "synther"
    assert "normalized_score_mean" not in info and "one-step" in info["note"]
    assert info["source_dataset"].endswith("hopper-random.hdf5")
    assert synthetic.env_id == "Hopper-v5"


@pytest.mark.slow
@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_resume_is_exact(hopper, tmp_path, monkeypatch, cache):
    from dataclasses import replace

    from tests.test_methods import resumes_exactly

    def make(name):
        config = run_config(hopper, tmp_path / name, num_steps=20, eval_every=20)
        return replace(config, synther=replace(config.synther, real_ratio=0.5, cache=cache))

    resumes_exactly(make, tmp_path, monkeypatch, "generator", cache)


@pytest.mark.slow
def test_a_run_that_finds_the_samples_cached_ends_as_the_run_that_made_them(hopper, tmp_path):
    """Sampling from the cached generator used to draw the model's throw-away initial weights
    from the run's own RNG: a run that made the samples then trained differently from one that
    found them in the cache."""
    from adept.training import train
    from tests.helpers import rows

    train(run_config(hopper, tmp_path / "miss", agent="td3bc"))
    train(run_config(hopper, tmp_path / "hit", agent="td3bc"))
    assert rows(tmp_path / "hit") == rows(tmp_path / "miss")
