"""Online SAC and the learned-policy datasets (medium, medium-replay, expert, medium-expert)."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from adept.agents import SACConfig
from adept.base.errors import AdeptError
from adept.cli import main
from adept.data import load_hdf5
from adept.data.hdf5 import read_behavior_policy
from adept.data.transitions import Transitions
from adept.datasets import make_dataset
from adept.datasets import online_sac as online
from adept.datasets.generate import LEARNED_KINDS
from adept.datasets.online_sac import OnlineSAC, OnlineSACConfig, SACRun, load_behavior_actor
from adept.datasets.summary import summarize

pytestmark = pytest.mark.slow  # online SAC runs

ENV = "Hopper-v5"
TINY = OnlineSACConfig(
    sac=SACConfig(hidden=32),
    start_steps=50,
    batch_size=32,
    eval_every=50,
    eval_episodes=1,
    checkpoint_every=100,
)
BUDGET = 200
#: a medium target every policy reaches at its first evaluation
EASY = replace(TINY, medium_fraction=1e-6)


def tiny_run(root: Path, config: OnlineSACConfig = TINY, seed: int = 0) -> SACRun:
    return SACRun(ENV, seed, BUDGET, config, root=root, device="cpu", progress=False)


def make(tmp_path: Path, kind: str, config: OnlineSACConfig = TINY, **kwargs) -> Transitions:
    out = tmp_path / f"hopper-{kind}.hdf5"
    if kind != "medium-replay":
        kwargs.setdefault("num_steps", 120)
    make_dataset(
        f"hopper-{kind}", out, sac_steps=BUDGET, sac_config=config, progress=False, **kwargs
    )
    return load_hdf5(out)


def test_medium_stops_at_the_first_evaluation_that_reaches_the_target(tmp_path):
    run = tiny_run(tmp_path, EASY)
    medium = run.medium()
    assert medium.step == EASY.eval_every and medium.reached_target
    assert medium.replay is not None and len(medium.replay) == medium.step
    assert not run.expert_path.exists()  # stopped at the medium stop
    expert = run.expert()  # resumes the same run to the budget
    assert expert.step == BUDGET
    assert not torch.equal(expert.actor_state["net.0.weight"], medium.actor_state["net.0.weight"])


def test_capped_medium_stops_at_the_budget_and_says_so(tmp_path):
    data = make(tmp_path, "medium")  # the 1/3-expert target is out of reach in 200 steps
    meta = data.metadata
    assert not meta["reached_target"]
    assert meta["sac_steps"] == BUDGET and meta["sac_budget"] == BUDGET
    assert math.isclose(meta["target_return"], 3234.3 / 3, rel_tol=1e-6)
    summary = summarize(data)
    assert "before the medium target" in summary["note"]


def test_recorded_log_probs_are_the_actors_density_of_the_stored_actions(tmp_path):
    data = make(tmp_path, "medium")
    actor = load_behavior_actor(tmp_path / "hopper-medium.hdf5")
    with torch.no_grad():
        expected = actor.log_prob(
            torch.from_numpy(data.observations), torch.from_numpy(data.actions)
        )
    assert data.action_log_probs is not None
    np.testing.assert_allclose(data.action_log_probs, expected.numpy(), rtol=1e-5, atol=1e-4)
    assert data.metadata["behavior"] == "sac"
    assert len(data) == 120


def test_replay_log_probs_belong_to_the_policy_that_acted(tmp_path):
    data = make(tmp_path, "medium-replay")
    assert data.action_log_probs is not None
    warmup = TINY.start_steps
    np.testing.assert_allclose(data.action_log_probs[:warmup], -3 * math.log(2), rtol=1e-6)
    # the first learned action is taken before any update: by the freshly initialized actor
    fresh = OnlineSAC(ENV, 0, BUDGET, TINY, device="cpu")
    obs = torch.from_numpy(data.observations[warmup : warmup + 1])
    act = torch.from_numpy(data.actions[warmup : warmup + 1])
    with torch.no_grad():
        expected = float(fresh.agent.actor.log_prob(obs, act)[0])
    fresh.close()
    assert data.action_log_probs[warmup] == pytest.approx(expected, rel=1e-5, abs=1e-4)


def test_medium_replay_is_exactly_the_runs_replay_buffer(tmp_path):
    data = make(tmp_path, "medium-replay")
    trainer = OnlineSAC(ENV, 0, BUDGET, TINY, device="cpu")
    while trainer.step < BUDGET:
        trainer.env_step()
        if trainer.step % TINY.eval_every == 0:
            trainer.evaluate()  # evaluations use their own RNG: the training stream is unchanged
    buffer = trainer.replay_data()
    trainer.close()
    for name, value in buffer.arrays().items():
        np.testing.assert_array_equal(getattr(data, name), value, err_msg=name)
    # every episode but the last ends as it ended in the run; the last is closed as a timeout
    assert data.timeouts[-1] or data.terminals[-1]


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    reference = tiny_run(tmp_path / "a").expert()

    original = OnlineSAC.env_step

    def interrupted(self):
        if self.step == 150:  # after the checkpoint at 100
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(OnlineSAC, "env_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(tmp_path / "b").expert()
    monkeypatch.setattr(OnlineSAC, "env_step", original)
    monkeypatch.setattr(online, "compute_tag", lambda device: "cpu, 99 threads")  # elsewhere
    run_b = tiny_run(tmp_path / "b")
    resumed = run_b.expert()
    here = f"cpu, {torch.get_num_threads()} threads"
    assert reference.compute == (here,), "the snapshot names what computed its run"
    assert resumed.compute == tuple(sorted((here, "cpu, 99 threads"))), "both processes"

    for key, value in reference.actor_state.items():
        assert torch.equal(value, resumed.actor_state[key]), key
    assert resumed.eval_return == reference.eval_return
    medium_a, medium_b = tiny_run(tmp_path / "a").medium(), run_b.medium()
    assert medium_a.replay is not None and medium_b.replay is not None
    for name, value in medium_a.replay.arrays().items():
        np.testing.assert_array_equal(getattr(medium_b.replay, name), value, err_msg=name)

    def returns(run: SACRun) -> list[str]:
        with (run.path / "metrics.csv").open() as f:
            return [row["eval/return"] for row in csv.DictReader(f)]

    assert returns(run_b) == returns(tiny_run(tmp_path / "a"))


def test_medium_expert_is_medium_then_expert(tmp_path):
    medium, expert = make(tmp_path, "medium"), make(tmp_path, "expert")
    both = make(tmp_path, "medium-expert")
    for name, value in both.arrays().items():
        joined = np.concatenate([getattr(medium, name), getattr(expert, name)])
        np.testing.assert_array_equal(value, joined, err_msg=name)
    weights = read_behavior_policy(tmp_path / "hopper-medium-expert.hdf5")
    assert {k.split("/")[0] for k in weights} == {"medium", "expert"}
    actor = load_behavior_actor(tmp_path / "hopper-medium-expert.hdf5", "expert")
    reference = load_behavior_actor(tmp_path / "hopper-expert.hdf5")
    for key, value in reference.state_dict().items():
        assert torch.equal(actor.state_dict()[key], value)


def test_medium_expert_policies_need_which_half(tmp_path):
    make(tmp_path, "medium-expert")
    make(tmp_path, "medium")
    path = tmp_path / "hopper-medium-expert.hdf5"
    with pytest.raises(AdeptError, match="pass which='medium' or 'expert'"):
        load_behavior_actor(path)
    with pytest.raises(AdeptError, match="pass which='medium' or 'expert'"):
        load_behavior_actor(path, "mediocre")
    with pytest.raises(AdeptError, match="drop which='expert'"):
        load_behavior_actor(tmp_path / "hopper-medium.hdf5", "expert")


def test_capped_medium_expert_says_its_medium_half_missed_the_target(tmp_path):
    summary = summarize(make(tmp_path, "medium-expert"))
    assert summary["medium_reached_target"] is False
    assert summary["note"].startswith("medium half: the SAC run stopped at its budget")


def test_medium_replay_shares_no_draws_with_random(tmp_path):
    # the SAC warm-up is uniform like random data: their streams must differ
    replay = make(tmp_path, "medium-replay")
    random = make_dataset("hopper-random", tmp_path / "r.hdf5", TINY.start_steps, progress=False)
    warmup = slice(0, TINY.start_steps)
    assert not np.isin(replay.actions[warmup], load_hdf5(random).actions).any()
    assert not np.array_equal(replay.observations[0], load_hdf5(random).observations[0])


def test_concurrent_make_waits_for_the_run_instead_of_training_it_again(tmp_path, monkeypatch):
    import fcntl

    import adept.base.atomic as atomic

    real_flock = fcntl.flock

    def flock(handle, operation):
        if operation == fcntl.LOCK_EX:  # another process holds the lock and trains meanwhile
            monkeypatch.setattr(atomic.fcntl, "flock", real_flock)
            tiny_run(tmp_path, EASY).medium()
        real_flock(handle, operation)

    monkeypatch.setattr(atomic.fcntl, "flock", flock)
    run = tiny_run(tmp_path, EASY)
    monkeypatch.setattr(run, "_train", lambda *args: pytest.fail("trained twice"))
    assert run.medium().step == EASY.eval_every


def test_deleted_snapshot_past_its_point_is_a_clear_error(tmp_path):
    run = tiny_run(tmp_path, EASY)
    run.expert()
    run.medium_path.unlink()
    with pytest.raises(AdeptError, match=r"medium.pt but that file is missing; delete"):
        run.medium()


def test_online_sac_refuses_actions_outside_the_unit_box():
    with pytest.raises(AdeptError, match=r"acts in \[-1, 1\].*Pendulum-v1"):
        OnlineSAC("Pendulum-v1", 0, BUDGET, TINY, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_interrupted_run_resumes_on_the_gpu(tmp_path, monkeypatch):
    original = OnlineSAC.env_step

    def interrupted(self):
        if self.step == 150:
            raise KeyboardInterrupt
        return original(self)

    run = SACRun(ENV, 0, BUDGET, TINY, root=tmp_path, device="cuda", progress=False)
    monkeypatch.setattr(OnlineSAC, "env_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.expert()
    monkeypatch.setattr(OnlineSAC, "env_step", original)
    assert run.expert().step == BUDGET


def test_checkpoint_interval_neither_names_nor_blocks_a_cached_run(tmp_path):
    assert replace(OnlineSACConfig(), checkpoint_every=100_000).tag() is None
    assert replace(TINY, checkpoint_every=150).tag() == TINY.tag() != EASY.tag()
    reference = tiny_run(tmp_path / "a", EASY).expert()
    tiny_run(tmp_path / "b", EASY).medium()
    resumed = tiny_run(tmp_path / "b", replace(EASY, checkpoint_every=150)).expert()
    for key, value in reference.actor_state.items():
        assert torch.equal(value, resumed.actor_state[key]), key


def test_metadata_round_trip(tmp_path):
    data = make(tmp_path, "expert")
    meta = data.metadata
    for key in ("env_id", "kind", "seed", "sac_steps", "sac_budget", "adept_version", "created"):
        assert key in meta, key
    assert (meta["env_id"], meta["kind"], meta["seed"]) == (ENV, "expert", 0)
    assert meta["sac_steps"] == BUDGET
    assert meta["sac_compute"] == f"cpu, {torch.get_num_threads()} threads"
    assert meta["behavior_policy_hidden"] == 32 and meta["behavior_policy_depth"] == 2
    weights = read_behavior_policy(tmp_path / "hopper-expert.hdf5")
    actor = load_behavior_actor(tmp_path / "hopper-expert.hdf5")
    for key, value in weights.items():
        np.testing.assert_array_equal(actor.state_dict()[key].numpy(), value)


def test_learned_kinds_share_one_cached_run(tmp_path, monkeypatch):
    make(tmp_path, "medium")
    trained = []
    original = OnlineSAC.env_step
    monkeypatch.setattr(OnlineSAC, "env_step", lambda self: trained.append(1) or original(self))
    make(tmp_path, "medium-replay")
    make(tmp_path, "expert")  # the capped medium run already reached the budget
    assert trained == []
    assert set(LEARNED_KINDS) == {"medium", "medium-replay", "expert", "medium-expert"}


def test_random_warmup_without_learning_still_makes_data(tmp_path):
    config = replace(TINY, start_steps=10_000)
    data = make(tmp_path, "medium-replay", config)
    assert len(data) == BUDGET
    assert data.action_log_probs is not None
    np.testing.assert_allclose(data.action_log_probs, -3 * math.log(2), rtol=1e-6)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["hopper-medium-replay", "--num-steps", "10"], "drop --num-steps"),
        (["hopper-random", "--sac-steps", "10"], "no SAC run"),
        (["hopper-medium", "--sac-steps", "0"], "--sac-steps must be positive"),
        (["hopper-medium", "--sac-run.checkpoint-every", "7"], "multiple of eval_every"),
        (["hopper-medium", "--seed", "-1"], "--seed must be a non-negative integer"),
        (["hopper-random", "--seed", "-1"], "--seed must be a non-negative integer"),
    ],
)
def test_bad_make_arguments_give_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["data", "make", *argv, "--out", str(tmp_path / "x.hdf5"), "--no-progress"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in " ".join(err.split())
    assert not (tmp_path / "x.hdf5").exists()


def test_info_plots_a_return_histogram(tmp_path, capsys):
    make(tmp_path, "medium-replay")
    png = tmp_path / "returns.png"
    main(["data", "info", str(tmp_path / "hopper-medium-replay.hdf5"), "--plot", str(png)])
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "sac_steps" in out and "return_p90" in out


def test_info_refuses_a_non_png_plot_path(tmp_path, capsys, d4rl_file):
    with pytest.raises(SystemExit):
        main(["data", "info", str(d4rl_file), "--plot", str(tmp_path / "returns.jpg")])
    assert "ending in .png" in capsys.readouterr().err
