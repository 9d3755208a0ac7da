"""The package's layers import downwards only, deferred (function-level) imports included, and
never another module's private names. Imports under ``if TYPE_CHECKING:`` do not run and are not
counted. The layers are described in docs/architecture.md; this table is their source of truth."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "medstream"

# Lowest first. A module's layer is that of its longest matching prefix.
LAYERS: dict[str, int] = {
    "medstream.errors": 0, "medstream.redact": 0, "medstream.limits": 0, "medstream.options": 0,
    "medstream.core": 1,
    "medstream.codecs": 2,
    "medstream.volumes.geometry": 2,  # pure geometry of slices (numpy): loaders use it too
    "medstream.volumes.export": 2,  # writing arrays with a geometry
    "medstream.volumes.nifti1": 2,  # NIfTI files without nibabel (export writes them)
    "medstream.volumes.resample": 2,  # values of one grid on another
    "medstream.storage": 3, "medstream.dicom": 3,
    "medstream.loaders": 4, "medstream.render": 4,
    "medstream.volumes": 5, "medstream.gpu": 5,
    "medstream.discovery": 6,
    "medstream.dicomweb": 7, "medstream.interop": 7, "medstream.notebook": 7,
    "medstream.segmentation": 7,
    "medstream": 8,  # the public facade (__init__): imports every layer below
    "medstream.client": 8,
    "medstream.distributed": 9, "medstream.monai": 9, "medstream.demo_data": 9,
    "medstream.cli": 10, "medstream.__main__": 11,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (not those under ``if TYPE_CHECKING:``)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    return [n for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[tuple[str, str | None]]:
    """(medstream module imported, name imported from it) for one import statement."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names if a.name.split(".")[0] == "medstream"]
    package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
    if node.level:
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if target.split(".")[0] != "medstream":
        return []
    out = []
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        out.append((sub, None) if sub in MODULES else (target, alias.name))
    return out


def _edges() -> dict[str, set[tuple[str, str | None]]]:
    edges: dict[str, set[tuple[str, str | None]]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for node in _runtime_imports(ast.parse(path.read_text())):
            for target, name in _targets(module, node):
                while target not in MODULES and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in MODULES and target != module:
                    edges[module].add((target, name))
    return edges


EDGES = _edges()


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: {t for t, _ in targets} for m, targets in EDGES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    assert len(MODULES) > 60
    for module in MODULES:
        layer(module)


def test_no_import_cycles_deferred_imports_included():
    assert _cycles() == []


def test_layers_import_downwards_only():
    upward = sorted(f"{m} ({layer(m)}) imports {t} ({layer(t)})"
                    for m, targets in EDGES.items() for t, _ in targets if layer(t) > layer(m))
    assert upward == []


def test_no_module_imports_another_modules_private_names():
    private = sorted(f"{m} imports {name} from {t}" for m, targets in EDGES.items()
                     for t, name in targets
                     if name and name.startswith("_") and not name.startswith("__"))
    assert private == []
