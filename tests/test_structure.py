"""The architecture, checked from the source: fastnn's modules import each other without a
cycle (imports inside functions count too: they are how a cycle hides), and the layers know
nothing of the training loop, the compiled plan, models or files."""
import ast
import importlib
import types
from pathlib import Path

import fastnn

ROOT = Path(fastnn.__file__).parent


def module_name(path: Path) -> str:
    parts = ("fastnn",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def exists(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def is_module(base: str, attr: str) -> bool:
    """Whether `from base import attr` imports a module (a source file or the extension)."""
    if exists(f"{base}.{attr}"):
        return True
    try:
        return isinstance(getattr(importlib.import_module(base), attr, None), types.ModuleType)
    except (ImportError, OSError):
        return False


def imports(path: Path) -> set:
    """The fastnn modules a file imports, anywhere in it."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: use absolute imports"
            base = node.module or ""
            # `from fastnn.x import y` imports the module fastnn.x.y when there is one
            names = [f"{base}.{a.name}" if is_module(base, a.name) else base for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] == "fastnn" and (exists(n) or n == "fastnn._core")}
    return out


def graph() -> dict:
    """Module -> the fastnn modules it imports. Importing fastnn.p.q from outside package
    fastnn.p first runs fastnn/p/__init__.py, so that counts as importing fastnn.p too."""
    g = {}
    for path in ROOT.rglob("*.py"):
        m = module_name(path)
        deps = set()
        for d in imports(path):
            deps.add(d)
            parts = d.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if not (m == parent or m.startswith(parent + ".")):
                    deps.add(parent)
        g[m] = deps - {m}
    return g


def find_cycle(g: dict):
    """A list of modules that import each other in a ring, or None."""
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == "open":
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = "done"
        return None

    for m in sorted(g):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    g = graph()
    assert len(g) > 20 and "fastnn.plan" in g["fastnn.training"]
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_do_not_import_the_loop_the_plan_models_or_files():
    g = graph()
    upper = {"fastnn.training", "fastnn.plan", "fastnn.model", "fastnn.serialization", "fastnn.callbacks"}
    for m, deps in g.items():
        if m.startswith("fastnn.layers"):
            assert not deps & upper, f"{m} imports {sorted(deps & upper)}"


def test_the_check_finds_a_cycle_hidden_in_functions(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("def f():\n    from fastnn import b\n")
    (tmp_path / "b.py").write_text("def g():\n    import fastnn.a\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    g = graph()
    assert g == {"fastnn.a": {"fastnn.b"}, "fastnn.b": {"fastnn.a"}}
    assert find_cycle(g) == ["fastnn.a", "fastnn.b", "fastnn.a"]


def test_the_extensions_type_stub_is_what_the_binary_exports(tmp_path):
    # fastnn/_core.pyi is what mypy checks fastnn's calls against; regenerated from the built
    # extension it must come out the same (after its two comment lines)
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path
    tool = shutil.which("pybind11-stubgen") or str(Path(sys.executable).parent / "pybind11-stubgen")
    r = subprocess.run([tool, "fastnn._core", "-o", str(tmp_path)], capture_output=True, text=True, timeout=120,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    committed = (Path(__file__).resolve().parent.parent / "fastnn" / "_core.pyi").read_text().splitlines()[2:]
    assert (tmp_path / "fastnn" / "_core.pyi").read_text().splitlines() == committed, \
        "regenerate fastnn/_core.pyi with pybind11-stubgen (see its first lines)"
