"""The docs in the repository say what the code does: docs/api.md is what docs/gen_api.py
writes from the docstrings of every public name, and the README names no file a user lacks."""
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_api_reference_is_current():
    pytest.importorskip("sklearn")  # fastnn.sklearn is documented too (CI installs it)
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"], capture_output=True,
                       text=True, timeout=120, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr + r.stdout


def test_the_readme_points_only_at_what_the_repository_holds():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "SEEDS" not in text and "API.md" not in text and "../shared" not in text
    for path in ("docs/api.md", "docs/performance.md", "bench/distributed.py", "bench/under_load.py"):
        assert path in text, path
        assert (ROOT / path).exists(), path


def _public_objects():
    import importlib
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import gen_api
    finally:
        sys.path.pop(0)
    import fastnn
    out = [(f"fnn.{n}", getattr(fastnn, n)) for _, names in gen_api.SECTIONS for n in names]
    for mod, names in gen_api.MODULES:
        if mod == "fastnn.sklearn" and importlib.util.find_spec("sklearn") is None:
            continue
        m = importlib.import_module(mod)
        out += [(f"{mod}.{n}", getattr(m, n)) for n in names]
    return out


def test_the_examples_in_the_reference_run_as_written(tmp_path, monkeypatch):
    # every >>> example of a public name (docs/api.md shows them) runs and prints what it says,
    # with `fnn`, `np` and a small MNIST-shaped `X`, `y`, `model` and `opt` at hand
    import doctest
    import inspect

    import numpy as np

    import fastnn as fnn
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    finder = doctest.DocTestFinder(recurse=True)
    failures, ran = [], 0
    for name, obj in _public_objects():
        module = inspect.getmodule(obj)
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(784, 32), fnn.ReLU(), fnn.Linear(32, 10))
        globs = {**(vars(module) if module else {}), "fnn": fnn, "np": np, "model": model,
                 "X": np.random.default_rng(0).random((64, 784), dtype=np.float32), "y": np.arange(64) % 10,
                 "opt": fnn.SGD(model.parameters(), lr=0.1)}
        for test in finder.find(obj, name, globs=globs):
            if not test.examples:
                continue
            ran += 1
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
            report = []
            if runner.run(test, out=report.append).failed:
                failures.append("".join(report)[:1500])
    assert ran >= 20, ran  # (the finder found the examples)
    assert not failures, "\n".join(failures)
