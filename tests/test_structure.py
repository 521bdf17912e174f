"""The engine's imports form a DAG: no module of kdlab imports (module-level or inside a function) a module
that imports it back, directly or through others."""
import ast
from pathlib import Path

import kdlab

ROOT = Path(kdlab.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = f
    return mods


def import_graph() -> dict[str, set[str]]:
    """module -> the kdlab modules it imports anywhere in its file (``from .x import y`` resolved to the module
    ``x.y`` when that is a module, else ``x``)."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = m.split(".")
                    parts = parts[: len(parts) - node.level + (1 if is_pkg else 0)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != m and t.split(".")[0] == "kdlab":
                    graph[m].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    g = {"kdlab.a": {"kdlab.b"}, "kdlab.b": {"kdlab.c"}, "kdlab.c": {"kdlab.a"}, "kdlab.d": {"kdlab.a"}}
    assert cycles(g) == [["kdlab.a", "kdlab.b", "kdlab.c"]]
    assert cycles({"kdlab.a": {"kdlab.b"}, "kdlab.b": set()}) == []


def test_graph_sees_local_and_relative_imports():
    g = import_graph()
    assert "kdlab.records" in g["kdlab.models.features"]        # module level, relative
    assert "kdlab.speed.buckets" in g["kdlab.models.features"]   # `from .speed import buckets` is the module
    assert "kdlab.engine.distill" in g["kdlab.tools.bench"]      # inside a function, two levels up
    assert g["kdlab.records"] == set()                     # the shared records are a leaf


def test_no_import_cycles_in_kdlab():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


# ----------------------------------------------------------------------------------------------- layers
# The packages in the order of docs/ARCHITECTURE.md's layers, top first; a module imports from its own layer or
# below. kdlab's top-level modules (config, choices, tasks, errors, records, ...) are the foundation under all.
LAYERS = (("cli", "__main__", "tools"), ("lm", "ranking", "deploy"), ("engine",), ("analysis",), ("methods",),
          ("models",), ("data",), ("kd",), ("speed",), ("runs",), ("",))
# The imports that still point up (most of them inside the function that needs them), to be moved down or removed;
# a new one fails the test, and so does one left here after it is gone.
UPWARD = {
    ("kdlab.analysis.doctor", "kdlab.engine.distill"), ("kdlab.analysis.doctor", "kdlab.engine.pipeline"),
    ("kdlab.analysis.explain", "kdlab.engine.pipeline"), ("kdlab.config", "kdlab.engine.selection"),
    ("kdlab.config", "kdlab.models.families"), ("kdlab.config_check", "kdlab.methods"),
    ("kdlab.data.augment", "kdlab.analysis.evaluate"), ("kdlab.engine.pipeline", "kdlab.lm.train"),
    ("kdlab.engine.study", "kdlab.lm.study"),   # an LM study's baseline (lm-ce) and its teacher, once
    ("kdlab.engine.pipeline", "kdlab.ranking.train"), ("kdlab.models.core", "kdlab.deploy.prune"),
    ("kdlab.runs.checkpoint", "kdlab.models.core"), ("kdlab.speed.cache", "kdlab.models.features"),
    ("kdlab.models.ready_teacher", "kdlab.analysis.evaluate"),
}


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    pkg = top if len(parts) > 2 or _modules()[module].name == "__init__.py" or top in ("cli", "__main__") else ""
    return next(i for i, names in enumerate(LAYERS) if pkg in names)


def test_no_module_imports_from_a_layer_above_its_own():
    graph = import_graph()
    up = {(a, b) for a, bs in graph.items() for b in bs if layer(b) < layer(a)}
    assert not up - UPWARD, f"imports that point up a layer (docs/ARCHITECTURE.md): {sorted(up - UPWARD)}"
    assert not UPWARD - up, f"these no longer point up: drop them from UPWARD: {sorted(UPWARD - up)}"
