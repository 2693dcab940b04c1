"""``adept bench``: a grid of datasets × variants × agents × seeds in one resumable command.

A grid is a :class:`~adept.bench.spec.GridSpec`, named by a preset
(:data:`~adept.bench.presets.PRESETS`), a TOML file and command-line options, each layer
overriding the one before. A *variant* is a named method plus overrides of any ``adept train``
option (``adept-uniform = {method = "adept", "adept.refit.rule" = "uniform"}``), so an ablation
is one spec. Every cell is an ordinary run directory::

    ROOT/bench.json                                 the spec, and per cell its state and scores
    ROOT/<dataset>/<variant>/<agent>/seed<k>/       an `adept train` run directory
    ROOT/logs/<dataset>__<variant>__<agent>__seed<k>.log   the cell's output

so ``adept eval``, resume and ``adept report`` work on it unchanged. Re-running the same command
is idempotent: finished cells are skipped, unfinished ones resume from their checkpoints
(exactly, as ``adept train`` does), missing and failed ones start. A failed cell is recorded in
bench.json (error and log tail) and never stops the grid; the exit status is the number of
failed cells.

What does not depend on the agent is done once: datasets are made by the driver before any
worker starts, and world-model pre-training and the β fit are cached content-addressed by what
determines them (:mod:`adept.store.artifacts`), so Diff+X and ADEPT+X with IQL and SAC share one
pre-trained model per dataset and seed.

A grid can outlive the machine it runs on: with ``--archive DIR`` every finished cell's light
files (config.json, metrics.csv, summary.json, divergence.json, and its bench.json record; no
checkpoints) are copied to ``DIR/<cell id>/`` as it finishes, and a grid started on a fresh
machine (an empty root) takes the finished cells it finds there instead of running them again,
after checking that each holds this cell's config. Commit the archive beside the grid's report
and the same command continues the grid in the next session, wherever that runs.

Backends: ``local`` runs each cell in its own Python process (a crash or an out-of-memory kill
takes only that cell), ``workers`` at a time, each with ``threads`` torch threads; ``ray`` runs
each cell as a Ray task on a cluster whose nodes share the root folder (and ``$ADEPT_DATA_DIR``)
through a shared filesystem, retried on worker loss.

The modules: :mod:`~adept.bench.spec` (the grid and its overrides), :mod:`~adept.bench.presets`
(the grids that ship with adept), :mod:`~adept.bench.store` (the grid's folder, archives and
reuse), :mod:`~adept.bench.backends` (local processes, Ray) and :mod:`~adept.bench.run` (the
command).
"""

from adept.bench.presets import PRESETS, REPORT_GRIDS, list_presets, load_toml, preset
from adept.bench.run import BenchOptions, BenchResult, list_cells, run_bench
from adept.bench.spec import (
    Cell,
    GridSpec,
    Variant,
    parse_assignments,
    parse_variant_arg,
    resolve_spec,
)
from adept.bench.store import BENCH_JSON, BenchRoot

__all__ = [
    "BENCH_JSON",
    "PRESETS",
    "REPORT_GRIDS",
    "BenchOptions",
    "BenchResult",
    "BenchRoot",
    "Cell",
    "GridSpec",
    "Variant",
    "list_cells",
    "list_presets",
    "load_toml",
    "parse_assignments",
    "parse_variant_arg",
    "preset",
    "resolve_spec",
    "run_bench",
]
