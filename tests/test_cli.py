import json
import subprocess
import sys

import numpy as np
import pytest

from adept.cli import main
from adept.data.hdf5 import load_hdf5
from tests.helpers import d4rl_arrays, write_d4rl


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adept", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_make_then_info(tmp_path, capsys):
    out = tmp_path / "h.hdf5"
    main(
        [
            "data",
            "make",
            "hopper-random",
            "--out",
            str(out),
            "--num-steps",
            "3000",
            "--seed",
            "4",
            "--no-progress",
        ]
    )
    assert f"wrote {out}" in capsys.readouterr().out
    data = load_hdf5(out)
    assert len(data) == 3000 and data.metadata["seed"] == 4

    main(["data", "info", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["transitions"] == 3000 and summary["episodes"] == data.num_episodes
    assert summary["obs_dim"] == 11 and summary["act_dim"] == 3
    assert summary["env_id"] == "Hopper-v5" and summary["kind"] == "random"
    assert summary["return_mean"] == pytest.approx(data.episode_returns().mean())
    assert -5 < summary["normalized_score_mean"] < 10, "random hopper scores near 0"

    main(["data", "info", str(out)])
    text = capsys.readouterr().out
    assert "normalized_score_mean" in text and "Hopper-v5" in text


def test_make_default_goes_to_the_cache(tmp_path, capsys):
    main(["data", "make", "halfcheetah-random", "--num-steps", "1000", "--no-progress"])
    assert (tmp_path / "adept-data" / "halfcheetah-random-n1000.hdf5").exists()


def test_info_of_a_d4rl_file_without_env_needs_no_env(tmp_path, capsys):
    path = write_d4rl(tmp_path / "mystery.hdf5", d4rl_arrays())
    main(["data", "info", str(path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["env_id"] is None and "normalized_score_mean" not in summary
    main(["data", "info", str(path), "--env-id", "Hopper-v5", "--json"])
    assert "normalized_score_mean" in json.loads(capsys.readouterr().out)


def bad_inputs(tmp_path):
    arrays = d4rl_arrays()
    short = dict(arrays, rewards=arrays["rewards"][:5])
    nan = dict(
        arrays, observations=np.where(np.eye(7, 11, dtype=bool), np.nan, arrays["observations"])
    )
    missing = {k: v for k, v in arrays.items() if k != "terminals"}
    (tmp_path / "text.hdf5").write_text("not hdf5")
    (tmp_path / "blocker").write_text("")
    return {
        "not found": (["data", "info", str(tmp_path / "absent.hdf5")], "not found"),
        "not hdf5": (["data", "info", str(tmp_path / "text.hdf5")], "not an HDF5 file"),
        "missing keys": (
            ["data", "info", str(write_d4rl(tmp_path / "m.hdf5", missing))],
            "lacks required D4RL key(s) terminals",
        ),
        "lengths": (
            ["data", "info", str(write_d4rl(tmp_path / "s.hdf5", short))],
            "'rewards' has 5 rows",
        ),
        "nan": (
            ["data", "info", str(write_d4rl(tmp_path / "n.hdf5", nan))],
            "'observations' holds 7 NaN/inf",
        ),
        "dims": (
            [
                "data",
                "info",
                str(write_d4rl(tmp_path / "hopper.hdf5", arrays)),
                "--env-id",
                "Walker2d-v5",
            ],
            "dims 11/3 but Walker2d-v5 has 17/6",
        ),
        "unknown name": (["data", "info", "hopper-expertish"], "valid names: halfcheetah-random"),
        "unknown make": (
            ["data", "make", "ant-random", "--out", str(tmp_path / "o.hdf5")],
            "valid names",
        ),
        "minari absent": (["data", "info", "minari:mujoco/hopper/medium-v0"], "minari download"),
        "not writable": (
            [
                "data",
                "make",
                "hopper-random",
                "--num-steps",
                "10",
                "--out",
                str(tmp_path / "blocker" / "x.hdf5"),
            ],
            "cannot create directory",
        ),
    }


CASES = [
    "not found",
    "not hdf5",
    "missing keys",
    "lengths",
    "nan",
    "dims",
    "unknown name",
    "unknown make",
    "minari absent",
    "not writable",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, case, capsys):
    args, message = bad_inputs(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("adept: error:") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing written"


@pytest.mark.slow
def test_console_entry_point_exit_code_and_no_traceback(tmp_path):
    result = run_cli("data", "info", str(tmp_path / "absent.hdf5"))
    assert result.returncode == 2
    expected = f"adept: error: dataset file {tmp_path / 'absent.hdf5'} not found; check the path"
    assert result.stderr.strip().splitlines() == [f"{expected} or make it with 'adept data make'"]


@pytest.mark.slow
def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0 and "data" in result.stdout and "demo" in result.stdout


AGENT_SECTIONS = ("iql", "sac", "td3bc", "bc")
METHOD_SECTIONS = {"none": None, "diffusion": "adept", "adept": "adept", "synther": "synther",
                   "pgd": "pgd", "dydiff": "dydiff"}  # fmt: skip


def train_help(capsys, *args: str) -> set[str]:
    """The option sections (``--iql.``, ``--adept.``) that ``adept train ARGS --help`` lists."""
    with pytest.raises(SystemExit) as done:
        main(["train", *args, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--num-steps" in out and "--dataset" in out, "the run's own options"
    sections = {*AGENT_SECTIONS, *(s for s in METHOD_SECTIONS.values() if s)}
    return {s for s in sections if f"--{s}." in out}


def test_train_help_lists_the_runs_options_and_its_agents_and_methods_only(capsys):
    assert train_help(capsys, "--agent", "iql", "--method", "adept") == {"iql", "adept"}
    assert train_help(capsys) == {"iql"}, "the defaults: IQL alone"


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHOD_SECTIONS))
@pytest.mark.parametrize("agent", AGENT_SECTIONS)
def test_every_agent_and_method_pair_lists_its_own_options(capsys, agent, method):
    expected = {agent} | ({METHOD_SECTIONS[method]} - {None})
    assert train_help(capsys, f"--agent={agent}", "--method", method) == expected


def test_an_option_of_another_agent_or_method_is_a_one_line_error(tmp_path, capsys):
    run_dir = tmp_path / "run"
    for args, named in (
        (["--agent", "sac", "--iql.hidden", "64"], "--iql.hidden is an option of --agent iql"),
        (
            ["--method", "pgd", "--adept.rollout.horizon=5"],
            "--adept.rollout.horizon is an option of --method",
        ),
        (["--agent", "ppo"], "--agent ppo is no agent; choose one of iql, sac, td3bc, bc"),
    ):
        with pytest.raises(SystemExit) as done:
            main(["train", *args, "--run-dir", str(run_dir)])
        err = capsys.readouterr().err.strip()
        assert done.value.code == 2 and err.count("\n") == 0 and named in err, err
    assert not run_dir.exists()


def test_the_chosen_sections_options_reach_the_runs_config():
    from adept.cli import parse_train
    from adept.methods import ADEPTConfig
    from adept.training import TrainConfig

    config = parse_train(["--agent", "sac", "--sac.hidden", "64", "--method", "adept",
                          "--adept.rollout.horizon", "5", "--num-steps", "7"])  # fmt: skip
    assert type(config) is TrainConfig, "the run's config, not the parser's shape of it"
    assert (config.agent, config.method, config.num_steps) == ("sac", "adept", 7)
    assert config.sac.hidden == 64 and config.adept.rollout.horizon == 5
    assert type(config.adept) is ADEPTConfig, "nested sections come back as their own types"
    assert config.iql == TrainConfig().iql, "the other sections keep their defaults"
