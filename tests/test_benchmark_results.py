"""The benchmark scripts' results files: kept beside the report they make, so a measurement
started on one machine continues on another."""

from __future__ import annotations

import json

from benchmarks.common import load_results, save_results


def test_a_reports_results_are_kept_beside_it_and_continue_from_there(tmp_path):
    out, report = tmp_path / "runs" / "bench", tmp_path / "docs" / "world-models.md"
    path, results = load_results(out, report)
    assert path == tmp_path / "docs" / "world-models.json" and results == {}
    results["hopper-random|diffusion"] = {"pi_1step": 0.05}
    save_results(path, results)
    assert not out.exists(), "with a report, nothing goes to OUT"
    again = load_results(tmp_path / "another-machine", report)
    assert again == (path, {"hopper-random|diffusion": {"pi_1step": 0.05}})


def test_without_a_report_results_go_to_out_and_a_reports_first_run_starts_from_them(tmp_path):
    out = tmp_path / "runs" / "bench"
    path, results = load_results(out, None)
    assert path == out / "results.json" and results == {}
    save_results(path, {"a": 1})
    report = tmp_path / "docs" / "r.md"
    kept, results = load_results(out, report)
    assert kept == report.with_suffix(".json") and results == {"a": 1}, "OUT's results carry over"
    save_results(kept, {"a": 1, "b": 2})
    assert json.loads(kept.read_text()) == {"a": 1, "b": 2}
    assert load_results(out, report)[1] == {"a": 1, "b": 2}, "the kept file wins over OUT's"
