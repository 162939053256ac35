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
