import os

# scikit-learn's array-API check (tests/test_interop.py) runs only with SciPy's array-API mode on,
# which must be set before SciPy is first imported
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

import fastnn


@pytest.fixture(autouse=True)
def _restore_settings():
    """Tests may switch backend, threads or SIMD path; put them back afterwards."""
    backend, threads, simd = fastnn.get_backend(), fastnn.get_num_threads(), fastnn._core.simd_path()
    yield
    fastnn.set_backend(backend)
    fastnn.set_num_threads(threads)
    fastnn._core.set_simd_path(simd)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["cpp", "numpy"])
def backend(request):
    """Run a test once on each backend."""
    fastnn.set_backend(request.param)
    return request.param
