import json
from dataclasses import replace

import pytest
import torch

import adept.training.run as run_module
from adept.base.errors import AdeptError
from adept.cli import main
from adept.datasets.generate import make_dataset
from adept.envs import evaluate
from adept.methods import Method
from adept.store.runs import RunDir, load_checkpoint
from adept.training import TrainConfig, load_agent, train, unread_fields
from tests.helpers import changed, rows, stopped_at


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    return str(make_dataset("hopper-random", path, num_steps=2000, seed=0, progress=False))


def config(dataset: str, run_dir, **kw) -> TrainConfig:
    base = TrainConfig(
        dataset=dataset,
        agent="iql",
        num_steps=60,
        run_dir=run_dir,
        batch_size=32,
        eval_every=30,
        eval_episodes=1,
        log_every=10,
        checkpoint_every=20,
        device="cpu",
        progress=False,
    )
    return replace(base, **kw)


@pytest.mark.slow
def test_run_directory_contents(dataset, tmp_path):
    summary = train(config(dataset, tmp_path / "run", eval_episodes=3))
    run = tmp_path / "run"
    stored = json.loads((run / "config.json").read_text())
    assert stored["config"]["agent"] == "iql" and stored["config"]["iql"]["expectile"] == 0.7
    assert "adept_version" in stored and "git_sha" in stored
    logged = rows(run)
    assert [int(r["step"]) for r in logged] == [10, 20, 30, 40, 50, 60]
    assert {
        "train/q_loss",
        "train/value_loss",
        "train/actor_loss",
        "eval/normalized_score",
        "eval/return",
    } <= set(logged[0])
    assert [r["step"] for r in logged if r["eval/normalized_score"]] == ["30", "60"]
    assert json.loads((run / "summary.json").read_text()) == summary
    assert set(summary) == {
        "normalized_score_last",
        "normalized_score_best",
        "return_last",
        "steps",
        "wall_time",
    }
    assert summary["steps"] == 60
    scores = [float(r["eval/normalized_score"]) for r in logged if r["eval/normalized_score"]]
    assert summary["normalized_score_last"] == pytest.approx(scores[-1])
    assert summary["normalized_score_best"] == pytest.approx(max(scores))
    returns = [float(r["eval/return"]) for r in logged if r["eval/return"]]
    assert summary["return_last"] == pytest.approx(returns[-1])
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 60 and state["meta"]["env_id"] == "Hopper-v5"
    # the last evaluation's episode lengths: those of the final policy's episodes, replayed
    agent, _ = load_agent(run, device="cpu")
    c = config(dataset, run, eval_episodes=3)
    replay = evaluate(lambda o: agent.act(o), "Hopper-v5", c.eval_episodes, seed=(c.seed, 60))
    assert float(logged[-1]["eval/return"]) == pytest.approx(replay.mean_return)
    assert float(logged[-1]["eval/length"]) == pytest.approx(replay.lengths.mean())
    assert 0 < replay.lengths.mean() < 1000, "an untrained hopper falls"
    assert len(set(replay.lengths)) > 1, "episodes of different lengths: the mean is tested"


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["iql", "sac", "td3bc", "bc"])
def test_resume_ends_exactly_like_an_uninterrupted_run(dataset, tmp_path, monkeypatch, agent):
    full = config(dataset, tmp_path / "full", agent=agent)
    train(full)

    part = config(dataset, tmp_path / "part", agent=agent)
    stopped_at(part, 47, monkeypatch)  # after the checkpoint at 40, mid log-window
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["step"] == 40
    assert not (tmp_path / "part" / "summary.json").exists()
    resumed = train(part)

    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    a = load_checkpoint(tmp_path / "full" / "checkpoint.pt")["agent"]
    b = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["agent"]
    for name, module_state in a.items():
        if isinstance(module_state, dict) and "state" not in module_state:
            for key, value in module_state.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value, b[name][key]), f"{name}.{key}"
    assert (
        resumed["normalized_score_last"]
        == json.loads((tmp_path / "full" / "summary.json").read_text())["normalized_score_last"]
    )


def test_finished_run_is_reported_not_retrained(dataset, tmp_path, monkeypatch):
    cfg = config(dataset, tmp_path / "run", num_steps=20, eval_every=20)
    first = train(cfg)
    monkeypatch.setattr(run_module, "fit", lambda *a: pytest.fail("must not train again"))
    assert train(cfg) == first


@pytest.mark.slow
def test_a_run_resumed_on_other_data_is_refused(tmp_path, monkeypatch):
    """The same config (the same dataset path) over a file whose content changed: refused."""
    path = tmp_path / "hopper-random.hdf5"
    make_dataset("hopper-random", path, num_steps=800, seed=0, progress=False)
    cfg = config(str(path), tmp_path / "run")
    stopped_at(cfg, 20, monkeypatch)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(stored["dataset_fingerprint"]) == 32
    make_dataset("hopper-random", path, num_steps=800, seed=1, progress=False)
    with pytest.raises(AdeptError, match="holds a run made from other data"):
        train(cfg)
    make_dataset("hopper-random", path, num_steps=800, seed=0, progress=False)
    train(cfg)  # the data it was made from: it resumes


def test_different_config_on_existing_run_dir_is_refused(dataset, tmp_path):
    train(config(dataset, tmp_path / "run", num_steps=10, eval_every=10))
    with pytest.raises(AdeptError, match=r"different config \(iql\.expectile: 0\.7 → 0\.9\)"):
        train(
            config(
                dataset,
                tmp_path / "run",
                num_steps=10,
                eval_every=10,
                iql=replace(TrainConfig().iql, expectile=0.9),
            )
        )
    # fields that do not change results may differ, and options the run never reads
    train(config(dataset, tmp_path / "run", num_steps=10, eval_every=10, progress=True))
    unread = {
        "sac": replace(TrainConfig().sac, tau=0.5),
        "adept": changed(TrainConfig().adept, rollout__horizon=3),
    }
    train(config(dataset, tmp_path / "run", num_steps=10, eval_every=10, **unread))


def test_a_run_reads_no_other_agents_or_methods_options():
    """What may differ between two configs of one run: the sections of the agents and methods
    it does not use (its own are read)."""
    assert unread_fields("iql", "adept") == ("sac", "td3bc", "bc", "dydiff", "pgd", "synther")
    assert unread_fields("sac", "diffusion") == (
        *("iql", "td3bc", "bc", "dydiff", "pgd", "synther"),
        "adept.refit",  # Diff+X is ADEPT without the re-fit
    )
    assert unread_fields("td3bc", "none") == (
        "iql",
        "sac",
        "bc",
        "adept",
        "dydiff",
        "pgd",
        "synther",
    )


def test_bad_config_values(dataset, tmp_path):
    with pytest.raises(AdeptError, match="--num-steps must be positive"):
        train(config(dataset, tmp_path / "run", num_steps=0))
    assert not (tmp_path / "run").exists()


def test_load_agent_acts_like_the_trained_one(dataset, tmp_path):
    train(config(dataset, tmp_path / "run", agent="sac", num_steps=20, eval_every=20))
    agent, meta = load_agent(tmp_path / "run", device="cpu")
    assert meta["step"] == 20 and meta["obs_dim"] == 11
    obs = torch.randn(3, 11)
    assert agent.act(obs.numpy()).shape == (3, 3)
    with pytest.raises(AdeptError, match="not a run directory"):
        load_agent(tmp_path)


def test_cli_train_and_eval(dataset, tmp_path, capsys):
    run = tmp_path / "cli-run"
    main(
        [
            "train",
            "--dataset",
            dataset,
            "--agent",
            "td3bc",
            "--num-steps",
            "20",
            "--eval-every",
            "10",
            "--eval-episodes",
            "1",
            "--batch-size",
            "16",
            "--run-dir",
            str(run),
            "--no-progress",
            "--device",
            "cpu",
            "--td3bc.alpha",
            "1.5",
        ]
    )
    out = capsys.readouterr().out
    assert '"normalized_score_last"' in out
    assert json.loads((run / "config.json").read_text())["config"]["td3bc"]["alpha"] == 1.5
    main(["eval", str(run), "--episodes", "2"])
    out = capsys.readouterr().out
    assert (
        "Hopper-v5 step 20: return" in out
        and "normalized score" in out
        and "over 2 episodes" in out
    )


def test_cli_eval_of_a_missing_run_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(tmp_path / "nothing")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("adept: error: ")


def test_methods_plug_in_through_hooks(dataset):
    """A method supplies the batches and runs its own work after each update; fit is not copied."""
    from adept.agents import AgentSpec
    from adept.data import ReplayBuffer, load_hdf5

    data = load_hdf5(dataset)
    buffer = ReplayBuffer.from_transitions(data, device="cpu")
    calls: list[tuple[str, int]] = []

    class Recording(Method):
        def sample(self, step):
            calls.append(("sample", step))
            return super().sample(step)

        def after_update(self, step, agent):
            calls.append(("after", step))
            return {"method/extra": torch.tensor(float(step))}

    agent = run_module.make_agent(
        TrainConfig(agent="bc"), AgentSpec.from_data(data, 3, torch.device("cpu"))
    )
    out = list(run_module.fit(agent, Recording(data, buffer, 8), start=1, num_steps=4))
    assert [s for s, _ in out] == [2, 3, 4]
    assert calls == [
        ("sample", 1),
        ("after", 1),
        ("sample", 2),
        ("after", 2),
        ("sample", 3),
        ("after", 3),
    ]
    assert out[-1][1]["method/extra"].item() == 3.0 and "train/actor_loss" in out[-1][1]


@pytest.mark.parametrize(
    ("flag", "module"), [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")]
)
def test_optional_loggers_without_their_package(dataset, tmp_path, monkeypatch, flag, module):
    monkeypatch.setitem(__import__("sys").modules, module, None)
    with pytest.raises(
        AdeptError, match=rf"--{flag} needs the {flag} package; pip install 'adept-rl\[{flag}\]'"
    ):
        train(config(dataset, tmp_path / "run", **{flag: True}))
    assert not (tmp_path / "run").exists(), "refused before anything is written"


def test_run_dir_ignores_named_nested_fields_and_gives_its_hint(tmp_path):
    RunDir(tmp_path, {"sac": {"lr": 1e-3, "every": 10}, "device": "cpu"}).close()
    with RunDir(
        tmp_path,
        {"sac": {"lr": 1e-3, "every": 20}, "device": "cuda"},
        ignore=("sac.every", "device"),
    ) as again:
        assert again.resumed
    with pytest.raises(AdeptError, match=r"\(sac\.lr: 0\.001 → 0\.01\); delete it"):
        RunDir(tmp_path, {"sac": {"lr": 1e-2, "every": 10}, "device": "cpu"}, hint="delete it")
