"""An agent and a method from outside adept: each a class with its options, and one
registration line, after which ``adept train``, ``adept bench`` and the report treat them as
they treat adept's own."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pytest
import torch

from adept.agents import BC, Agent, BCConfig
from adept.base.errors import AdeptError
from adept.cli import main
from adept.data.buffer import Batch
from adept.data.transitions import Transitions
from adept.methods import Method
from adept.registry import PLUGINS, register, registered
from tests.helpers import rows


@dataclass(frozen=True)
class NoisyConfig:
    """Options of the toy method."""

    scale: float = 0.1
    """Standard deviation of the Gaussian noise added to each batch's actions."""


class Noisy(Method):
    """A toy method: the agent trains on dataset batches whose actions carry Gaussian noise of
    ``scale`` (drawn from torch's RNG, so a run with it resumes exactly), and logs the noise."""

    name = "noisy"
    options = "noisy"
    options_type = NoisyConfig
    label = "Noisy"

    def __init__(self, data, buffer, batch_size, config: NoisyConfig, seed=0, num_steps=None):
        super().__init__(data, buffer, batch_size)
        self.config = config

    @staticmethod
    def check(config: NoisyConfig, data: Transitions) -> None:
        if config.scale < 0:
            raise AdeptError(f"--noisy.scale must be 0 or more, got {config.scale}")

    def sample(self, step: int) -> Batch:
        batch = self.buffer.sample(self.batch_size)
        noise = self.config.scale * torch.randn_like(batch.actions)
        return dataclasses.replace(batch, actions=batch.actions + noise)

    def after_update(self, step: int, agent: Agent) -> dict[str, torch.Tensor]:
        return {"noisy/scale": torch.tensor(self.config.scale)}


class Cloner(BC):
    """A toy agent: behaviour cloning under another name, with BC's options."""

    name = "cloner"
    options_type = BCConfig
    label = "Cloner"


def register_toys() -> None:
    """What ``$ADEPT_PLUGINS`` names (``tests.test_plugins:register_toys``): the registration,
    one line each."""
    register(Noisy)
    register(Cloner)


RUN = [
    "--dataset", "hopper-random-n1000", "--num-steps", "20", "--batch-size", "32",
    "--eval-every", "10", "--eval-episodes", "1", "--log-every", "5", "--checkpoint-every", "10",
    "--device", "cpu", "--no-progress",
]  # fmt: skip


@pytest.fixture
def toys():
    with registered(Noisy, Cloner):
        yield


def test_a_registered_agent_and_method_train_through_adept_train(toys, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", *RUN, "--agent", "cloner", "--cloner.hidden", "32", "--method", "noisy"]
    main([*argv, "--noisy.scale", "0.25", "--run-dir", str(run)])
    logged = [r["noisy/scale"] for r in rows(run) if r.get("noisy/scale")]
    assert logged and all(float(v) == 0.25 for v in logged), "the option reached the method"
    stored = json.loads((run / "config.json").read_text())["config"]
    assert stored["plugins"] == {"noisy": {"scale": 0.25}, "cloner": stored["plugins"]["cloner"]}
    assert stored["plugins"]["cloner"]["hidden"] == 32
    capsys.readouterr()
    main([*argv, "--noisy.scale", "0.25", "--run-dir", str(run)])  # the finished run, reported
    assert "run dir" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv, "--noisy.scale", "0.5", "--run-dir", str(run)])
    assert "noisy.scale: 0.25 → 0.5" in capsys.readouterr().err, "a changed option is refused"
    main(["eval", str(run), "--episodes", "1", "--device", "cpu"])


def test_a_registered_methods_options_are_its_own_in_help_and_errors(toys, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "noisy", "--help"])
    shown = capsys.readouterr().out
    assert "--noisy.scale" in shown and "--adept." not in shown and "--synther." not in shown
    with pytest.raises(SystemExit):
        main(["train", "--method", "none", "--noisy.scale", "0.5"])
    assert "--noisy.scale is an option of --method noisy" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", *RUN, "--method", "noisy", "--noisy.scale", "-1"])
    assert "--noisy.scale must be 0 or more, got -1.0" in capsys.readouterr().err


def test_a_name_is_registered_once():
    class Other(Noisy):
        name = "adept"

    with pytest.raises(AdeptError, match=r"method name 'adept' is taken by adept\.methods\.adept"):
        register(Other)
    with registered(Noisy):
        register(Noisy)  # the same class again: a no-op
    with pytest.raises(TypeError, match="an Agent or a Method subclass"):
        register(NoisyConfig)


@pytest.mark.slow
def test_a_registered_method_runs_in_a_bench_grid_and_its_report(toys, tmp_path, monkeypatch):
    monkeypatch.setenv(PLUGINS, "tests.test_plugins:register_toys")  # the workers register too
    root = tmp_path / "grid"
    sets = ["batch_size=32", "log_every=5", "checkpoint_every=10", "iql.hidden=32"]
    main(["bench", "--datasets", "hopper-random-n1000", "--methods", "noisy",
          "--agents", "iql", "cloner", "--seeds", "0", "--num-steps", "20", "--eval-every", "10",
          "--eval-episodes", "1", "--set", *sets, "noisy.scale=0.75", "cloner.hidden=32",
          "--root", str(root), "--workers", "1", "--no-progress"])  # fmt: skip
    cell = root / "hopper-random-n1000" / "noisy" / "cloner" / "seed0"
    assert {float(r["noisy/scale"]) for r in rows(cell) if r.get("noisy/scale")} == {0.75}
    main(["report", str(root)])
    results = (root / "report" / "results.md").read_text()
    for label in ("Noisy+IQL", "Noisy+Cloner"):
        assert label in results, label


def test_plugins_named_in_the_environment_are_imported(monkeypatch):
    from adept.methods import METHODS
    from adept.registry import load_plugins

    monkeypatch.setenv(PLUGINS, "tests.test_plugins:register_toys")
    with registered():
        load_plugins()
        assert METHODS["noisy"] is Noisy
    assert "noisy" not in METHODS, "registered() restores the registry"
    monkeypatch.setenv(PLUGINS, "no_such_module_here")
    with pytest.raises(AdeptError, match="names 'no_such_module_here', which does not import"):
        load_plugins()
