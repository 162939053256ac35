"""pytest-benchmark GEMM suite: fastnn and numpy.matmul on the same shapes, in the same run.

    BENCH_THREADS=2 pytest bench/bench_gemm.py --benchmark-group-by=param:shape
"""
import numpy as np
import pytest

from fastnn.backends import cpp
from gemm_table import SHAPES


@pytest.mark.parametrize("impl", ["fastnn", "numpy"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s[5] for s in SHAPES])
def test_gemm(benchmark, shape, impl):
    m, k, n, ta, tb, _ = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    if impl == "fastnn":
        benchmark(cpp.gemm, c, a, b, ta, tb)
    else:
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        benchmark(np.matmul, opa, opb, out=c)
    benchmark.extra_info["gflop"] = 2 * m * n * k / 1e9
