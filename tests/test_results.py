"""The bench report, on hand-made bench roots with known scores (no training)."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tyro

from adept.base.errors import AdeptError
from adept.cli import main
from adept.report.command import Report, write_report
from adept.report.figures import seed_curves
from adept.report.load import load_bench, method_label
from adept.report.stats import batched_improvement, batched_iqm, batched_optimality_gap

STEPS = (100, 200, 300)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class FakeCell:
    """A cell as the bench would leave it: ``curve`` is its eval scores at STEPS (a finished cell
    has all three and a summary.json; a running one a prefix and none)."""

    state: str = "done"
    curve: tuple[float, ...] = ()
    error: str | None = None


def spec(seeds=(0, 1, 2), variants=("none", "adept"), datasets=("hopper-random", "walker-r")):
    return {
        "datasets": list(datasets),
        "agents": ["iql"],
        "seeds": list(seeds),
        "variants": {
            v: {"method": "adept" if v.startswith("adept") else v, "agents": None, "set": {}}
            for v in variants
        },
        "num_steps": STEPS[-1],
        "eval_every": 100,
        "eval_episodes": 10,
        "set": {},
        "budget": "cpu-300",
    }


def write_rows(path: Path, rows: list[dict]) -> None:
    """A metrics.csv of ``rows``, its columns every key any row has."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)


def write_metrics(path: Path, method: str, curve: tuple[float, ...], seed: int) -> None:
    """Long format as the training loop writes it: set-up metrics at step 0, then train averages
    and eval scores on the same rows; world-model diagnostics only for world-model methods."""
    columns = ["step", "wall_time", "train/q_loss", "eval/normalized_score", "eval/return"]
    if method != "none":
        columns += [
            "world_model/true_error_1step",
            "world_model/eps_m",
            "world_model/is_ess_fraction",
        ]
    rows = []
    if method != "none":
        rows.append({"step": 0, "wall_time": 1.0, "world_model/eps_m": 0.5 + seed})
    for i, score in enumerate(curve):
        row = {"step": STEPS[i], "wall_time": 2.0 + i, "train/q_loss": 1.0 / (i + 1)}
        row |= {"eval/normalized_score": score, "eval/return": 10 * score}
        if method != "none":
            row |= {
                "world_model/true_error_1step": 0.2 / (i + 1) + 0.01 * seed,
                "world_model/eps_m": 0.4 / (i + 1),
                "world_model/is_ess_fraction": 0.6 - 0.05 * i,
            }
        rows.append(row)
    write_rows(path / "metrics.csv", [{c: r.get(c, "") for c in columns} for r in rows])


def write_bench(root: Path, bench_spec: dict, cells: dict[tuple[str, str, int], FakeCell]) -> Path:
    """``cells``: (dataset, variant, seed) -> FakeCell, every agent iql."""
    entries = {}
    for (dataset, variant, seed), cell in cells.items():
        method = bench_spec["variants"][variant]["method"]
        rel = f"{dataset}/{variant}/iql/seed{seed}"
        run = root / rel
        run.mkdir(parents=True)
        (run / "config.json").write_text("{}")
        if cell.curve:
            write_metrics(run, method, cell.curve, seed)
        done = cell.state == "done"
        if done and cell.curve:
            summary = {
                "normalized_score_last": cell.curve[-1],
                "normalized_score_best": max(cell.curve),
                "return_last": 10 * cell.curve[-1],
                "steps": STEPS[-1],
                "wall_time": 4.0,
            }
            (run / "summary.json").write_text(json.dumps(summary))
        entries[rel] = {
            "dataset": dataset,
            "dataset_label": dataset,
            "variant": variant,
            "method": method,
            "agent": "iql",
            "seed": seed,
            "path": rel,
            "state": cell.state,
            "wall_time": 4.0 if done else None,
            "attempts": 1,
            # bench.json's copies are deliberately wrong: the run dir is the source of truth
            "normalized_score_last": -1.0 if done else None,
            "normalized_score_best": -1.0 if done else None,
            "error": cell.error,
            "log_tail": None,
        }
    bench = {
        "format": 1,
        "adept_version": "0.1.0",
        "spec": bench_spec,
        "cells": entries,
        "updated": "2026-11-21T22:30:00",
    }
    (root / "bench.json").write_text(json.dumps(bench))
    return root


# last scores: hopper IQL 10/20/30, ADEPT 40/50/60; walker-r IQL 5/5/5, ADEPT 5/5/6
LAST = {
    ("hopper-random", "none"): (10.0, 20.0, 30.0),
    ("hopper-random", "adept"): (40.0, 50.0, 60.0),
    ("walker-r", "none"): (5.0, 5.0, 5.0),
    ("walker-r", "adept"): (5.0, 5.0, 6.0),
}


def full_grid(root: Path) -> Path:
    cells = {
        (d, v, seed): FakeCell(curve=(last / 2, last + 7, last))  # best: the middle eval
        for (d, v), lasts in LAST.items()
        for seed, last in enumerate(lasts)
    }
    return write_bench(root, spec(), cells)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    root = full_grid(tmp_path_factory.mktemp("bench"))
    return write_report(root), root


def read_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as f:
        return {(r["dataset"], r["label"]): r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_csv_means_and_cis_match_hand_computation(full):
    result, root = full
    rows = read_csv(result.out / "results.csv")
    assert len(rows) == 4 and result.out == root / "report"
    hopper = rows[("hopper-random", "IQL")]
    assert hopper["seeds"] == "3" and hopper["budget"] == "cpu-300"
    assert float(hopper["last_mean"]) == pytest.approx(20.0)
    low, high = float(hopper["last_ci_low"]), float(hopper["last_ci_high"])
    # a bootstrap mean of three seeds lies between the smallest and the largest seed
    assert 10.0 <= low < 20.0 < high <= 30.0
    assert float(hopper["best_mean"]) == pytest.approx(27.0)
    equal = rows[("walker-r", "IQL")]
    assert float(equal["last_ci_low"]) == float(equal["last_ci_high"]) == 5.0, "equal seeds"
    adept = rows[("walker-r", "ADEPT+IQL")]
    assert adept["method"] == "adept" and adept["variant"] == "adept"
    assert float(adept["last_mean"]) == pytest.approx(16 / 3, abs=1e-4)


def test_markdown_tables_bold_and_aggregates(full):
    result, _ = full
    md = (result.out / "results.md").read_text()
    assert md.startswith("# Bench report: cpu-300 budget")
    assert "12 of 12 cells done." in md and "not finished" not in md
    assert "| dataset | IQL | ADEPT+IQL |" in md
    hopper = next(line for line in md.splitlines() if line.startswith("| hopper-random"))
    cells = [c.strip() for c in hopper.strip("|").split("|")]
    assert cells[1].startswith("20.0 [") and not cells[1].startswith("**")
    assert cells[2].startswith("**50.0 [") and cells[2].endswith("]**"), "row best in bold"
    # IQM of IQL's six last scores (5, 5, 5, 10, 20, 30): trim one each end -> mean(5, 5, 10, 20)
    iqm_row = next(line for line in md.splitlines() if line.startswith("| IQL | 3 × 2"))
    assert "| 10.0 [" in iqm_row and "| 87.5 [" in iqm_row  # gap: 100 − 75/6
    # P(ADEPT+IQL > IQL): 1 on hopper; on walker-r 5,5,6 vs 5,5,5: (6 × ½ + 3) / 9 = 2/3
    assert "| ADEPT+IQL | IQL | 0.83 [" in md
    # every table names the CPU budget
    for heading in [line for line in md.splitlines() if line.startswith("## ")][:-1]:
        assert "cpu-300" in heading


@pytest.mark.slow
def test_report_is_deterministic(full, tmp_path):
    result, root = full
    again = write_report(root, out=tmp_path / "again")
    for name in ("results.csv", "results.md"):
        assert (again.out / name).read_text() == (result.out / name).read_text()


def test_batched_statistics_equal_rliable():
    metrics = pytest.importorskip("rliable.metrics")
    rng = np.random.default_rng(0)
    for shape in [(4, 3), (3, 1), (5, 2), (1, 3), (2, 2)] * 4:
        x = rng.integers(0, 6, size=shape).astype(float) * 25  # ties and scores above 100
        y = rng.integers(0, 6, size=(3, shape[1])).astype(float) * 25
        assert batched_iqm(x[None])[0] == pytest.approx(metrics.aggregate_iqm(x))
        assert batched_optimality_gap(x[None])[0] == pytest.approx(
            metrics.aggregate_optimality_gap(x, 100)
        )
        assert batched_improvement(x[None], y[None])[0] == pytest.approx(
            metrics.probability_of_improvement(x, y)
        )


def test_figures_are_valid_pngs(full):
    import matplotlib.image

    result, _ = full
    names = {p.name for p in result.files}
    assert {"learning_curves.png", "aggregate_iqm.png", "diagnostics.png"} <= names
    for name in ("learning_curves.png", "aggregate_iqm.png", "diagnostics.png"):
        path = result.out / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 300 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05, f"{name} is blank"
        # each method is drawn in its colour (tab10: IQL blue, ADEPT+IQL orange)
        for rgb in ((0.12, 0.47, 0.71), (1.0, 0.50, 0.05)):
            close = np.abs(image[..., :3] - np.array(rgb)).max(axis=-1) < 0.08
            if name != "diagnostics.png" or rgb[0] == 1.0:  # diagnostics: world models only
                assert close.sum() > 100, f"{name} lacks the lines or bars of colour {rgb}"


@pytest.mark.slow
def test_partial_grid_counts_failures_and_partial_seeds(tmp_path):
    cells = {
        ("hopper-random", "none", 0): FakeCell(curve=(1, 2, 3)),
        ("hopper-random", "none", 1): FakeCell(curve=(1, 2, 5)),
        ("hopper-random", "none", 2): FakeCell("running", curve=(1,)),
        ("walker-r", "none", 0): FakeCell(curve=(1, 2, 4)),
        ("walker-r", "none", 1): FakeCell(curve=(1, 2, 6)),
        ("walker-r", "none", 2): FakeCell("failed", error="CUDA out of memory\nTraceback ..."),
        ("hopper-random", "adept", 0): FakeCell(curve=(1, 2, 9)),
        ("hopper-random", "adept", 1): FakeCell("queued"),
        ("hopper-random", "adept", 2): FakeCell("queued"),
        ("walker-r", "adept", 0): FakeCell("done"),  # says done, but no curve, no summary.json
        ("walker-r", "adept", 1): FakeCell(curve=(1, 2, 3)),  # its summary.json is damaged below
        ("walker-r", "adept", 2): FakeCell("queued"),
    }
    root = write_bench(tmp_path / "bench", spec(), cells)
    (root / "walker-r/adept/iql/seed1/summary.json").write_text("{")
    for i, cell in enumerate(["hopper-random/none/iql/seed0", "hopper-random/none/iql/seed1"]):
        sha = ("abcdef0123", "1234567890")[i]  # a grid continued from an archive over sessions
        (root / cell / "config.json").write_text(json.dumps({"config": {}, "git_sha": sha}))
    result = write_report(root)
    assert (result.cells_done, result.cells_total) == (5, 12)
    assert result.unfinished == {"queued": 3, "running": 1, "failed": 3}
    md = (result.out / "results.md").read_text()
    assert "5 of 12 cells done. 7 of 12 cells not finished: 3 queued, 1 running, 3 failed." in md
    assert (
        "finished cells ran at adept commits unknown (3 cells), abcdef0 (1 cell), 1234567 (1 cell)"
        in md
    )
    assert "walker-r/adept/iql/seed1: unreadable" in md
    assert "walker-r/none/iql/seed2: CUDA out of memory Traceback ..." in md
    assert "walker-r/adept/iql/seed0: bench.json says done but" in md
    assert "(n=2)" in md and "| – |" in md, "partial seeds marked, empty cell dashed"
    assert "9.0 (n=1)" in md and "no CI" in md
    assert "ADEPT+IQL: no finished seed on walker-r" in md, "left out of the aggregates"
    rows = read_csv(result.out / "results.csv")
    assert rows[("hopper-random", "IQL")]["seeds"] == "2"
    # curves, like the tables, leave out the running seed's partial log
    band = seed_curves(load_bench(root), "eval/normalized_score", [("none", "iql")], 200, 0)
    hopper = band["hopper-random"]["IQL"]
    assert hopper.runs == 2 and hopper.steps.tolist() == list(STEPS)
    assert hopper.mean.tolist() == [1.0, 2.0, 4.0]
    assert rows[("hopper-random", "ADEPT+IQL")]["last_ci_low"] == "", "one seed: no CI"
    assert rows[("walker-r", "ADEPT+IQL")]["seeds"] == "0"


def test_a_bench_without_world_models_draws_no_diagnostics(tmp_path):
    cells = {("hopper-random", "none", s): FakeCell(curve=(1, 2, 3 + s)) for s in (0, 1)}
    root = write_bench(
        tmp_path / "b", spec(seeds=(0, 1), variants=("none",), datasets=("hopper-random",)), cells
    )
    (root / "report").mkdir()
    (root / "report" / "diagnostics.png").write_bytes(b"stale")
    result = write_report(root)
    assert not (result.out / "diagnostics.png").exists(), "a stale figure is removed"
    assert (result.out / "learning_curves.png").exists()
    md = (result.out / "results.md").read_text()
    assert "No reference variant" in md
    assert "every finished cell ran at adept commit unknown" in md


@pytest.mark.slow
def test_report_command(full, capsys):
    _, root = full
    command = tyro.cli(Report, args=[str(root), "--reps", "200", "--reference", "none"])
    command.run()
    out = capsys.readouterr().out
    assert f"report: {root / 'report'}" in out and "cells: 12 of 12 done" in out
    assert "| IQL | ADEPT+IQL | 0.17 [" in (root / "report" / "results.md").read_text()


def test_report_help_documents_every_field(capsys):
    with pytest.raises(SystemExit):
        tyro.cli(Report, args=["--help"])
    text = capsys.readouterr().out
    for word in (
        "ROOT",
        "bench.json",
        "--out",
        "ROOT/report",
        "--reference",
        "--reps",
        "Bootstrap",
    ):
        assert word in text


def test_labels():
    assert method_label("none", "iql") == "IQL"
    assert method_label("diffusion", "sac") == "Diff+SAC"
    assert method_label("adept", "td3bc") == "ADEPT+TD3+BC"
    assert method_label("adept-uniform", "iql") == "ADEPT-uniform+IQL"
    assert method_label("adept-h5", "iql") == "adept-h5+IQL", "other variants keep their name"


def bench_json(root: Path, value) -> Path:
    root.mkdir()
    (root / "bench.json").write_text(value if isinstance(value, str) else json.dumps(value))
    return root


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing", ["does not exist", "--root"]),
        ("no bench.json", ["is not a bench root (no bench.json)", "'adept bench'"]),
        ("bad json", ["not a valid bench.json", "unreadable JSON"]),
        ("bad format", ["format 7", "reads format 1"]),
        ("no cells", ["not a valid bench.json", "'cells'"]),
        ("empty grid", ["lists no cells", "'adept bench'"]),
        ("bad reference", ["--reference 'diffusion'", "none, adept"]),
        ("nothing done", ["no cell has finished yet", "3 queued, 1 running"]),
        ("bad reps", ["--reps 10", "at least 100"]),
    ],
)
def test_errors_write_nothing(tmp_path, case, words):
    root = tmp_path / "root"
    kwargs = {}
    if case == "no bench.json":
        root.mkdir()
    elif case == "bad json":
        bench_json(root, "{not json")
    elif case == "bad format":
        bench_json(root, {"format": 7, "spec": {}, "cells": {}})
    elif case == "no cells":
        bench_json(root, {"format": 1, "spec": {}})
    elif case == "empty grid":
        bench_json(root, {"format": 1, "spec": {}, "cells": {}})
    elif case == "bad reference":
        full_grid(root)
        kwargs = {"reference": "diffusion"}
    elif case == "nothing done":
        cells = {("hopper-random", "none", s): FakeCell("queued") for s in range(3)}
        cells[("walker-r", "none", 0)] = FakeCell("running", curve=(1,))
        write_bench(root, spec(variants=("none",)), cells)
    elif case == "bad reps":
        full_grid(root)
        kwargs = {"reps": 10}
    out = tmp_path / "out"
    with pytest.raises(AdeptError) as info:
        write_report(root, out=out, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message
    assert not out.exists()
    assert not (root / "report").exists()


@pytest.mark.slow
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_report_that_cannot_be_written_leaves_the_previous_one_whole(
    full, tmp_path, monkeypatch, capsys, code
):
    """The disk fills at the third file: no file of the previous report changes (not the two
    written before either), no temporary is left, and the error is one line."""
    result, root = full
    out = tmp_path / "report"
    shutil.copytree(result.out, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_write, written = Path.write_bytes, []

    def failing_write(self: Path, data) -> int:
        written.append(self.name)
        if len(written) == 3:
            real_write(self, bytes(data)[: len(data) // 2])
            raise OSError(code, os.strerror(code))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing_write)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(root), "--out", str(out), "--reps", "200"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and os.strerror(code) in err and str(out) in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_load_bench_orders_datasets_and_methods_as_the_spec(full):
    _, root = full
    bench = load_bench(root)
    assert bench.datasets == ("hopper-random", "walker-r")
    assert bench.methods == (("none", "iql"), ("adept", "iql"))
    assert [c.last for c in bench.done[:3]] == [10.0, 20.0, 30.0], "scores from summary.json"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow  # a real headless browser
def test_html_renders_in_a_browser(full, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("Chromium not installed: apt-get install chromium")
    result, _ = full
    page = (result.out / "report.html").resolve()
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == 3
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)
    assert "<link" not in text and "http" not in text, "self-contained"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert '<p id="render-check" class="ok">all 3 figures rendered</p>' in dom
    assert "<th>ADEPT+IQL</th>" in dom
    assert "<td><strong>50.0 [" in dom and "<td>20.0 [" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()],
        capture_output=True,
        timeout=60,
    )
    import matplotlib.image

    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (2400, 1280)
    assert image[..., :3].std() > 0.05, "the screenshot is not blank"


@pytest.fixture(scope="module")
def own_report(tmp_path_factory):
    """The full grid's report, for tests that read it after others rewrote ``full``'s."""
    return write_report(full_grid(tmp_path_factory.mktemp("bench-own")))


@pytest.mark.slow
def test_area_under_the_curve_is_the_mean_of_the_evaluations(own_report):
    result = own_report
    rows = read_csv(result.out / "results.csv")
    # curves (last/2, last + 7, last): AUC = (2.5·last + 7) / 3; hopper IQL lasts 10, 20, 30
    assert float(rows[("hopper-random", "IQL")]["auc_mean"]) == pytest.approx(19.0, abs=1e-4)
    md = (result.out / "results.md").read_text()
    assert "## Table 3: normalized score averaged over all evaluations" in md


def test_verdicts_need_ci_that_do_not_overlap(own_report):
    from adept.report.analysis import verdict
    from adept.report.stats import Estimate

    result = own_report
    md = (result.out / "results.md").read_text()
    assert "| hopper-random | ADEPT+IQL | IQL | beats | beats |" in md
    # walker-r: 5, 5, 6 against 5, 5, 5 — the intervals touch at 5
    assert "| walker-r | ADEPT+IQL | IQL | CIs overlap | CIs overlap |" in md
    assert verdict(Estimate(1.0, 0.5, 1.5), Estimate(3.0, 2.0, 4.0)) == "loses"
    assert verdict(Estimate(3.0, 2.0, 4.0), Estimate(1.0, 0.5, 1.5)) == "beats"
    assert verdict(Estimate(3.0, None, None), Estimate(1.0, 0.5, 1.5)) == "no CI"


def test_the_papers_figures_stand_beside_ours_where_it_has_them(own_report):
    result = own_report
    md = (result.out / "results.md").read_text()
    section = md.split("## Beside the paper's figures")[1].split("## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("| hopper-random")]
    assert lines[0].startswith("| hopper-random | IQL | 20.0 [") and lines[0].endswith("| 7.5 |")
    assert lines[1].startswith("| hopper-random | ADEPT+IQL | 50.0 [")
    assert lines[1].endswith("| 37.5 |")
    assert "walker-r" not in section, "no figure for a dataset the paper does not have"


def test_diagnostics_no_run_logged_get_no_column(own_report):
    """The fake runs log three of the four diagnostics: three panel columns, not four."""
    import struct

    png = (own_report.out / "diagnostics.png").read_bytes()
    from adept.report.plots import DPI

    width = struct.unpack(">I", png[16:20])[0]  # the IHDR chunk
    # figsize 4.6 inches per column at adept.report.plots' dpi; a fourth column would add a third
    assert width == round(DPI * 4.6 * 3)


def test_rise_and_collapse_reads_the_diagnostics_at_the_peak_and_at_the_end(tmp_path):
    from adept.report.document import collapse_table

    cells = {
        ("hopper-random", v, s): FakeCell(curve=(1.0, 5.0 + s, 2.0))
        for v in ("none", "adept")
        for s in (0, 1)
    }
    root = write_bench(tmp_path / "b", spec(seeds=(0, 1), datasets=("hopper-random",)), cells)
    for seed in (0, 1):
        # the critic's Q on imagined rows runs away from real ones as the score falls
        rows = [{"step": 0, "wall_time": 0.0, "q/model": 99.0, "q/real": 0.0}]
        for i, step in enumerate(STEPS):
            rows.append(
                {
                    "step": step - 50,
                    "wall_time": 1.0 + i,
                    "q/model": 10.0 * (i + 1),
                    "q/real": 5.0,
                    "world_model/true_return_gap": float(i + seed),
                }
            )
            rows.append(
                {
                    "step": step,
                    "wall_time": 1.5 + i,
                    "eval/normalized_score": (1.0, 5.0 + seed, 2.0)[i],
                    "eval/length": (80.0, 1000.0, 150.0 + 100 * seed)[i],
                }
            )
        write_rows(root / "hopper-random/adept/iql" / f"seed{seed}" / "metrics.csv", rows)
    table = collapse_table(load_bench(root))
    assert table is not None
    rows = {r[1]: r for r in table.rows}
    # peak at the second evaluation (step 200) in both seeds; best 5 and 6, last 2
    assert rows["ADEPT+IQL"][2:5] == ("200", "5.5", "2.0")
    assert rows["ADEPT+IQL"][5] == "1000 → 200", "episode length at the peak → at the end"
    assert rows["ADEPT+IQL"][6] == "15 → 25", "Q model − Q real at step 150 → at step 250"
    assert rows["ADEPT+IQL"][7] == "1.5 → 2.5", "the return gap, mean over seeds"
    assert rows["IQL"][5:] == ("–",) * 3, "a model-free run has no diagnostics (nor, here, lengths)"
    md = (write_report(root).out / "results.md").read_text()
    assert "## Rise and collapse" in md and "| hopper-random | ADEPT+IQL | 200 | 5.5 | 2.0 |" in md
    # no run logged the true error: its column goes
    assert table.header[5:] == ("episode length", "Q model − Q real", "imagined − real return")
    for seed in (0, 1):  # runs from before the length was logged: its column goes
        path = root / "hopper-random/adept/iql" / f"seed{seed}" / "metrics.csv"
        with path.open() as f:
            kept = [{k: v for k, v in r.items() if k != "eval/length"} for r in csv.DictReader(f)]
        write_rows(path, kept)
    older = collapse_table(load_bench(root))
    assert older is not None and "episode length" not in older.header
    assert {r[1]: r for r in older.rows}["ADEPT+IQL"][5] == "15 → 25"
    for seed in (0, 1):  # diagnostics first logged after the peak: the first one stands for it
        path = root / "hopper-random/adept/iql" / f"seed{seed}" / "metrics.csv"
        with path.open() as f:
            late = [
                {
                    k: ("" if k.startswith("q/") and float(r["step"]) < 250 else v)
                    for k, v in r.items()
                }
                for r in csv.DictReader(f)
            ]
        write_rows(path, late)
    latest = collapse_table(load_bench(root))
    assert latest is not None
    assert {r[1]: r for r in latest.rows}["ADEPT+IQL"][5] == "25 → 25", "the first Q, at 250"


def bench_logging_own_true_errors(tmp_path: Path, variants: tuple[str, ...]) -> Path:
    """A grid whose PGD and DyDiff runs log the true error of what they imagine under their own
    names as they train (3, 2, 1 just before each evaluation; scores 1, 5, 2)."""
    cells = {
        ("hopper-random", v, s): FakeCell(curve=(1.0, 5.0, 2.0)) for v in variants for s in (0, 1)
    }
    root = write_bench(
        tmp_path / "b", spec(seeds=(0, 1), variants=variants, datasets=("hopper-random",)), cells
    )
    for variant, key in (("pgd", "pgd/true_error"), ("dydiff", "dydiff/true_error_1")):
        for seed in (0, 1):
            rows = []
            for i, step in enumerate(STEPS):
                rows.append({"step": step - 50, "wall_time": 1.0 + i, key: float(3 - i)})
                rows.append(
                    {"step": step, "wall_time": 1.5 + i, "eval/normalized_score": (1, 5, 2)[i]}
                )
            write_rows(
                root / "hopper-random" / variant / "iql" / f"seed{seed}" / "metrics.csv", rows
            )
    return root


def test_rise_and_collapse_reads_each_methods_own_true_error(tmp_path):
    from adept.report.document import collapse_table

    root = bench_logging_own_true_errors(tmp_path, ("none", "adept", "pgd", "dydiff"))
    table = collapse_table(load_bench(root))
    assert table is not None and table.header[-1] == "true 1-step error"
    rows = {r[1]: r for r in table.rows}
    # peak at step 200: the value logged at 150 (2), and at the end the one at 250 (1)
    assert rows["PGD+IQL"][-1] == "2 → 1"
    assert rows["DyDiff+IQL"][-1] == "2 → 1"
    assert rows["ADEPT+IQL"][-1] != "–", "a world model's own true error still reads"
    assert rows["IQL"][-1] == "–"


@pytest.mark.slow
def test_the_diagnostics_figure_draws_pgds_and_dydiffs_true_error(tmp_path):
    """Runs that log only their own true error get the figure's one column for it."""
    import struct

    from adept.report.plots import DPI

    root = bench_logging_own_true_errors(tmp_path, ("none", "pgd", "dydiff"))
    png = (write_report(root).out / "diagnostics.png").read_bytes()
    assert struct.unpack(">I", png[16:20])[0] == round(DPI * 4.6), "one column: the true error"
