"""The package's architecture, checked: no import cycle, and each outside system behind one package.

Imports are read from the source (module level and inside functions alike), so a lazy import counts;
imports only the type checker sees (``if TYPE_CHECKING:``) do not.
docs/architecture.md draws the same rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"

# third-party module -> the only packages of orchestrator/ that may import it
CONFINED = {
    "docker": ("engine", "registry"),  # registry: the default registry's names (docker.auth)
    "diskcache": ("cache",),
    "starlark": ("workspace",),
    "dockerfile": ("dockerfile",),  # BuildKit's parser (PyPI dockerfile), behind orchestrator/dockerfile/reads.py
    "requests": ("engine", "registry"),
    "urllib3": ("engine", "registry"),
    "http": ("engine", "registry"),  # the engine's own socket talk, and registry HTTP
    "urllib.request": ("registry",),
    "cyclonedx": ("supply",),  # SBOM documents (cyclonedx-python-lib), and the purls it brings
    "packageurl": ("supply",),
    "cryptography": ("supply",),  # keys and ECDSA signatures, behind orchestrator/supply/signing.py
}


# The layers, lowest first: a module imports only from its own layer or lower ones.
LAYERS = {
    "errors": 0,
    "core": 1,
    "dockerfile": 2,
    "cache": 2,
    "supply": 2,  # pure: image layers in, SBOM documents out
    "graph": 3,
    "workspace": 4,
    "keys": 5,
    "engine": 6,
    "registry": 7,
    "pipeline": 8,
    "imagetest": 9,
    "lint": 9,
    "report": 9,
    "adopt": 9,
    "cli": 10,
}
# The one import that climbs: an image reference without a registry host means the default
# registry, whose names come from the docker SDK (registry/defaults.py) so that none is written here.
CLIMBS = {("orchestrator.core.imageref", "orchestrator.registry.defaults")}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> Iterator[str]:
    """What a module imports when it runs (``if TYPE_CHECKING:`` blocks are for the type checker only)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _internal_graph() -> nx.DiGraph:
    modules = _modules()
    graph: nx.DiGraph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for imported in _imports(name, path):
            if imported in modules and imported != name:
                graph.add_edge(name, imported)
    return graph


def test_no_import_cycle_between_modules() -> None:
    graph = _internal_graph()
    # A package's __init__ is not a cycle with its own modules (they are one unit).
    cycles = [c for c in nx.simple_cycles(graph) if len(c) > 1]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


def _layer(module: str) -> int:
    """The module's layer; ``orchestrator/__main__.py`` (``python -m orchestrator``) sits on top."""
    parts = module.split(".")
    return LAYERS.get(parts[1], max(LAYERS.values()) + 1) if len(parts) > 1 else 0


def test_imports_flow_down_the_layers() -> None:
    climbs = [
        f"{a} ({_layer(a)}) imports {b} ({_layer(b)})"
        for a, b in _internal_graph().edges
        if _layer(a) < _layer(b) and (a, b) not in CLIMBS
    ]
    assert not climbs, "imports that climb the layers (see docs/architecture.md):\n" + "\n".join(climbs)


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages - {"__pycache__"} <= LAYERS.keys(), sorted(packages - LAYERS.keys())


@pytest.mark.parametrize("library", sorted(CONFINED))
def test_a_third_party_library_is_imported_only_where_it_belongs(library: str) -> None:
    allowed = CONFINED[library]
    offenders = []
    for name, path in _modules().items():
        subpackage = name.split(".")[1] if name.count(".") else ""
        for imported in _imports(name, path):
            if (imported == library or imported.startswith(library + ".")) and subpackage not in allowed:
                offenders.append(f"{name} imports {imported}")
    assert not offenders, f"{library} belongs in orchestrator/{{{','.join(allowed)}}} only:\n" + "\n".join(offenders)


def test_no_test_double_in_the_product_package() -> None:
    doubles = [p.name for p in PACKAGE.rglob("*.py") if "fake" in p.stem]
    assert not doubles
