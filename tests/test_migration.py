"""What users made before ADEPT's options were grouped by concern still works: an old run
directory resumes and evaluates, an old grid reads, an old option's spelling is refused with its
new name. The fixture is a real run directory written by that older adept
(tests/fixtures/run-before-sections/README.md says how)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from adept.base.errors import AdeptError
from adept.bench.spec import GridSpec, check_overrides
from adept.cli import main, parse_train
from adept.store.runs import to_jsonable
from adept.training import RENAMED, migrate_config, renamed
from tests.helpers import rows

FIXTURE = Path(__file__).parent / "fixtures" / "run-before-sections"

NEW_FLAGS = [
    "--dataset", "hopper-random-n1000", "--agent", "iql", "--method", "adept",
    "--num-steps", "40", "--batch-size", "32", "--eval-every", "20", "--eval-episodes", "1",
    "--log-every", "10", "--checkpoint-every", "20", "--device", "cpu", "--no-progress",
    "--iql.hidden", "32",
    "--adept.world-model.hidden", "32", "--adept.world-model.depth", "1",
    "--adept.world-model.denoising-steps", "3",
    "--adept.pretrain.steps", "10", "--adept.pretrain.behavior", "logged",
    "--adept.pretrain.batch-size", "32", "--adept.pretrain.select-every", "5",
    "--adept.pretrain.select-rows", "64",
    "--adept.rollout.every", "10", "--adept.rollout.start", "10",
    "--adept.rollout.batch-size", "16", "--adept.rollout.horizon", "3", "--adept.rollout.no-clip",
    "--adept.mix.buffer-size", "200", "--adept.mix.real-ratio", "0.75",
    "--adept.mix.flush-on-refit",
    "--adept.refit.steps", "2", "--adept.refit.batch-size", "64", "--adept.refit.average", "0.9",
    "--adept.refit.rule", "uniform",
    "--adept.diagnostics.batch-size", "32", "--adept.diagnostics.true-error-every", "2",
    "--adept.diagnostics.true-error-samples", "8",
    "--adept.generator-seed", "3",
]  # fmt: skip
"""The fixture's command as today's adept spells it."""


def stored_config() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())["config"]


def test_an_old_layout_config_reads_as_todays_config_of_the_same_command():
    old = stored_config()
    assert "horizon" in old["adept"] and old["adept"]["refit"] == "uniform", "an old layout"
    migrated = migrate_config(old)
    today = to_jsonable(parse_train(NEW_FLAGS))
    migrated.pop("run_dir"), today.pop("run_dir")
    assert migrated == today
    assert migrate_config(migrated) == migrated, "today's layout is left as it is"


def test_every_renamed_option_moves_to_a_field_that_exists():
    default = to_jsonable(parse_train([]))
    for old, new in RENAMED.items():
        holder = default
        for name in new.split(".")[:-1]:
            holder = holder[name]
        assert new.split(".")[-1] in holder, f"{old} → {new}: no such option"


def test_an_old_run_directory_resumes_where_it_stopped_and_evaluates(tmp_path, capsys):
    run = tmp_path / "old"
    shutil.copytree(FIXTURE, run)
    before = rows(run)
    assert int(before[-1]["step"]) < 40 and not (run / "summary.json").exists(), "unfinished"
    main(["train", *NEW_FLAGS, "--run-dir", str(run)])
    assert (run / "summary.json").exists(), "the old run finished"
    # the same command from scratch, with today's code: the resumed run ends as it does
    main(["train", *NEW_FLAGS, "--run-dir", str(tmp_path / "fresh")])
    assert rows(run) == rows(tmp_path / "fresh")
    capsys.readouterr()
    main(["eval", str(run), "--episodes", "1", "--device", "cpu"])
    assert "normalized score" in capsys.readouterr().out


@pytest.mark.parametrize(
    "flag, new",
    [
        ("--adept.horizon=5", "--adept.rollout.horizon"),
        ("--adept.pretrain-steps", "--adept.pretrain.steps"),
        ("--adept.pretrain-seed", "--adept.generator-seed"),
        ("--adept.no-clip-generated", "--adept.rollout.no-clip"),
        ("--adept.no-diagnostics", "--adept.diagnostics.no-model-error"),
        ("--adept.refit", "--adept.refit.rule"),
        ("--adept.flush-on-refit", "--adept.mix.flush-on-refit"),
    ],
)
def test_an_old_option_spelling_is_one_line_naming_the_new_one(flag, new, capsys):
    with pytest.raises(SystemExit) as done:
        main(["train", "--method", "adept", flag, "1"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1, err
    assert f"{flag.split('=')[0]} was renamed: use {new}" in err


def test_a_grid_names_options_as_today_and_reads_an_old_grids_record():
    with pytest.raises(
        AdeptError, match=r"'adept\.horizon' was renamed; write 'adept\.rollout\.horizon'"
    ):
        check_overrides({"adept.horizon": 5}, "spec.toml [set]")
    stored = {
        "datasets": ["hopper-random"],
        "agents": ["iql"],
        "seeds": [0],
        "variants": {
            "adept-flush": {
                "method": "adept",
                "agents": None,
                "set": {"adept.flush_on_refit": True},
            }
        },
        "num_steps": 100,
        "eval_every": 50,
        "eval_episodes": 1,
        "set": {"adept.pretrain_seed": 0, "adept.horizon": 5},
    }
    spec = GridSpec.from_json(stored)
    assert dict(spec.set) == {"adept.generator_seed": 0, "adept.rollout.horizon": 5}
    assert dict(spec.variants["adept-flush"].set) == {"adept.mix.flush_on_refit": True}
    assert renamed("adept.rollout.horizon") is None


def test_every_committed_reports_cells_are_the_runs_its_grid_names_today(tmp_path):
    """Each archived cell of a committed report (written before the options were grouped and
    the presets became configs) reads as the config its grid gives that cell today, so the
    report restores from its cells and ``--reuse`` takes them."""
    from adept import bench
    from adept.store.runs import config_changes
    from adept.training import same_run_fields

    repo = Path(__file__).parent.parent
    checked: set[Path] = set()
    for path in bench.REPORT_GRIDS.values():
        spec = bench.resolve_spec([("preset", bench.load_toml(repo / path))])
        cells = (repo / path).parent / "cells"
        for cell in spec.cells():
            kept = cells / cell.id
            if not kept.is_dir():
                continue
            config = spec.cell_config(cell, tmp_path)
            changes = config_changes(kept, config, same_run_fields(config), migrate_config)
            assert changes == [], cell.id
            checked.add(kept)
    archived = {p.parent for p in (repo / "docs" / "results").glob("*/cells/**/config.json")}
    assert archived and checked == archived, "every archived cell is a cell of its grid"
