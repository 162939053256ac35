"""Fixes found by fuzzing and by using fastnn as people do (threads, pickle, pandas' Fortran
arrays, odd dtypes): each test here failed before its fix."""
import pickle
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn.backends import cpp, numpy_ref


def test_float32_that_went_through_pickle_is_float32():
    # joblib, multiprocessing and scikit-learn hand over arrays whose dtype is an equal but
    # distinct object: fit and predict take them as they take any float32 array
    X = pickle.loads(pickle.dumps(np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)))
    assert X.dtype == np.float32 and X.dtype is not np.dtype(np.float32)
    y = np.arange(64) % 3
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(5, 8), fnn.ReLU(), fnn.Linear(8, 3))
    model.fit(X, y, epochs=2, verbose=0)
    out = np.empty((64, 3), np.float32)
    out = pickle.loads(pickle.dumps(out))
    cpp.linear_forward(out, X, model[0].weight.data[:3], None)
    assert np.isfinite(model.predict(X)).all()


def test_a_fortran_ordered_input_trains_through_linear():
    # DataFrame.values is often Fortran-ordered: forward took it, backward raised
    X = np.asfortranarray(np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32))
    layer = fnn.Linear(4, 3)
    layer(X)
    dx = layer.backward(np.ones((40, 3), np.float32))
    np.testing.assert_allclose(dx, np.ones((40, 3)) @ layer.weight.data, rtol=1e-6)
    model = fnn.Sequential(fnn.Linear(4, 3))
    model.fit(X, np.arange(40) % 3, epochs=1, verbose=0, use_plan=False)


def test_threads_drawing_dropout_masks_never_share_numbers():
    # fnn.random.uniform read the generator's state, filled without the GIL and wrote it back:
    # two threads drew the same numbers
    fnn.manual_seed(0)
    draws, n = [], 1 << 15

    def draw():
        for _ in range(100):
            draws.append(fnn.random.uniform(n)[:8].tobytes())
    threads = [threading.Thread(target=draw) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(draws) == 200 and len(set(draws)) == 200


def test_first_nonfinite_agrees_on_every_numeric_dtype():
    cases = [np.array([1, 2, np.inf], ">f4"), np.array([1, np.nan], np.float16),
             np.array([1, 1 + 1j, complex(0, np.inf)]), np.array([np.nan, 1], np.float64),
             np.arange(5), np.array([True, False]), np.array(3.0), np.array([], np.float32)]
    for x in cases:
        assert cpp.first_nonfinite(x) == numpy_ref.first_nonfinite(x), x.dtype
    assert [cpp.first_nonfinite(x) for x in cases] == [2, 1, 2, 0, -1, -1, -1, -1]
    for ops in (cpp, numpy_ref):
        with pytest.raises(TypeError, match="x must hold numbers, got <U1|x must hold numbers"):
            ops.first_nonfinite(np.array(["a"]))


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
def test_gelu_takes_a_zero_dimensional_array(ops):
    out = np.empty((), np.float32)
    ops.gelu_forward(out, np.float32(1.0))
    assert abs(float(out) - 0.8413447) < 1e-6
    dx = np.empty((), np.float32)
    ops.gelu_backward(dx, np.float32(1.0), np.float32(1.0))
    assert abs(float(dx) - 1.0833155) < 1e-6


def test_float_sigmoid_below_minus_87_is_zero_as_documented():
    # the vectorised sigmoid keeps ≤ 4 ulp where its result is a normal float; below x = −87
    # the exact result is subnormal (< 1.2e-38) and the SIMD paths give 0
    x = np.array([-87.5, -90.0, -103.0], np.float32)
    out = np.empty_like(x)
    cpp.sigmoid_forward(out, x)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert np.all(np.abs(out - exact) < 1.2e-38)


def test_building_a_large_model_peaks_near_two_copies_of_its_weights():
    # initialisation drew a float64 array the size of the weights and Sequential copied zero
    # gradients: 400 MB of weights peaked at 1.2 GB; now the data twice (old store and new) at most
    code = ("import resource, fastnn as fnn\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "m = fnn.Sequential(fnn.Linear(10000, 10000))\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, m.num_parameters() * 4 / 2**20)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    peak, weights = map(float, r.stdout.split())
    assert peak < 2.3 * weights, (peak, weights)
