"""The import graph of `noisegroup/`, read from the source (no import runs): no cycle, the models never import the
engine, and an import inside a function only for a heavy or optional package."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "noisegroup"
# Imported where used, and why: SciPy / scikit-learn are heavy and load in the clustering workers; umap-learn is
# optional (not a requirement).
LAZY = {"scipy.cluster.hierarchy", "scipy.spatial.distance", "sklearn.cluster", "umap"}


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict) -> list[tuple[str, bool]]:
    """(imported module, inside a function) of every import in `path`; `from package import submodule` counts as
    the submodule (the package's __init__ runs first, but that is not a dependency on its contents)."""
    tree = ast.parse(path.read_text())
    inside = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [t for t in (f"{base}.{a.name}" for a in node.names) if t in known] or [base]
        else:
            continue
        found += [(t, id(node) in inside) for t in targets]
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        deps = set()
        for target, _ in imports(name, path, known):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                deps.add(target)
        edges[name] = deps
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `edges`, or None (depth-first search)."""
    state, trail = {}, []

    def visit(v):
        state[v] = "open"
        trail.append(v)
        for w in sorted(edges[v]):
            if state.get(w) == "open":
                return trail[trail.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"
        trail.pop()
        return None

    for v in sorted(edges):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_import_cycle_in_noisegroup():
    edges = graph()
    assert len(edges) > 30 and "noisegroup.lns.results" in edges["noisegroup.lns.plots"]
    assert cycle(edges) is None, " -> ".join(cycle(edges))
    assert cycle({**edges, "noisegroup.lns.results": {"noisegroup.lns.plots"}}) is not None  # the check can fail


def test_models_never_import_the_engine():
    edges = graph()
    for name, deps in edges.items():
        if name.startswith("noisegroup.models"):
            assert not {d for d in deps if d.startswith("noisegroup.engine")}, name


def test_imports_inside_functions_are_only_heavy_or_optional_packages():
    known = modules()
    lazy = {(name, target) for name, path in known.items() for target, inside in imports(name, path, known) if inside}
    assert {target for _, target in lazy} <= LAZY, sorted(lazy)
