"""The grids that ship with adept (``adept bench --preset NAME``), each a TOML file in
``adept/bench/presets/`` with a one-line ``description``; a grid that reproduces a committed
report keeps its spec beside that report (``docs/results/<report>/grid.toml``) instead."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Any

from adept.base.errors import AdeptError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPORT_GRIDS = {
    "adept-claim": "docs/results/adept-claim-cpu50k/grid.toml",
    "adept-claim-sac": "docs/results/adept-claim-cpu50k/grid-sac.toml",
    "adept-levers": "docs/results/adept-levers-cpu50k/grid.toml",
    "synther-table": "docs/results/synther-table-cpu50k/grid.toml",
    "trajectory-table": "docs/results/trajectory-table-cpu50k/grid.toml",
    "precision-table": "docs/results/precision-table-cpu20k/grid.toml",
}
"""Grids that were presets and now live beside the report they made (in the repository)."""


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML grid file, or a one-line error naming what is wrong with it."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise AdeptError(f"spec file {path} does not exist; give the path of a TOML grid") from None
    except tomllib.TOMLDecodeError as exc:
        raise AdeptError(f"spec file {path} is not valid TOML ({exc})") from None


def _load_presets() -> dict[str, dict[str, Any]]:
    folder = resources.files("adept.bench") / "presets"
    return {
        entry.name.removesuffix(".toml"): tomllib.loads(entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    }


PRESETS: dict[str, dict[str, Any]] = _load_presets()
"""The shipped grids by name, as their TOML files hold them."""


def preset(name: str) -> dict[str, Any]:
    """The grid of preset ``name``; a one-line error for a name that is not one, and for a
    report's grid, where it now is."""
    if name in PRESETS:
        return PRESETS[name]
    if name in REPORT_GRIDS:
        raise AdeptError(
            f"--preset {name} is now the spec beside its report: pass --spec {REPORT_GRIDS[name]} "
            "(in a checkout of the adept repository)"
        )
    raise AdeptError(
        f"unknown preset '{name}'; presets: {', '.join(PRESETS)} (adept bench --list-presets)"
    )


def list_presets() -> str:
    """One line per preset: its name and description."""
    width = max(len(name) for name in PRESETS)
    return "\n".join(
        f"{name:<{width}}  {grid.get('description', '')}" for name, grid in PRESETS.items()
    )
