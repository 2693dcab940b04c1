"""adept bench: spec layering and errors, idempotent re-runs, failure isolation, Ctrl-C and
resume, the shared world-model cache, and the Ray backend (a killed worker's cell is retried and
resumes from its checkpoint)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adept import bench
from adept.base.errors import AdeptError
from adept.bench import GridSpec, resolve_spec
from adept.cli import main
from adept.methods.synther import SynthERConfig
from tests.helpers import rows

DATASET = "hopper-random-n3000"
REPO = Path(__file__).parents[1]
RESULTS = REPO / "docs" / "results"
"""The committed grids' reports and archives."""
TINY_SET = dict(bench.PRESETS["smoke"]["set"])


def report_grid(name: str) -> dict:
    """The spec of a grid behind a committed report (it lives beside the report)."""
    return bench.load_toml(REPO / bench.REPORT_GRIDS[name])


def tiny(**kw) -> dict:
    layer = {
        "datasets": [DATASET],
        "agents": ["iql"],
        "methods": ["none"],
        "seeds": [0],
        "num_steps": 100,
        "eval_every": 50,
        "eval_episodes": 1,
        "set": TINY_SET,
    }
    layer.update(kw)
    return layer


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def run_bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adept", "bench", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def state(root: Path) -> dict:
    return json.loads((root / "bench.json").read_text())


TOML = """
datasets = ["hopper-random-n3000"]
agents = ["iql", "sac"]
methods = ["none"]
seeds = [0, 1]
num_steps = 100

[set]
"adept.rollout.horizon" = 5
batch-size = 64

[variants]
adept-h3 = {method = "adept", "adept.rollout.horizon" = 3, agents = ["iql"]}
adept-noclip = {method = "adept", "adept.rollout.clip" = false}
"""


def test_spec_layers_merge_and_cells_carry_their_options(tmp_path):
    spec_file = write_spec(tmp_path / "grid.toml", TOML)
    cli = {
        "seeds": ["2"],
        "set": bench.parse_assignments(["adept.rollout.every=250"], "--set"),
    }
    spec = resolve_spec([("spec", bench.load_toml(spec_file)), ("the command line", cli)])
    assert spec.seeds == (2,), "the command line replaces lists"
    assert spec.set == {"adept.rollout.horizon": 5, "adept.rollout.every": 250, "batch_size": 64}
    assert list(spec.variants) == ["none", "adept-h3", "adept-noclip"]
    cells = {c.id: c for c in spec.cells()}
    assert sorted(cells) == sorted(
        [
            "hopper-random-n3000/none/iql/seed2",
            "hopper-random-n3000/none/sac/seed2",
            "hopper-random-n3000/adept-h3/iql/seed2",
            "hopper-random-n3000/adept-noclip/iql/seed2",
            "hopper-random-n3000/adept-noclip/sac/seed2",
        ]
    ), "a variant's agents restrict its cells"
    config = spec.cell_config(cells["hopper-random-n3000/adept-h3/iql/seed2"], tmp_path)
    assert config.method == "adept" and config.seed == 2 and config.num_steps == 100
    assert config.adept.rollout.horizon == 3, "the variant overrides --set"
    assert config.adept.rollout.every == 250 and config.batch_size == 64
    assert config.run_dir == tmp_path / "hopper-random-n3000/adept-h3/iql/seed2"
    noclip = spec.cell_config(cells["hopper-random-n3000/adept-noclip/sac/seed2"], tmp_path)
    assert noclip.adept.rollout.clip is False and noclip.adept.rollout.horizon == 5
    assert GridSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.budget == "cpu-0.1k"


def test_a_variants_datasets_restrict_its_cells(capsys):
    layer = {
        "datasets": ["hopper-random-n3000", "hopper-random-n5000"],
        "agents": ["iql"],
        "seeds": [0],
        "num_steps": 100,
        "variants": {
            "none": {"method": "none"},
            "adept-small": {"method": "adept", "datasets": ["hopper-random-n5000"]},
        },
    }
    spec = resolve_spec([("spec", layer)])
    assert sorted(c.id for c in spec.cells()) == [
        "hopper-random-n3000/none/iql/seed0",
        "hopper-random-n5000/adept-small/iql/seed0",
        "hopper-random-n5000/none/iql/seed0",
    ]
    stored = json.loads(json.dumps(spec.to_json()))
    assert GridSpec.from_json(stored) == spec
    assert "datasets" not in stored["variants"]["none"], "older grids' bench.json compare equal"
    assert "warning" not in capsys.readouterr().err
    typo = {**layer, "variants": {"x": {"method": "adept", "datasets": ["hopper-randm-n5000"]}}}
    assert not [c for c in resolve_spec([("spec", typo)]).cells() if c.variant == "x"]
    assert "variant 'x' runs on none of the grid's datasets" in capsys.readouterr().err
    bad = {**layer, "variants": {"x": {"method": "adept", "datasets": "hopper-random-n5000"}}}
    with pytest.raises(AdeptError, match="datasets must be a list"):
        resolve_spec([("spec", bad)])


def test_presets_resolve():
    paper = resolve_spec([("preset", bench.PRESETS["paper-ablation"])])
    assert len(paper.datasets) == 6 and paper.budget == "paper-1m"
    ids = {c.id for c in paper.cells()}
    assert "hopper-random/none/bc/seed0" in ids and "hopper-random/adept/bc/seed0" not in ids
    assert len(ids) == 6 * (3 + 2 + 2) * 5
    smoke = resolve_spec([("preset", bench.PRESETS["smoke"])])
    methods = {"none", "diffusion", "adept", "synther", "pgd", "dydiff"}
    assert {c.method for c in smoke.cells()} == methods
    table = resolve_spec([("preset", report_grid("synther-table"))])
    cells = table.cells()
    assert len(cells) == 3 * 2 * 2 * 3 and {c.agent for c in cells} == {"iql", "td3bc"}
    config = table.cell_config(next(c for c in cells if c.method == "synther"), Path("/r"))
    assert config.synther == replace(SynthERConfig(), generator_seed=0), "the cpu preset's"
    table = resolve_spec([("preset", report_grid("trajectory-table"))])
    cells = table.cells()
    assert len(cells) == 3 * 3 * 2 * 3 + 2 * 3 * 3, (
        "X, PGD+X, DyDiff+X for two agents; DyDiff-sampled+IQL and ADEPT+IQL"
    )
    assert {c.method for c in cells} == {"none", "pgd", "dydiff", "adept"}
    assert {c.agent for c in cells if c.variant in ("adept", "dydiff-sampled")} == {"iql"}
    config = table.cell_config(next(c for c in cells if c.variant == "dydiff"), Path("/r"))
    assert config.dydiff.generator_seed == 0 and config.pgd.generator_seed == 0
    assert config.dydiff.deterministic, "DyDiff as its code imagines"
    sampled = next(c for c in cells if c.variant == "dydiff-sampled")
    assert not table.cell_config(sampled, Path("/r")).dydiff.deterministic


def test_lever_grid_varies_one_thing_of_the_claim_grids_adept_cells(tmp_path):
    """adept-levers' 'adept' cells are adept-claim's (so --reuse takes them), and each lever
    variant differs from them in its lever alone."""
    from adept.store.runs import _diff, _ignored, config_changes, to_jsonable
    from adept.training import migrate_config, same_run_fields

    checked = 0
    claim = resolve_spec([("preset", report_grid("adept-claim"))])
    levers = resolve_spec([("preset", report_grid("adept-levers"))])
    ids = {c.id: c for c in claim.cells()}
    lever_cells = levers.cells()
    assert len(lever_cells) == 2 * 5 * 3 + 3, "adept-penalty-0.2 runs on walker2d-random only"
    assert {c.dataset for c in lever_cells if c.variant == "adept-penalty-0.2"} == {
        "walker2d-random"
    }
    for cell in lever_cells:
        config = levers.cell_config(cell, tmp_path)
        reference = claim.cell_config(ids[f"{cell.dataset}/adept/iql/seed{cell.seed}"], tmp_path)
        changes = [
            c.split(":")[0]
            for c in _diff(to_jsonable(reference), to_jsonable(config))
            if not _ignored(c.split(":")[0], same_run_fields(config))
        ]
        lever = {
            "adept": [],
            "adept-flush": ["adept.mix.flush_on_refit"],
            "adept-real-share": ["adept.mix.real_ratio_final"],
            "adept-h5": ["adept.rollout.horizon"],
            "adept-penalty": [
                "adept.rollout.uncertainty_samples",
                "adept.rollout.uncertainty_penalty",
            ],
            "adept-penalty-0.2": [
                "adept.rollout.uncertainty_samples",
                "adept.rollout.uncertainty_penalty",
            ],
        }[cell.variant]
        assert sorted(changes) == sorted(lever), cell.id
        kept = RESULTS / "adept-claim-cpu50k" / "cells" / cell.id
        if cell.variant == "adept" and kept.is_dir():  # the committed runs --reuse would take
            changes = config_changes(kept, config, same_run_fields(config), migrate_config)
            assert changes == [], cell.id
            checked += 1
    assert checked >= 3, "the committed claim archive holds hopper-random's ADEPT+IQL cells"


def test_the_sac_control_grid_reuses_the_claim_grids_sac_cells(tmp_path):
    """adept-claim-sac's SAC and ADEPT+SAC cells are adept-claim's, config for config (so --reuse
    takes the committed ones), and its two controls differ from ADEPT+SAC in one thing each."""
    from adept.store.runs import _diff, _ignored, config_changes, to_jsonable
    from adept.training import migrate_config, same_run_fields

    claim = resolve_spec([("preset", report_grid("adept-claim"))])
    controls = resolve_spec([("preset", report_grid("adept-claim-sac"))])
    ids = {c.id: c for c in claim.cells()}
    cells = controls.cells()
    assert len(cells) == 4 * 4 * 3 and {c.agent for c in cells} == {"sac"}
    checked = 0
    for cell in cells:
        config = controls.cell_config(cell, tmp_path)
        reference = claim.cell_config(ids[f"{cell.dataset}/adept/sac/seed{cell.seed}"], tmp_path)
        changes = sorted(
            c.split(":")[0]
            for c in _diff(to_jsonable(reference), to_jsonable(config))
            if not _ignored(c.split(":")[0], same_run_fields(config))
        )
        expected = {
            "none": ["method"],
            "diffusion": ["method"],
            "adept": [],
            "adept-uniform": ["adept.refit.rule"],
        }[cell.variant]
        assert changes == expected, cell.id
        if cell.variant in ("none", "adept"):
            assert to_jsonable(config) == to_jsonable(claim.cell_config(ids[cell.id], tmp_path))
            kept = RESULTS / "adept-claim-cpu50k" / "cells" / cell.id
            changes = config_changes(kept, config, same_run_fields(config), migrate_config)
            assert changes == [], cell.id
            checked += 1
    assert checked == 2 * 4 * 3, "every SAC and ADEPT+SAC cell is in the committed archive"


def test_the_trajectory_grid_reuses_the_claim_and_synther_grids_cells(tmp_path):
    """trajectory-table's IQL and ADEPT+IQL cells are adept-claim's and its TD3+BC cells
    synther-table's, config for config, so --reuse takes the committed runs: only the PGD and
    DyDiff cells run."""
    from adept.store.runs import config_changes
    from adept.training import migrate_config, same_run_fields

    table = resolve_spec([("preset", report_grid("trajectory-table"))])
    checked = 0
    for cell in table.cells():
        if cell.method in ("pgd", "dydiff"):
            continue
        grid = "adept-claim-cpu50k" if cell.agent == "iql" else "synther-table-cpu50k"
        kept = RESULTS / grid / "cells" / cell.id
        config = table.cell_config(cell, tmp_path)
        assert config_changes(kept, config, same_run_fields(config), migrate_config) == [], cell.id
        checked += 1
    assert checked == 3 * 3 * 3, "IQL, ADEPT+IQL and TD3+BC on three datasets, three seeds"


def test_list_presets_prints_one_line_each(capsys):
    main(["bench", "--list-presets"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == sorted(bench.PRESETS)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines), "every preset is described"


def test_a_reports_grid_named_as_a_preset_says_where_its_spec_is(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "adept-claim", "--root", "unused"])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--spec docs/results/adept-claim-cpu50k/grid.toml" in err


def test_every_report_grid_is_a_spec_beside_its_report():
    for name, path in bench.REPORT_GRIDS.items():
        spec = resolve_spec([(name, bench.load_toml(REPO / path))])
        assert spec.cells(), name


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            {"set": {"adept.horizn": 5}},
            "unknown option 'adept.horizn'; did you mean adept.rollout.horizon",
        ),
        ({"set": {"seed": 3}}, "sets 'seed', which the grid sets; use --seeds"),
        (
            {"set": {"adept.rollout.horizon": "ten"}},
            "adept.rollout.horizon='ten': expected an integer",
        ),
        ({"set": {"agent": "sac"}}, "use --agents"),
        ({"agents": ["iql", "cql"]}, "unknown agent 'cql'"),
        ({"methods": ["mopo"]}, "unknown method 'mopo'"),
        ({"variants": {"v": {"agents": ["iql"]}}}, "variant 'v' needs a method"),
        ({"seeds": [0, 0]}, "distinct"),
        ({"num_steps": 0}, "--num-steps must be positive"),
        ({"datasest": ["x"]}, "unknown key(s) datasest"),
        ({"set": {"adept.world_model.target": "middle"}}, "expected one of next, delta"),
    ],
)
def test_bad_specs_are_one_line_errors(layer, message):
    with pytest.raises(AdeptError, match=re.escape(message)):
        resolve_spec([("the command line", tiny(**layer))])


def test_a_spec_that_names_nothing():
    with pytest.raises(AdeptError, match="names no datasets, agents, seeds, num_steps, methods"):
        resolve_spec([("spec", {})])


def test_cli_bad_input_exit_2_and_nothing_written(tmp_path, capsys):
    cases = [
        [
            "--datasets",
            "hopper-randm",
            "--methods",
            "none",
            "--agents",
            "iql",
            "--seeds",
            "0",
            "--num-steps",
            "10",
        ],
        ["--spec", str(tmp_path / "absent.toml")],
        ["--spec", str(write_spec(tmp_path / "bad.toml", "datasets = [")), "--root", "x"],
        ["--preset", "smoke", "--set", "adept.rollout.horizon"],
        ["--preset", "smoke", "--variant", "noname"],
        ["--preset", "smoke", "--backend", "ray", "--address", "127.0.0.1:1"],
    ]
    for args in cases:
        root = tmp_path / "root"
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", *args, "--root", str(root), "--no-progress"])
        assert exit_info.value.code == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("adept: error: ") and "\n" not in err, (args, err)
        assert not (root / "bench.json").exists(), args
    assert "no Ray cluster answers at 127.0.0.1:1" in err


def test_root_that_is_not_a_bench_root(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "smoke", "--root", str(tmp_path), "--no-progress"])
    assert "non-empty folder without bench.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--root", str(tmp_path), "--list"])
    assert "is not a bench root" in capsys.readouterr().err


@pytest.mark.slow
def test_smoke_preset_runs_then_is_idempotent_then_extends(tmp_path):
    root = tmp_path / "grid"
    one = ["--seeds", "0"]  # the preset's every method once, on one of its two seeds
    first = run_bench("--preset", "smoke", *one, "--root", str(root), "--workers", "2")
    assert first.returncode == 0, first.stderr
    cells = state(root)["cells"]
    assert {r["state"] for r in cells.values()} == {"done"} and len(cells) == 6
    smoke = bench.PRESETS["smoke"]["datasets"][0]
    adept_dir = root / smoke / "adept" / "iql" / "seed0"
    assert {"config.json", "metrics.csv", "checkpoint.pt", "summary.json"} <= {
        p.name for p in adept_dir.iterdir()
    }, "a cell is an ordinary run directory"
    summary = json.loads((adept_dir / "summary.json").read_text())
    assert cells[f"{smoke}/adept/iql/seed0"]["normalized_score_last"] == pytest.approx(
        summary["normalized_score_last"]
    )
    assert (root / "logs" / f"{smoke}__adept__iql__seed0.log").exists()
    evaluated = subprocess.run(
        [sys.executable, "-m", "adept", "eval", str(adept_dir), "--episodes", "1"],
        capture_output=True,
        text=True,
    )
    assert evaluated.returncode == 0 and "normalized score" in evaluated.stdout
    assert re.search(r"length \d+ \(min \d+\) over 1 episodes", evaluated.stdout), (
        "eval says how long the episodes lasted (standing still vs falling)"
    )
    mtime = (adept_dir / "summary.json").stat().st_mtime_ns

    again = run_bench("--preset", "smoke", *one, "--root", str(root))
    assert again.returncode == 0 and "6 already were" in again.stdout
    assert (adept_dir / "summary.json").stat().st_mtime_ns == mtime, "finished cells are skipped"
    assert all(r["attempts"] == 1 for r in state(root)["cells"].values())

    before = (root / "bench.json").read_text()
    changed = run_bench("--preset", "smoke", *one, "--root", str(root), "--num-steps", "300")
    assert changed.returncode == 2 and "num_steps: 200 → 300" in changed.stderr
    assert "--extend" in changed.stderr
    assert (root / "bench.json").read_text() == before, "a refused spec writes nothing"

    # a new variant's cell joins the grid; the 6 finished ones stay
    small = "small:method=none,iql.hidden=32"
    extended = run_bench(
        "--preset", "smoke", *one, "--root", str(root), "--variant", small, "--extend"
    )  # fmt: skip
    assert extended.returncode == 0, extended.stderr
    assert "6 already were" in extended.stdout
    after = state(root)
    assert "small" in after["spec"]["variants"] and len(after["cells"]) == 7
    assert all(r["state"] == "done" for r in after["cells"].values())
    assert (adept_dir / "summary.json").stat().st_mtime_ns == mtime
    resumed = run_bench("--root", str(root))
    assert resumed.returncode == 0 and "7 already were" in resumed.stdout, "--root alone resumes"

    report = subprocess.run(
        [sys.executable, "-m", "adept", "report", str(root)], capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    results = (root / "report" / "results.md").read_text()
    for label in ("ADEPT+IQL", "SynthER+IQL", "PGD+IQL", "DyDiff+IQL"):
        assert label in results, label


@pytest.mark.slow
def test_a_failed_cell_never_stops_the_grid(tmp_path):
    root = tmp_path / "grid"
    args = ["--datasets", DATASET, "--agents", "iql", "bc", "--methods", "none", "--seeds", "0"]
    args += ["--num-steps", "60", "--eval-every", "30", "--eval-episodes", "1", "--root", str(root)]
    broken = root / DATASET / "none" / "iql" / "seed0"
    main_args = [*args, "--set", "checkpoint_every=30", "batch_size=64"]
    assert run_bench(*main_args).returncode == 0
    # a run dir whose checkpoint was damaged: the cell fails when it tries to resume
    (broken / "summary.json").unlink()
    (broken / "checkpoint.pt").write_bytes(b"not a checkpoint")

    result = run_bench(*main_args)
    assert result.returncode == 1, "the exit status is the number of failed cells"
    cells = state(root)["cells"]
    failed = cells[f"{DATASET}/none/iql/seed0"]
    assert failed["state"] == "failed"
    assert "checkpoint" in failed["error"] and "damaged" in failed["error"]
    assert "Traceback" in failed["log_tail"] and failed["wall_time"] is not None
    assert cells[f"{DATASET}/none/bc/seed0"]["state"] == "done"

    (broken / "checkpoint.pt").unlink()
    for name in ("config.json", "metrics.csv"):
        (broken / name).unlink()
    assert run_bench(*main_args).returncode == 0, "the next call retries the failed cell"
    assert state(root)["cells"][f"{DATASET}/none/iql/seed0"]["state"] == "done"


@pytest.mark.slow
def test_hand_edited_cell_is_refused_before_anything_runs(tmp_path, capsys):
    root = tmp_path / "grid"
    layer = tiny()
    spec = resolve_spec([("cli", layer)])
    options = bench.BenchOptions(root=root, progress=False)
    bench.run_bench(spec, options)
    run_dir = root / DATASET / "none" / "iql" / "seed0"
    stored = json.loads((run_dir / "config.json").read_text())
    stored["config"]["iql"]["expectile"] = 0.9
    (run_dir / "config.json").write_text(json.dumps(stored))
    (run_dir / "summary.json").unlink()
    before = (root / "bench.json").read_text()
    with pytest.raises(AdeptError, match=r"holds a run with another config \(iql.expectile"):
        bench.run_bench(spec, options)
    assert (root / "bench.json").read_text() == before
    (run_dir / "config.json").unlink()
    with pytest.raises(AdeptError, match=r"has run files but no config\.json; delete"):
        bench.run_bench(spec, options)


def test_second_driver_on_one_root_is_refused(tmp_path):
    root = bench.BenchRoot(tmp_path / "grid")
    with root.locked(), pytest.raises(AdeptError, match=r"another adept bench .* is running"):
        bench.run_bench(resolve_spec([("cli", tiny())]), bench.BenchOptions(root=root.path))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


LONG_CELL = [
    "--datasets", DATASET, "--agents", "iql", "--methods", "none", "--seeds", "0",
    "--num-steps", "3000", "--eval-every", "1500", "--eval-episodes", "1",
    "--set", "checkpoint_every=100", "log_every=100", "batch_size=32", "iql.hidden=32",
]  # fmt: skip


@pytest.fixture(scope="module")
def long_cell_reference(tmp_path_factory) -> Path:
    """LONG_CELL's cell run through uninterrupted: what a stopped and resumed one must equal."""
    root = tmp_path_factory.mktemp("reference")
    reference = run_bench(*LONG_CELL, "--root", str(root))
    assert reference.returncode == 0, reference.stderr
    return root / DATASET / "none" / "iql" / "seed0"


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_stops_cleanly_and_the_next_call_resumes_exactly(
    tmp_path, stop, long_cell_reference
):
    root = tmp_path / "grid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "adept", "bench", "--no-progress", *LONG_CELL, "--root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a suite started in the background ('cmd &') ignores SIGINT, and the ignoring is
        # inherited: give the bench Ctrl-C's default so Python installs its handler; a bench
        # stopped by kill is one started in the background, SIGINT ignored
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_DFL if stop == signal.SIGINT else signal.SIG_IGN
        ),
    )
    cell = root / DATASET / "none" / "iql" / "seed0"
    try:
        _wait_for(cell / "checkpoint.pt", proc)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted" in err
    assert state(root)["cells"][f"{DATASET}/none/iql/seed0"]["state"] == "queued"
    assert not (cell / "summary.json").exists(), "the cell was stopped before it finished"

    resumed = run_bench(*LONG_CELL, "--root", str(root))
    assert resumed.returncode == 0, resumed.stderr
    record = state(root)["cells"][f"{DATASET}/none/iql/seed0"]
    assert record["state"] == "done" and record["attempts"] == 2
    assert rows(cell) == rows(long_cell_reference)


@pytest.mark.slow
def test_world_model_methods_share_one_pretrained_model(tmp_path):
    spec = resolve_spec(
        [("cli", tiny(methods=["diffusion", "adept"], agents=["iql", "sac"], num_steps=50))]
    )
    result = bench.run_bench(
        spec, bench.BenchOptions(root=tmp_path / "grid", workers=2, progress=False)
    )
    assert result.done == 4 and result.failed == 0
    entries = list((Path(os.environ["ADEPT_DATA_DIR"]) / "artifacts").rglob("*.pt"))
    assert len(entries) == 1, "Diff+X and ADEPT+X with IQL and SAC pre-train one model"


@pytest.mark.slow
def test_ray_smoke_preset_retries_a_killed_cell_which_resumes(tmp_path):
    pytest.importorskip("ray")
    root = tmp_path / "grid"
    # the smoke preset's sizes, X and ADEPT+X only, the cells made long enough to be killed
    # between checkpoints
    smoke = bench.PRESETS["smoke"]["datasets"][0]
    sizes = [
        f"{key}={value}"
        for key, value in TINY_SET.items()
        if not key.startswith(("synther.", "pgd.", "dydiff."))
    ]
    args = ["--datasets", smoke, "--agents", "iql", "--methods", "none", "adept",
            "--seeds", "0", "1", "--root", str(root), "--backend", "ray", "--workers", "2",
            "--threads", "1", "--num-steps", "1500", "--eval-every", "750", "--eval-episodes", "2",
            "--set", *sizes, "checkpoint_every=100"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "adept", "bench", "--no-progress", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cell = root / smoke / "none" / "iql" / "seed0"
    try:
        _wait_for(cell / "checkpoint.pt", proc, timeout=180)
        worker = json.loads((cell / "bench-cell.json").read_text())["pid"]
        os.kill(worker, signal.SIGKILL)  # the Ray worker running the cell dies mid-run
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    cells = state(root)["cells"]
    assert len(cells) == 4 and {r["state"] for r in cells.values()} == {"done"}
    assert cells[f"{smoke}/none/iql/seed0"]["attempts"] == 2, "Ray retried the killed cell"
    assert cells[f"{smoke}/adept/iql/seed1"]["attempts"] == 1
    log = (root / "logs" / f"{smoke}__none__iql__seed0.log").read_text()
    assert "making it" not in log, "Ray workers read the driver's dataset cache"
    resumed_at = int(re.search(r"resuming from step (\d+)", log)[1])  # type: ignore[index]
    assert 0 < resumed_at < 1500, "the retried cell resumed from its checkpoint"
    steps = [int(r["step"]) for r in rows(cell)]
    assert steps == sorted(set(steps)) and steps[-1] == 1500


def test_repeated_set_and_variant_flags_accumulate():
    import tyro

    from adept.cli import Bench

    args = ["--preset", "smoke", "--set", "adept.rollout.horizon=5", "batch_size=32"]
    args += ["--set", "iql.expectile=0.8", "--variant", "a:method=adept", "b:method=none"]
    args += ["--variant", "c:method=diffusion,adept.rollout.horizon=3,agents=iql"]
    args += ["--variant", "d:method=adept,datasets=hopper-random-n5000"]
    spec = resolve_spec(tyro.cli(Bench, args=args).layers())
    assert spec.set["adept.rollout.horizon"] == 5 and spec.set["batch_size"] == 32
    assert spec.set["iql.expectile"] == 0.8
    assert {"a", "b", "c", "d"} <= set(spec.variants)
    assert spec.variants["c"] == bench.Variant("diffusion", ("iql",), {"adept.rollout.horizon": 3})
    assert spec.variants["d"] == bench.Variant("adept", None, {}, ("hopper-random-n5000",))


@pytest.mark.slow
def test_cells_that_differ_by_seed_train_as_one_pack(tmp_path):
    """--pack 2: seeds 0 and 1 of each (variant, agent) train in one `adept train --seeds`
    process, in their own cells' ordinary run directories, and write what they write alone;
    seed 2 is a pack of one (its own process)."""
    root = tmp_path / "grid"
    spec = tmp_path / "grid.toml"
    spec.write_text(
        f'datasets = ["{DATASET}"]\nagents = ["iql"]\nmethods = ["none", "adept"]\n'
        "seeds = [0, 1, 2]\nnum_steps = 60\neval_every = 30\neval_episodes = 1\n"
    )
    sets = [f"{k}={v}" for k, v in TINY_SET.items() if not k.startswith(("dydiff", "pgd"))]
    args = ["--spec", str(spec), "--root", str(root), "--set", *sets, "--workers", "2"]
    result = run_bench(*args, "--pack", "2")
    assert result.returncode == 0, result.stderr
    cells = state(root)["cells"]
    assert len(cells) == 6 and {r["state"] for r in cells.values()} == {"done"}
    for variant in ("none", "adept"):
        cell = f"{DATASET}/{variant}/iql/seed"
        pack_log = f"logs/{DATASET}__{variant}__iql__seeds0+1.log"
        assert cells[cell + "0"]["log"] == cells[cell + "1"]["log"] == pack_log
        assert cells[cell + "2"]["log"] == f"logs/{DATASET}__{variant}__iql__seed2.log"
        text = (root / pack_log).read_text()
        assert f"cell {cell}0: attempt 1" in text and f"cell {cell}1: attempt 1" in text
        pids = [
            json.loads((root / f"{cell}{s}" / "bench-cell.json").read_text())["pid"]
            for s in range(3)
        ]
        assert pids[0] == pids[1] != pids[2], "seeds 0 and 1 in one process, seed 2 in another"
        for s in range(3):
            summary = json.loads((root / f"{cell}{s}" / "summary.json").read_text())
            assert cells[f"{cell}{s}"]["normalized_score_last"] == summary["normalized_score_last"]
    packed = rows(root / DATASET / "none" / "iql" / "seed1")
    # the same cell trained alone (--pack 1 after its run directory is removed) writes the
    # same rows, up to the batched products' rounding
    shutil.rmtree(root / DATASET / "none" / "iql" / "seed1")
    again = run_bench(*args, "--pack", "1")
    assert again.returncode == 0 and "5 already were" in again.stdout, again.stderr
    alone = rows(root / DATASET / "none" / "iql" / "seed1")
    assert [r["step"] for r in alone] == [r["step"] for r in packed]
    for a, b in zip(alone, packed, strict=True):
        for key in a:
            if a[key] != b[key]:
                assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-3, abs=1e-4), key


@pytest.mark.slow
def test_ray_runs_a_pack_as_one_task(tmp_path):
    pytest.importorskip("ray")
    root = tmp_path / "grid"
    sets = [f"{k}={v}" for k, v in TINY_SET.items() if not k.startswith(("dydiff", "pgd"))]
    args = ["--datasets", DATASET, "--agents", "iql", "--methods", "none", "--seeds", "0", "1",
            "--num-steps", "40", "--eval-every", "20", "--eval-episodes", "1", "--root", str(root),
            "--backend", "ray", "--workers", "2", "--threads", "1", "--pack", "2",
            "--set", *sets]  # fmt: skip
    result = run_bench(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    cells = state(root)["cells"]
    assert {r["state"] for r in cells.values()} == {"done"} and len(cells) == 2
    cell = root / DATASET / "none" / "iql"
    pids = {json.loads((cell / f"seed{s}" / "bench-cell.json").read_text())["pid"] for s in (0, 1)}
    assert len(pids) == 1, "both seeds in one Ray task"
    assert all(r["log"] == f"logs/{DATASET}__none__iql__seeds0+1.log" for r in cells.values())


@pytest.mark.slow
def test_archive_continues_a_grid_on_a_fresh_root(tmp_path):
    """--archive keeps each finished cell's light files; a grid started on an empty root (a
    fresh machine) takes them instead of running the cells again, and reports the same."""
    args = ["--datasets", DATASET, "--agents", "iql", "bc", "--methods", "none", "--seeds", "0",
            "--num-steps", "100", "--eval-every", "50", "--eval-episodes", "1",
            "--set", *[f"{k}={v}" for k, v in TINY_SET.items()]]  # fmt: skip
    archive = tmp_path / "archive"
    first = run_bench(*args, "--root", str(tmp_path / "one"), "--archive", str(archive))
    assert first.returncode == 0, first.stderr
    iql, bc = f"{DATASET}/none/iql/seed0", f"{DATASET}/none/bc/seed0"
    kept = archive / iql
    assert {p.name for p in kept.iterdir()} == {
        "config.json",
        "metrics.csv",
        "summary.json",
        "record.json",
    }, "light files only: no checkpoint"
    assert json.loads((kept / "record.json").read_text())["state"] == "done"

    second = run_bench(*args, "--root", str(tmp_path / "two"), "--archive", str(archive))
    assert second.returncode == 0, second.stderr
    assert "2 from the archive" in second.stdout
    for cell in (iql, bc):
        run_dir = tmp_path / "two" / cell
        assert not (run_dir / "checkpoint.pt").exists(), "a restored cell is not run again"
        assert (run_dir / "metrics.csv").read_bytes() == (
            archive / cell / "metrics.csv"
        ).read_bytes()
        record = state(tmp_path / "two")["cells"][cell]
        assert record["state"] == "done" and record["restored"] and record["attempts"] == 1
    reports = []
    for name in ("one", "two"):
        out = subprocess.run(
            [sys.executable, "-m", "adept", "report", str(tmp_path / name)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        reports.append((tmp_path / name / "report" / "results.csv").read_text())
    assert reports[0] == reports[1]

    shutil.rmtree(archive / bc)  # a cell the archive lacks runs, and is kept when it finishes
    third = run_bench(*args, "--root", str(tmp_path / "three"), "--archive", str(archive))
    assert third.returncode == 0 and "1 from the archive" in third.stdout, third.stderr
    assert (tmp_path / "three" / bc / "checkpoint.pt").exists()
    assert (archive / bc / "summary.json").exists()

    kept_config = json.loads((archive / iql / "config.json").read_text())
    assert kept_config["dataset_fingerprint"], "a run records what data it was made from"
    kept_config["dataset_fingerprint"] = "0" * 32  # as if made on another machine's data
    (archive / iql / "config.json").write_text(json.dumps(kept_config))
    elsewhere = run_bench(*args, "--root", str(tmp_path / "five"), "--archive", str(archive))
    assert elsewhere.returncode == 2 and "made from other data" in elsewhere.stderr
    assert not (tmp_path / "five" / iql).exists() and not (tmp_path / "five" / bc).exists()

    other = run_bench(*args, "--root", str(tmp_path / "four"), "--archive", str(archive),
                      "--set", "iql.expectile=0.8")  # fmt: skip
    assert other.returncode == 2 and "holds another config" in other.stderr
    assert "\n" not in other.stderr.strip()
    assert not (tmp_path / "four" / iql).exists(), "a refused archive restores nothing"


@pytest.mark.slow
def test_reuse_takes_the_cells_another_grid_already_ran(tmp_path, monkeypatch):
    """--reuse takes a finished run of another grid for a cell whose config differs from it only
    in options the run never reads (another method's); any read option differing, or other
    data, and the cell runs. The reused cell is kept in this grid's archive, restores from it,
    and the report says whose runs it holds."""
    base = ["--datasets", DATASET, "--methods", "none", "--seeds", "0", "--num-steps", "100",
            "--eval-every", "50", "--eval-episodes", "1",
            "--set", *[f"{k}={v}" for k, v in TINY_SET.items()]]  # fmt: skip
    theirs = tmp_path / "theirs"
    first = run_bench(*base, "--agents", "iql", "--root", str(tmp_path / "one"),
                      "--archive", str(theirs), "--set", "synther.generator_seed=0")  # fmt: skip
    assert first.returncode == 0, first.stderr
    iql, bc = f"{DATASET}/none/iql/seed0", f"{DATASET}/none/bc/seed0"

    ours = tmp_path / "ours"
    second = run_bench(*base, "--agents", "iql", "bc", "--root", str(tmp_path / "two"),
                       "--archive", str(ours), "--reuse", str(theirs),
                       "--set", "adept.generator_seed=0")  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "1 from other grids" in second.stdout
    run_dir = tmp_path / "two" / iql
    assert not (run_dir / "checkpoint.pt").exists(), "a reused cell is not run again"
    assert rows(run_dir) == rows(tmp_path / "one" / iql)
    assert (tmp_path / "two" / bc / "checkpoint.pt").exists(), "a cell no other grid ran runs"
    record = state(tmp_path / "two")["cells"][iql]
    assert record["state"] == "done" and record["reused_from"]["cell"] == iql
    assert Path(record["reused_from"]["archive"]).name == "theirs"
    assert json.loads((ours / iql / "record.json").read_text())["reused_from"]

    # a driver that died between restoring the cell and saving bench.json: the run directory
    # still says where its run came from
    died = state(tmp_path / "two")
    for key in ("reused_from", "restored"):
        died["cells"][iql].pop(key)
    died["cells"][iql]["state"] = "queued"
    (tmp_path / "two" / "bench.json").write_text(json.dumps(died))
    again = run_bench(*base, "--agents", "iql", "bc", "--root", str(tmp_path / "two"),
                      "--set", "adept.generator_seed=0")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert state(tmp_path / "two")["cells"][iql]["reused_from"]["cell"] == iql
    # the reused run deleted: the cell runs here, and its record no longer names another grid
    shutil.rmtree(run_dir)
    rerun = run_bench(*base, "--agents", "iql", "bc", "--root", str(tmp_path / "two"),
                      "--set", "adept.generator_seed=0")  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert (run_dir / "checkpoint.pt").exists()
    assert "reused_from" not in state(tmp_path / "two")["cells"][iql]

    fresh = run_bench(*base, "--agents", "iql", "bc", "--root", str(tmp_path / "three"),
                      "--archive", str(ours), "--set", "adept.generator_seed=0")  # fmt: skip
    assert fresh.returncode == 0 and "2 from the archive" in fresh.stdout, fresh.stderr
    report = subprocess.run(
        [sys.executable, "-m", "adept", "report", str(tmp_path / "three")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "three" / "report" / "results.md").read_text()
    assert "1 finished cells are other grids' runs (1 from " in text

    read = run_bench(*base, "--agents", "iql", "--root", str(tmp_path / "four"),
                     "--reuse", str(theirs), "--set", "iql.expectile=0.8")  # fmt: skip
    assert read.returncode == 0 and "from other grids" not in read.stdout, read.stderr
    assert (tmp_path / "four" / iql / "checkpoint.pt").exists(), "an option it reads differs"
    assert "another config" in read.stderr and "expectile" in read.stderr, "and says so"
    # a source whose run differs passed over for a later one that matches: reused, no warning
    later = run_bench(*base, "--agents", "iql", "--root", str(tmp_path / "eight"),
                      "--reuse", str(tmp_path / "four"), str(theirs))  # fmt: skip
    assert later.returncode == 0 and "1 from other grids" in later.stdout, later.stderr
    assert "not reused" not in later.stderr, "a candidate passed over for a match is not news"

    kept = json.loads((theirs / iql / "config.json").read_text())
    kept["dataset_fingerprint"] = "0" * 32  # as if made on another machine's data
    (theirs / iql / "config.json").write_text(json.dumps(kept))
    other = run_bench(*base, "--agents", "iql", "--root", str(tmp_path / "five"),
                      "--reuse", str(theirs))  # fmt: skip
    assert other.returncode == 0 and "from other grids" not in other.stdout, other.stderr
    assert "made from other data" in other.stderr and "not reused" in other.stderr

    del kept["dataset_fingerprint"]  # a run from before adept recorded it
    (theirs / iql / "config.json").write_text(json.dumps(kept))
    unchecked = run_bench(*base, "--agents", "iql", "--root", str(tmp_path / "seven"),
                          "--reuse", str(theirs))  # fmt: skip
    assert unchecked.returncode == 0 and "1 from other grids" in unchecked.stdout
    assert "records no data fingerprint" in unchecked.stderr, "taken on trust, and said so"

    monkeypatch.setenv("ADEPT_DATA_DIR", str(tmp_path / "no-data-yet"))
    missing = run_bench(*base, "--agents", "iql", "--root", str(tmp_path / "six"),
                        "--reuse", str(tmp_path / "nowhere"))  # fmt: skip
    assert missing.returncode == 2 and "--reuse" in missing.stderr
    assert not (tmp_path / "six").exists() and not (tmp_path / "no-data-yet").exists(), (
        "refused before the grid makes anything (its datasets included)"
    )
