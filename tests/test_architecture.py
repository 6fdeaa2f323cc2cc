"""The shape of the code (docs/architecture.md): no import cycles, imports only down the layers, the store's file
names in one module, short modules. Static: the modules are parsed (ast), not imported."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# layer of each package or module (by dotted prefix); a module may import its own layer and the ones below it
LAYERS = [("views", 5), ("app", 5), ("bench", 4), ("bif.cli", 4), ("bif.__main__", 4), ("bif.evaluation", 4),
          ("bif.service", 3), ("bif.dist", 2), ("bif.store", 2), ("bif.export", 2), ("bif.image", 2),
          ("bif.render", 2), ("bif.lm", 1), ("bif.core", 0), ("bif.errors", 0), ("bif.layout", 0), ("bif", 4)]
STORE_NAMES = re.compile(r"^(COMPLETE|VERIFIED|request\.json|texts\.json|init\.safetensors|examples\.safetensors|"
                         r"queries\.json|rows\.json|draws\.json|job\.json|status\.json|progress\.json|launcher\.json|"
                         r"grows_from\.json|build_info\.json|log\.txt)$|chain_\{|draws_\{|state_\{|chain_\*")
BUILTIN_NAMES = {"demo", "smollm2"}  # bif.lm.registry's names (tests/test_builtin.py checks they are all of them)
MAX_LINES = 300
# modules allowed above the limit: none since the splits of 2026-12 (cli, runs, trace, layout, scale_bench, ...)
LONG: set[str] = set()


def modules() -> dict[str, Path]:
    paths = [*ROOT.glob("bif/**/*.py"), *ROOT.glob("views/**/*.py"), *ROOT.glob("bench/*.py"), ROOT / "app.py"]
    out = {}
    for p in paths:
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def imports(path: Path, name: str, known: set[str], top_level_only: bool) -> set[str]:
    """The bif/views/bench modules `path` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def layer(name: str) -> int:
    return next(level for prefix, level in LAYERS if name == prefix or name.startswith(prefix + "."))


def graph(top_level_only: bool) -> dict[str, set[str]]:
    mods = modules()
    return {n: imports(p, n, set(mods), top_level_only) for n, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
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

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_among_modules():
    g = graph(top_level_only=False)  # function-level imports count too: a cycle hidden in a function is one
    for pkg in ("bif", "views", "bench"):  # a package's __init__ re-exporting its modules is not a cycle
        g.get(pkg, set()).clear()
    assert cycles(g) == []


def test_imports_go_down_the_layers():
    """views -> programs (cli, bench, evaluation) -> service -> store, dist -> lm -> core (errors, layout: all)."""
    g = graph(top_level_only=False)
    up = [f"{a} -> {b}" for a, deps in g.items() for b in deps
          if layer(b) > layer(a) and not (a == "bif" and b.startswith("bif."))]
    assert up == []


def test_the_store_file_names_are_spelled_only_in_the_layout_package():
    spelled = []
    for name, path in modules().items():
        if name == "bif.layout" or name.startswith("bif.layout."):  # bif/layout/: names, runfiles, cacheroot
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings and \
                    STORE_NAMES.search(node.value):
                spelled.append(f"{name}:{node.lineno} {node.value!r}")
            elif isinstance(node, ast.JoinedStr):  # f"chain_{c:03d}.safetensors" spells one too
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
                if STORE_NAMES.search(text):
                    spelled.append(f"{name}:{node.lineno} f{text!r}")
    assert spelled == []


def test_modules_are_short():
    long = {n: len(p.read_text().splitlines()) for n, p in modules().items()}
    too_long = {n: k for n, k in long.items() if k > MAX_LINES and n not in LONG}
    assert too_long == {}, f"split these modules (at most {MAX_LINES} lines): {too_long}"


def test_only_the_registry_knows_the_built_in_names():
    """No module but bif.lm.registry compares a model or data name with a built-in's ('demo', 'smollm2') or keys a
    table by one: everything a built-in is (label, preset, size, example queries) is asked of the registry."""
    def names_in(node) -> set:
        items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
        return {n.value for n in items if isinstance(n, ast.Constant) and n.value in BUILTIN_NAMES}

    found = []
    for name, path in modules().items():
        if name == "bif.lm.registry":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                hits = set().union(*(names_in(n) for n in [node.left, *node.comparators]))
            elif isinstance(node, ast.Dict):
                hits = set().union(*(names_in(k) for k in node.keys if k is not None))
            else:
                continue
            found += [f"{name}:{node.lineno} {h!r}" for h in sorted(hits)]
    assert found == []
