"""Hypothesis property tests: arbitrary shapes and values, C++ against the twin and against
the laws the math obeys."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastnn.backends import cpp, numpy_ref

dims = st.integers(0, 70)
finite32 = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=150, deadline=None)
@given(m=dims, n=dims, k=dims, ta=st.booleans(), tb=st.booleans(), seed=st.integers(0, 2**32 - 1),
       beta=st.sampled_from([0.0, 1.0, -0.5]))
def test_gemm_any_shape(m, n, k, ta, tb, seed, beta):
    r = np.random.default_rng(seed)
    a = r.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = r.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    c0 = r.standard_normal((m, n)).astype(np.float32)
    got, want = c0.copy(), c0.copy()
    cpp.gemm(got, a, b, ta, tb, 1.0, beta)
    numpy_ref.gemm(want, a, b, ta, tb, 1.0, beta)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * (k + 1))


@settings(max_examples=150, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 40)), elements=finite32))
def test_softmax_rows_are_distributions(x):
    y, z = np.empty_like(x), np.empty_like(x)
    cpp.softmax_forward(y, x)
    numpy_ref.softmax_forward(z, x)
    assert np.all(y >= 0) and np.all(y <= 1)
    np.testing.assert_allclose(y.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(y, z, rtol=1e-5, atol=1e-7)


@settings(max_examples=150, deadline=None)
@given(x=arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 12)),
                elements=st.floats(-1e4, 1e4, allow_nan=False, width=32)), seed=st.integers(0, 1000))
def test_cross_entropy_is_finite_nonnegative_and_matches(x, seed):
    t = np.random.default_rng(seed).integers(0, x.shape[1], x.shape[0])
    g1, g2 = np.empty_like(x), np.empty_like(x)
    l1, l2 = cpp.cross_entropy_forward(g1, x, t), numpy_ref.cross_entropy_forward(g2, x, t)
    assert np.isfinite(l1) and l1 >= 0
    np.testing.assert_allclose(l1, l2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g1.sum(axis=1), 0, atol=1e-6)  # softmax − onehot sums to 0


@settings(max_examples=150, deadline=None)
@given(x=arrays(np.float32, st.integers(0, 300), elements=st.floats(-1e5, 1e5, allow_nan=False, width=32)))
def test_activations_bounded_and_match(x):
    for name, lo, hi in (("sigmoid", 0, 1), ("tanh", -1, 1), ("relu", 0, np.inf)):
        a, b = np.empty_like(x), np.empty_like(x)
        getattr(cpp, f"{name}_forward")(a, x)
        getattr(numpy_ref, f"{name}_forward")(b, x)
        assert np.all((a >= lo) & (a <= hi))
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
