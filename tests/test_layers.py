"""The package's layers: each imports only the layers below it, and no import cycle exists.

Every import of every module counts, those inside functions and under ``TYPE_CHECKING``
included: a cycle hidden behind a lazy import is still a cycle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "adept"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("adept", "adept.base")),
    ("data formats", ("adept.data",)),
    ("environments and networks", ("adept.envs", "adept.nets")),
    ("the diffusion core", ("adept.diffusion",)),
    ("run and artifact stores", ("adept.store",)),
    ("agents", ("adept.agents",)),
    ("dataset making", ("adept.datasets",)),
    ("world models", ("adept.world_models",)),
    ("methods", ("adept.methods",)),
    ("the registry of agents and methods", ("adept.registry",)),
    ("the speed layer", ("adept.accel",)),
    ("training", ("adept.training",)),
    ("bench", ("adept.bench",)),
    ("report", ("adept.report",)),
    ("command line", ("adept.cli", "adept.__main__")),
]
"""Bottom to top. A module belongs to the layer of the longest prefix that names it."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            named = module == prefix or (prefix != "adept" and module.startswith(prefix + "."))
            if named and len(prefix) > best:
                best, index = len(prefix), i
    if index is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return index


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The adept modules ``module`` imports, anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from adept.x import y`` imports the module adept.x.y where there is one
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] != "adept":
                continue
            while name not in known:  # an attribute's module: its longest known prefix
                name = name.rpartition(".")[0]
            if name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


def test_each_layer_imports_only_the_layers_below_it():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_cycle():
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    "edges, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert cycles(edges) == expected


def test_the_import_reader_sees_lazy_and_type_checking_imports(tmp_path):
    source = tmp_path / "adept" / "x.py"
    source.parent.mkdir()
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from adept.cli import main\n"
        "def f():\n    import adept.bench\n    from . import y\n"
    )
    found = imports("adept.x", source, {"adept", "adept.cli", "adept.bench", "adept.y"})
    assert found == {"adept", "adept.cli", "adept.bench", "adept.y"}
