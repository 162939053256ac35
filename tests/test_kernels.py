"""Every C++ kernel against its NumPy twin against a float64 reference (tests/harness.py), on
many shapes, contiguous and strided inputs, float32 and float64, and every SIMD path."""
import inspect
import platform
import re

import numpy as np
import pytest

from fastnn import _core, backends
from fastnn.backends import cpp, numpy_ref
from harness import CASE_SHAPES, CASES, SIMD_PATHS, build, run_case, unaligned


def test_every_kernel_has_a_twin_and_a_case():
    covered = {c.kernel for c in CASES}
    assert set(backends.KERNELS) <= covered
    for name in backends.KERNELS:
        twin, native = getattr(numpy_ref, name), getattr(cpp, name)
        twin_args = list(inspect.signature(twin).parameters)
        native_args = re.match(rf"{name}\((.*?)\)", native.__doc__).group(1)
        native_args = [a.split(":")[0].strip() for a in native_args.split(",")]
        assert twin_args == native_args, name


def test_harness_covers_every_simd_path_this_cpu_has():
    # The harness runs each case on SIMD_PATHS; a CPU whose flags show AVX2+FMA or AVX-512F must
    # have those paths in it, or the fast kernels would go untested.
    assert SIMD_PATHS[0] == "portable"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []  # not Linux: only the portable guarantee can be checked
    if platform.machine() in ("x86_64", "AMD64"):
        if "avx2" in flags and "fma" in flags:
            assert "avx2" in SIMD_PATHS
        if "avx512f" in flags and "fma" in flags:
            assert "avx512" in SIMD_PATHS


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case,shape", CASE_SHAPES, ids=[f"{c.id}-{s}" for c, s in CASE_SHAPES])
def test_kernel_matches_twin(case, shape, dtype):
    run_case(case, shape, dtype)


@pytest.mark.parametrize("case,shape", CASE_SHAPES, ids=[f"{c.id}-{s}" for c, s in CASE_SHAPES])
def test_kernel_matches_twin_strided_inputs(case, shape):
    run_case(case, shape, np.float32, noncontig=True)


FIRST_SHAPES = [(c, c.shapes[min(1, len(c.shapes) - 1)]) for c in CASES]  # an odd, non-trivial shape each


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case,shape", FIRST_SHAPES, ids=[f"{c.id}-{s}" for c, s in FIRST_SHAPES])
def test_kernel_matches_twin_unaligned_inputs(case, shape, dtype):
    # Inputs whose items sit at odd byte offsets are copied before a kernel dereferences them
    # (reading a float through a misaligned pointer is undefined behaviour; the sanitizer stage
    # of .ci/run reports it).
    run_case(case, shape, dtype, misaligned=True)


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
@pytest.mark.parametrize("case,shape", FIRST_SHAPES, ids=[f"{c.id}-{s}" for c, s in FIRST_SHAPES])
def test_unaligned_outputs_are_refused(case, shape, ops):
    args, kwargs = build(case, shape, np.float32)
    for i in case.outputs:
        if args[i] is None or args[i].size == 0:
            continue
        bad = list(args)
        bad[i] = unaligned(args[i])
        kept = bad[i].copy()
        with pytest.raises(TypeError, match="not aligned|aligned C-contiguous"):
            getattr(ops, case.kernel)(*bad, **kwargs)
        np.testing.assert_array_equal(bad[i], kept)  # nothing written


def test_float64_inputs_to_float32_kernel_are_converted():
    x = np.linspace(-2, 2, 11)  # float64
    out = np.empty(11, np.float32)
    for ops in (cpp, numpy_ref):
        ops.relu_forward(out, x)
        np.testing.assert_array_equal(out, np.maximum(x, 0).astype(np.float32))


def test_integer_and_list_inputs_are_converted():
    out = np.empty((2, 2), np.float32)
    for ops in (cpp, numpy_ref):
        ops.gemm(out, [[1, 2], [3, 4]], np.eye(2, dtype=np.int32))
        np.testing.assert_array_equal(out, [[1, 2], [3, 4]])


def test_elementwise_kernels_run_in_place():
    for ops in (cpp, numpy_ref):
        x = np.array([-1.0, 0.0, 2.0], np.float32)
        ops.relu_forward(x, x)
        np.testing.assert_array_equal(x, [0, 0, 2])


def test_zero_size_batch_gives_empty_outputs_and_zero_gradients():
    for ops in (cpp, numpy_ref):
        x, w, b = np.empty((0, 5), np.float32), np.ones((3, 5), np.float32), np.ones(3, np.float32)
        out = np.empty((0, 3), np.float32)
        ops.linear_forward(out, x, w, b)
        dw, db, dx = np.zeros((3, 5), np.float32), np.zeros(3, np.float32), np.empty((0, 5), np.float32)
        ops.linear_backward(dx, dw, db, np.empty((0, 3), np.float32), x, w)
        assert not dw.any() and not db.any()
        d = np.empty((0, 4), np.float32)
        assert ops.cross_entropy_forward(d, d.copy(), np.empty(0, np.int64)) == 0.0


def test_extreme_inputs_stay_finite():
    for ops in (cpp, numpy_ref):
        logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], np.float32)
        d = np.empty_like(logits)
        loss = ops.cross_entropy_forward(d, logits, np.array([1, 2]))
        assert np.isfinite(loss) and np.isfinite(d).all()
        np.testing.assert_allclose(loss, 1e4, rtol=1e-6)  # row 0 pays 2e4, row 1 pays 0
        y = np.empty(4, np.float32)
        ops.sigmoid_forward(y, np.array([-1000, 1000, -88.8, 88.8], np.float32))
        assert np.isfinite(y).all() and y[0] == 0 and y[1] == 1
        x, t = np.array([-1e4, 1e4, 1000.0, -1000.0], np.float32), np.array([1, 0, 1, 0], np.float32)
        g = np.empty_like(x)
        loss = ops.bce_with_logits_forward(g, x, t)
        np.testing.assert_allclose(loss, (1e4 + 1e4) / 4, rtol=1e-6)
        assert np.isfinite(g).all()
        p = np.array([0.0, 1.0], np.float32)
        assert ops.bce_forward(np.empty(2, np.float32), p, np.array([1, 0], np.float32)) == 100.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_special_values_match_the_twin(dtype):
    # NaN passes through ReLU (a diverged network must not turn into zeros), and its gradient
    # there is 1, ReLU'(0) = 0: PyTorch's values (test_torch_parity checks them against torch).
    x = np.array([np.nan, -np.inf, -1.0, -0.0, 0.0, 1e-40, 2.0, np.inf], dtype)
    dout = np.arange(1, 9).astype(dtype)
    for ops in (cpp, numpy_ref):
        y = np.empty_like(x)
        ops.relu_forward(y, x)
        assert np.isnan(y[0]) and list(y[1:]) == [0, 0, 0, 0, x[5], 2, np.inf], ops
        dx = np.empty_like(x)
        ops.relu_backward(dx, dout, x)
        assert list(dx) == [1, 0, 0, 0, 0, 6, 7, 8], ops
        ops.leaky_relu_forward(y, x, 0.1)
        assert np.isnan(y[0]) and y[2] == dtype(-0.1) and y[7] == np.inf, ops
    z = np.zeros((8, 1), dtype)
    cpp.gemm(z, x[:, None].copy(), np.ones((1, 1), dtype), activation="relu")  # the GEMM epilogue
    assert np.isnan(z[0, 0]) and list(z[1:, 0]) == [0, 0, 0, 0, x[5], 2, np.inf]


# ---- the vectorised exp behind sigmoid, tanh and softmax (csrc/vmath_impl.h) on every SIMD path
def _ulps(got, want):
    """Error in float32 ulps of the true value, for values whose magnitude is a normal float."""
    want = want.astype(np.float64)
    keep = np.abs(want) > 1e-30
    spacing = np.spacing(np.abs(want[keep]).astype(np.float32)).astype(np.float64)
    return np.abs(got[keep] - want[keep]) / spacing


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_sigmoid_and_tanh_are_within_4_ulp_over_the_whole_float_range(path):
    x = np.concatenate([np.linspace(-120, 120, 1_000_001, dtype=np.float32),
                        np.linspace(-1, 1, 1_000_001, dtype=np.float32),
                        np.geomspace(1e-30, 1, 10_001).astype(np.float32)])
    x = np.concatenate([x, -x[-10_001:]])
    xd = x.astype(np.float64)
    _core.set_simd_path(path)
    for name, ref in (("sigmoid", 1 / (1 + np.exp(-xd))), ("tanh", np.tanh(xd))):
        y = np.empty_like(x)
        getattr(cpp, name + "_forward")(y, x)
        assert _ulps(y, ref).max() <= 4, (path, name)
        assert np.abs(y - ref).max() <= 2e-7, (path, name)  # values below 1e-30 included


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_sigmoid_tanh_softmax_special_values(path):
    _core.set_simd_path(path)
    x = np.array([-np.inf, -1e4, -90, -88.5, 0.0, -0.0, 88.5, 90, 1e4, np.inf, np.nan, 1e-40], np.float32)
    y = np.empty_like(x)
    cpp.sigmoid_forward(y, x)
    assert list(y[:2]) == [0, 0] and list(y[7:10]) == [1, 1, 1] and y[4] == 0.5 and np.isnan(y[10])
    assert 0 <= y[2] < 1e-38 and 0 <= y[3] < 1e-37 and y[11] == 0.5
    cpp.tanh_forward(y, x)
    assert list(y[:4]) == [-1, -1, -1, -1] and list(y[6:10]) == [1, 1, 1, 1] and np.isnan(y[10])
    assert y[4] == 0 and not np.signbit(y[4]) and y[5] == 0 and np.signbit(y[5])
    assert abs(y[11] - 1e-40) <= 1e-45
    # softmax: -inf entries get exactly 0; a NaN poisons only its own row; rows of 1 to 40
    rows = np.array([[-np.inf, 0.0, -np.inf], [np.nan, 1.0, 2.0], [1e4, -1e4, 1e4]], np.float32)
    out = np.empty_like(rows)
    cpp.softmax_forward(out, rows)
    assert list(out[0]) == [0, 1, 0] and np.isnan(out[1]).all() and list(out[2]) == [0.5, 0, 0.5]
    rng = np.random.default_rng(1)
    for C in range(1, 41):
        m = (rng.standard_normal((5, C)) * 30).astype(np.float32)
        out = np.empty_like(m)
        cpp.softmax_forward(out, m)
        e = np.exp(m.astype(np.float64) - m.max(1, keepdims=True))
        np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=2e-6, atol=1e-7, err_msg=f"C={C}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_nonfinite_matches_twin(dtype):
    import fastnn
    rng = np.random.default_rng(5)
    for shape in ((0,), (1,), (7,), (4095,), (4096,), (4097,), (3, 5000), (257, 65), (0, 3)):
        x = rng.standard_normal(shape).astype(dtype)
        n = x.size
        for pos in ([], [n - 1], [0], [n // 2, n - 1], [min(4096, n - 1), 3 % max(n, 1)]):
            for bad in (np.nan, np.inf, -np.inf):
                y = x.copy()
                if n:
                    y.flat[pos] = bad
                for v in (y, y[..., ::2] if y.ndim and y.shape[-1] > 1 else y):
                    want = numpy_ref.first_nonfinite(v)
                    for t in (1, 2):
                        fastnn.set_num_threads(t)
                        assert cpp.first_nonfinite(v) == want, (shape, pos, bad, t)
    assert cpp.first_nonfinite(np.arange(5)) == numpy_ref.first_nonfinite(np.arange(5)) == -1
    assert cpp.first_nonfinite([1.0, float("nan")]) == numpy_ref.first_nonfinite([1.0, float("nan")]) == 1
    with pytest.raises(TypeError, match="must hold numbers"):
        cpp.first_nonfinite(np.array(["a"]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.3, 0.1, 0.7])
def test_dropout_apply_is_bitwise_the_twin_and_the_layer_formula(dtype, p):
    # p and 1/(1 − p) not exact in binary: both backends must round them the same way, and the
    # same as the Dropout layer did before it called a kernel (mask = keep · T(1/(1 − p))).
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10001).astype(dtype)
    x[:6] = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-40]
    u = rng.random(10001, dtype=dtype)
    u[6:9] = [dtype(p), np.nextafter(dtype(p), dtype(0)), 0.0]  # at the threshold: kept, dropped, dropped
    T = np.dtype(dtype).type
    with np.errstate(invalid="ignore"):
        want = x * ((u >= T(p)).astype(dtype) * T(1.0 / (1.0 - p)))
    for ops in (cpp, numpy_ref):
        out = np.empty_like(x)
        ops.dropout_apply(out, x, u, p)
        np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))
        with pytest.raises(ValueError, match="p must be in \\[0, 1\\), got 1"):
            ops.dropout_apply(out, x, u, 1.0)
        with pytest.raises(ValueError, match="shape"):
            ops.dropout_apply(out, x, u[:-1], p)


@pytest.mark.parametrize("path", SIMD_PATHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool_2x2_gradient_bits_and_hand_made_argmax(path, dtype):
    # The 2×2, stride-2 pool writes its gradient row by row (and with AVX-512 in vectors); it
    # must keep the bits of the general scatter into zeros: -0 becomes +0, NaN and inf pass,
    # rows and columns outside every window are zero. An argmax pointing into the plane but
    # outside its window (only a hand-made one can) still lands where it points.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 37)).astype(dtype)  # odd H and W, 18 outputs per row
    out, am = np.empty((2, 3, 4, 18), dtype), np.empty((2, 3, 4, 18), np.int32)
    numpy_ref.maxpool2d_forward(out, am, x, 2)
    g = rng.standard_normal(out.shape).astype(dtype)
    g.flat[:4] = [-0.0, np.nan, np.inf, -np.inf]
    stray = am.copy()
    stray[1, 2, 3, 17] = 0  # the plane's first pixel, far from window (3, 17)
    previous = _core.simd_path()
    try:
        _core.set_simd_path(path)
        for a in (am, stray):
            got, want = np.full_like(x, 7.0), np.full_like(x, 7.0)
            cpp.maxpool2d_backward(got, g, a, 2)
            numpy_ref.maxpool2d_backward(want, g, a, 2)
            np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
        assert got[1, 2, 0, 0] == g[1, 2, 3, 17] + g[1, 2, 0, 0] * (am[1, 2, 0, 0] == 0)
    finally:
        _core.set_simd_path(previous)


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_sparse_gradient_kernels_keep_the_dense_bits(path):
    # Below a max pool most of a convolution's output gradient is zero; the weight gradient
    # then sums only its nonzero terms, and the input gradient is scattered from them (AVX-512
    # and AVX2, 3 × 3, input channels in 16s). A zero term changes no finite sum, so the sparse and the
    # dense kernels give the same bits (the scatter must keep each value's order of terms: the
    # output pixels in descending order within each output channel), on 1 and 2 threads, and
    # the twin's values; an infinite input makes the dense weight gradient run.
    _core.set_simd_path(path)
    rng = np.random.default_rng(5)
    shapes = [  # N, C, OC, H, W, groups, dilation, density, activation
        (8, 32, 64, 14, 14, 1, 1, 0.2, "none"), (19, 32, 64, 14, 14, 1, 1, 0.3, "none"),
        (3, 16, 16, 9, 11, 1, 1, 0.1, "none"), (5, 64, 32, 7, 7, 1, 1, 0.25, "none"),
        (4, 48, 32, 10, 6, 1, 1, 0.4, "none"), (4, 32, 64, 12, 12, 2, 1, 0.2, "none"),
        (4, 32, 32, 12, 12, 1, 2, 0.2, "none"), (9, 32, 64, 14, 14, 1, 1, 0.45, "relu"),
        (2, 32, 64, 14, 14, 1, 1, 0.0, "none"), (1, 16, 16, 1, 1, 1, 1, 1.0, "none"), (0, 32, 16, 5, 5, 1, 1, 0.2, "none"),
        (17, 64, 64, 7, 7, 1, 1, 0.1, "none"), (3, 16, 48, 13, 29, 1, 1, 0.3, "relu")]
    for N, C, OC, H, W, groups, dil, density, act in shapes:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = rng.standard_normal((OC, C // groups, 3, 3)).astype(np.float32)
        OH, OW = H, W  # padding = dilation
        dout = (rng.standard_normal((N, OC, OH, OW)) * (rng.random((N, OC, OH, OW)) < density)).astype(np.float32)
        y = rng.standard_normal(dout.shape).astype(np.float32)
        if N > 2:
            x[2, 0, 0, 0] = np.inf  # this chunk's sums would differ if it skipped its zero terms
        results = []
        winograd = _core._set_conv_winograd(False)  # (above 10% nonzero it makes the input gradient)
        try:
            for knob, threads in ((-1.0, 1), (1.0, 1), (1.0, 2), (-1.0, 2)):
                _core._set_conv_sparse_max_density(knob)
                _core.set_num_threads(threads)
                dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(OC, np.float32)
                _core.conv2d_backward(dx, dw, db, dout, x, w, 1, dil, dil, groups, False, act, y)
                results.append((dx, dw, db))
        finally:
            _core._set_conv_sparse_max_density(0.5)
            _core._set_conv_winograd(winograd)
            _core.set_num_threads(2)
        for other in results[1:]:
            for a, b in zip(results[0], other):
                assert np.array_equal(a, b, equal_nan=True), (N, C, OC, H, W, groups, dil, density, act)
        if N > 2:
            x[2, 0, 0, 0] = 0.0
            dx, dw, db = results[0]
            _core._set_conv_sparse_max_density(1.0)
            try:
                _core.conv2d_backward(dx, dw, db, dout, x, w, 1, dil, dil, groups, False, act, y)
            finally:
                _core._set_conv_sparse_max_density(0.5)
        want = [np.empty((N, C, H, W)), np.empty(w.shape), np.empty(OC)]
        numpy_ref.conv2d_backward(*want, dout.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, dil,
                                  dil, groups, False, act, y.astype(np.float64))
        for got, ref in zip((dx, dw, db), want):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3 * np.sqrt(max(N, 1) * OH * OW))


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_input_gradient_of_an_infinite_weight_is_the_dense_kernels(path):
    # A zero gradient times an infinite weight is a NaN term of the dense input gradient, which
    # the sparse scatter would skip: with a weight that is not finite the dense kernel runs.
    _core.set_simd_path(path)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((9, 32, 14, 14)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    w[5, 3, 1, 1] = np.inf
    dout = (rng.standard_normal((9, 64, 14, 14)) * (rng.random((9, 64, 14, 14)) < 0.2)).astype(np.float32)
    results = []
    winograd = _core._set_conv_winograd(False)
    try:
        for knob in (-1.0, 1.0):
            _core._set_conv_sparse_max_density(knob)
            dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(64, np.float32)
            _core.conv2d_backward(dx, dw, db, dout, x, w, 1, 1, 1, 1, False, "none", None)
            results.append(dx)
    finally:
        _core._set_conv_sparse_max_density(0.5)
        _core._set_conv_winograd(winograd)
    # every pixel of channel 3 meets the weight's tap: ±inf where the gradient there is not 0, NaN
    # where it is 0 (the terms the scatter would skip)
    dense = results[0][:, 3]
    assert not np.isfinite(dense).any() and np.isnan(dense).sum() > dense.size // 2
    assert np.array_equal(results[0], results[1], equal_nan=True)


PLANE_SHAPES = [  # N, C, OC, groups, H, W, (KH, KW), padding, dilation, activation, bias
    (9, 1, 32, 1, 28, 28, (3, 3), 1, 1, "relu", True), (3, 1, 32, 1, 28, 28, (3, 3), 1, 1, "none", True),
    (1, 1, 32, 1, 28, 28, (3, 3), 1, 1, "relu", True), (2, 1, 7, 1, 9, 13, (3, 3), 1, 1, "none", False),
    (2, 1, 5, 1, 1, 1, (1, 1), (1, 1), 1, "none", True), (2, 1, 13, 1, 5, 40, (5, 5), 2, 1, "relu", True),
    (2, 8, 8, 8, 14, 14, (3, 3), 1, 1, "relu", True), (1, 16, 32, 16, 7, 7, (3, 3), 1, 1, "none", True),
    (2, 4, 12, 4, 10, 33, (3, 3), 2, 2, "relu", False), (0, 1, 32, 1, 28, 28, (3, 3), 1, 1, "none", True),
    (3, 3, 6, 3, 8, 8, (1, 3), (0, 1), 1, "relu", True), (1, 1, 16, 1, 3, 3, (3, 3), 0, 1, "none", True),
    (4, 2, 2, 2, 5, 70, (3, 3), 1, 1, "none", True), (2, 1, 4, 1, 6, 8, (3, 3), 1, 1, "none", True),
    (2, 1, 25, 1, 12, 17, (2, 2), (0, 1), 1, "relu", True)]


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_plane_kernel_gives_the_direct_kernels_bits(path):
    # A convolution with one input channel per group (an image net's first layer, a depthwise
    # one) takes the plane kernel on the vector paths: vectors over output pixels, each value
    # the same FMA chain over the taps as the direct and tile kernels it replaces, so the same
    # bits, on 1 and 2 threads (batch 1 splits an image's rows between them), for rows of any
    # width (a last vector overlapping the one before it, or a partial one below 8 pixels), and
    # near the twin. The fused max pool after it (a compiled plan's) is checked in test_plan.py.
    _core.set_simd_path(path)
    rng = np.random.default_rng(9)
    for N, C, OC, G, H, W, (KH, KW), pad, dil, act, bias in PLANE_SHAPES:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = rng.standard_normal((OC, C // G, KH, KW)).astype(np.float32)
        b = rng.standard_normal(OC).astype(np.float32) if bias else None
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        out_shape = (N, OC, H + 2 * ph - dil * (KH - 1), W + 2 * pw - dil * (KW - 1))
        outs = []
        try:
            for threads, plane in ((2, True), (1, True), (2, False)):
                _core.set_num_threads(threads)
                previous = _core._set_conv_plane(plane)
                out = np.full(out_shape, np.nan, np.float32)
                _core.conv2d_forward(out, x, w, b, 1, pad, dil, G, act)
                _core._set_conv_plane(previous)
                outs.append(out)
        finally:
            _core.set_num_threads(2)
            _core._set_conv_plane(True)
        for other in outs[1:]:
            np.testing.assert_array_equal(outs[0].view(np.uint32), other.view(np.uint32))
        ref = np.empty(out_shape, np.float32)
        numpy_ref.conv2d_forward(ref, x, w, b, 1, pad, dil, G, act)
        np.testing.assert_allclose(outs[0], ref, rtol=1e-5, atol=1e-5 * KH * KW)


WINOGRAD_SHAPES = [  # N, C, OC, H, W, padding (top, bottom, left, right), activation, bias
    (8, 32, 64, 14, 14, (1, 1, 1, 1), "relu", True), (3, 16, 16, 7, 7, (1, 1, 1, 1), "none", True),
    (2, 16, 32, 13, 11, (0, 0, 0, 0), "none", False), (5, 48, 16, 5, 9, (2, 2, 2, 2), "relu", True),
    (3, 16, 48, 9, 30, (1, 1, 1, 1), "none", True), (2, 32, 32, 6, 7, (0, 1, 1, 0), "relu", True),
    (1, 16, 16, 1, 1, (1, 1, 1, 1), "none", True), (0, 16, 32, 5, 5, (1, 1, 1, 1), "none", True)]


def _conv_winograd(x, w, b, pad, act, winograd):
    previous = _core._set_conv_winograd(winograd)
    try:
        out = np.full((x.shape[0], w.shape[0], x.shape[2] + pad[0] + pad[1] - 2, x.shape[3] + pad[2] + pad[3] - 2),
                      np.nan, np.float32)
        _core.conv2d_forward(out, x, w, b, 1, pad, 1, 1, act)
        return out
    finally:
        _core._set_conv_winograd(previous)


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_winograd_is_right_and_its_bits_depend_on_no_thread_count_or_batch(path):
    # 3 × 3, stride-1 convolutions with channels in 16s take Winograd F(2×2, 3×3) on the AVX-512
    # and AVX2 paths: its own rounding (not the direct kernel's bits), as close to float64 as the direct
    # kernel, and one fixed order of operations per value, so the same bits on 1 and 2 threads,
    # and for a sample alone (batch 1: output channels split between the threads) or in a batch.
    _core.set_simd_path(path)
    rng = np.random.default_rng(8)
    for N, C, OC, H, W, pad, act, bias in WINOGRAD_SHAPES:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((OC, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
        b = rng.standard_normal(OC).astype(np.float32) if bias else None
        outs = []
        try:
            for threads in (2, 1):
                _core.set_num_threads(threads)
                outs.append(_conv_winograd(x, w, b, pad, act, True))
                outs.append(np.concatenate([_conv_winograd(x[i:i + 1], w, b, pad, act, True) for i in range(N)])
                            if N else outs[-1])
        finally:
            _core.set_num_threads(2)
        for other in outs[1:]:
            assert np.array_equal(outs[0], other), (N, C, OC, H, W, pad, act)
        direct = _conv_winograd(x, w, b, pad, act, False)
        want = np.empty(direct.shape)
        numpy_ref.conv2d_forward(want, x.astype(np.float64), w.astype(np.float64),
                                 None if b is None else b.astype(np.float64), 1, pad, 1, 1, act)
        err, direct_err = np.abs(outs[0] - want).max(initial=0), np.abs(direct - want).max(initial=0)
        assert err <= 2e-6 * np.sqrt(9 * C) and direct_err <= 2e-6 * np.sqrt(9 * C), (N, C, OC, H, W, err, direct_err)
        if path == "portable" or not N:  # (the direct kernel runs either way)
            assert np.array_equal(outs[0], direct), (N, C, OC, H, W)
        elif H * W > 1:
            assert not np.array_equal(outs[0], direct), (N, C, OC, H, W)


PHASE_SHAPES = [  # N, C, OC, groups, H, W, (KH, KW), stride, padding, dilation, activation
    (4, 16, 32, 1, 28, 28, (3, 3), 2, 1, 1, "relu"), (3, 32, 64, 1, 14, 14, (3, 3), 2, 1, 1, "none"),
    (2, 64, 64, 1, 13, 13, (3, 3), 2, 1, 1, "none"), (2, 5, 7, 1, 17, 15, (3, 3), (2, 3), (0, 2), (2, 1), "relu"),
    (2, 4, 4, 4, 10, 7, (3, 3), 2, 1, 1, "none"), (1, 16, 16, 1, 9, 9, (5, 5), 3, 2, 1, "relu"),
    (2, 3, 4, 1, 11, 11, (3, 3), 4, 1, 1, "none"), (2, 16, 16, 1, 1, 1, (3, 3), 2, 1, 1, "none"),
    (0, 16, 32, 1, 8, 8, (3, 3), 2, 1, 1, "none"), (3, 16, 48, 1, 12, 9, (3, 3), 2, 2, 2, "relu")]


def _conv_phase(x, w, b, stride, pad, dil, groups, act, dout, phase):
    previous = _core._set_conv_phase(phase)
    try:
        N, OC = x.shape[0], w.shape[0]
        (KH, KW), (SH, SW) = w.shape[2:], (stride, stride) if isinstance(stride, int) else stride
        (PH, PW), (DH, DW) = (pad, pad) if isinstance(pad, int) else pad, (dil, dil) if isinstance(dil, int) else dil
        OH, OW = (x.shape[2] + 2 * PH - DH * (KH - 1) - 1) // SH + 1, (x.shape[3] + 2 * PW - DW * (KW - 1) - 1) // SW + 1
        out = np.full((N, OC, OH, OW), np.nan, np.float32)
        _core.conv2d_forward(out, x, w, b, stride, pad, dil, groups, act)
        dx, dw, db = np.full_like(x, np.nan), np.full_like(w, np.nan), np.full_like(b, np.nan)
        _core.conv2d_backward(dx, dw, db, dout[:, :, :OH, :OW], x, w, stride, pad, dil, groups, False, act, out)
        return out, dx, dw, db
    finally:
        _core._set_conv_phase(previous)


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_strided_by_phase_is_right_and_thread_count_independent(path):
    # Strided convolutions on the vector paths split the padded input by stride phase (conv.cpp,
    # Phase) so that the stride-1 kernels read their taps: forward, the input gradient phase by
    # phase (of every kept phase, with phases no tap reads giving zeros) and the weight
    # gradient. Their bits must not depend on the thread count, nor (output and input gradient)
    # on a sample being alone or in a batch; every value near the float64 twin; and the
    # GEMM path (the knob off) near them too.
    _core.set_simd_path(path)
    rng = np.random.default_rng(12)
    for N, C, OC, G, H, W, k, stride, pad, dil, act in PHASE_SHAPES:
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((OC, C // G, *k)) / np.sqrt(k[0] * k[1] * C // G)).astype(np.float32)
        b = rng.standard_normal(OC).astype(np.float32)
        dout = rng.standard_normal((N, OC, H, W)).astype(np.float32)
        args = (stride, pad, dil, G, act)
        try:
            _core.set_num_threads(2)
            got = _conv_phase(x, w, b, *args, dout, True)
            _core.set_num_threads(1)
            one = _conv_phase(x, w, b, *args, dout, True)
            alone = [_conv_phase(x[i:i + 1], w, b, *args, dout[i:i + 1], True) for i in range(N)]
        finally:
            _core.set_num_threads(2)
        for a, c in zip(got, one):
            assert np.array_equal(a, c, equal_nan=True), (N, C, OC, H, W, k, stride)
        for i, part in enumerate(alone):  # (a batch's weight gradient sums the samples: not compared)
            assert np.array_equal(got[0][i], part[0][0]) and np.array_equal(got[1][i], part[1][0]), (N, C, OC, H, W)
        gemm = _conv_phase(x, w, b, *args, dout, False)
        want = [np.empty(a.shape) for a in got]
        f64 = [a.astype(np.float64) for a in (x, w, b)]
        numpy_ref.conv2d_forward(want[0], *f64, *args)
        numpy_ref.conv2d_backward(*want[1:], dout[:, :, :got[0].shape[2], :got[0].shape[3]].astype(np.float64),
                                  *f64[:2], *args[:4], accumulate=False, activation=act, y=want[0])
        for a, g, ref in zip(got, gemm, want):
            scale = 1 + np.abs(ref).max(initial=0)
            assert np.abs(a - ref).max(initial=0) <= 1e-5 * scale, (N, C, OC, H, W, k, stride)
            assert np.abs(g - ref).max(initial=0) <= 1e-5 * scale, (N, C, OC, H, W, k, stride)


def _conv_dx_winograd(dout, x, w, pad, winograd):
    previous = _core._set_conv_winograd(winograd)
    try:
        dx, dw, db = np.full_like(x, np.nan), np.empty_like(w), np.empty(w.shape[0], np.float32)
        _core.conv2d_backward(dx, dw, db, dout, x, w, 1, pad, 1, 1, False, "none", None)
        return dx, dw, db
    finally:
        _core._set_conv_winograd(previous)


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_gradients_by_winograd_are_right_and_thread_count_independent(path):
    # The input gradient of a 3 × 3, stride-1 convolution is the convolution of the output
    # gradient with the kernels turned by 180° (padding 2 − padding): Winograd makes it where
    # more than 10% of a chunk's output gradient is nonzero (a BatchNorm's input gradient, a
    # max pool's: ~20%); below that the sparse or direct kernels run, whichever the CPU favours, with the same
    # bits, so no bit depends on the CPU. The weight gradient takes Winograd where its sparse
    # kernel does not run (more than half nonzero) and the direct one would run transposed
    # (output channels over 16): the output gradient's 2 × 2 tiles as the filters of the
    # input's 4 × 4 patches. Both: the same bits on 1 and 2 threads, close to float64 (the
    # weight gradient within a few times the direct kernel's error: its transformed terms are
    # sums of up to 16 values); the bias gradient keeps its bits.
    _core.set_simd_path(path)
    rng = np.random.default_rng(10)
    shapes = [(19, 32, 64, 14, 14, (1, 1, 1, 1), 1.0), (3, 16, 16, 7, 7, (1, 1, 1, 1), 0.5),
              (2, 16, 32, 13, 11, (0, 0, 0, 0), 1.0), (5, 48, 16, 5, 9, (2, 2, 2, 2), 0.8),
              (2, 32, 32, 6, 7, (0, 1, 1, 0), 1.0), (9, 32, 64, 14, 14, (1, 1, 1, 1), 0.2),
              (9, 32, 64, 14, 14, (1, 1, 1, 1), 0.05),
              (4, 16, 48, 9, 12, (1, 1, 1, 1), 0.4), (1, 16, 32, 1, 1, (1, 1, 1, 1), 1.0),
              (0, 16, 16, 4, 4, (1, 1, 1, 1), 1.0)]
    for N, C, OC, H, W, pad, density in shapes:
        OH, OW = H + pad[0] + pad[1] - 2, W + pad[2] + pad[3] - 2
        x = rng.standard_normal((N, C, H, W)).astype(np.float32)
        w = (rng.standard_normal((OC, C, 3, 3)) / np.sqrt(9 * OC)).astype(np.float32)
        dout = (rng.standard_normal((N, OC, OH, OW)) * (rng.random((N, OC, OH, OW)) < density)).astype(np.float32)
        outs = []
        try:
            for threads in (2, 1):
                _core.set_num_threads(threads)
                outs.append(_conv_dx_winograd(dout, x, w, pad, True))
        finally:
            _core.set_num_threads(2)
        direct = _conv_dx_winograd(dout, x, w, pad, False)
        for a, b in zip(outs[0], outs[1]):
            assert np.array_equal(a, b), (N, C, OC, H, W, pad, density)
        assert np.array_equal(outs[0][2], direct[2])
        want = [np.empty(x.shape), np.empty(w.shape), np.empty(OC)]
        numpy_ref.conv2d_backward(*want, dout.astype(np.float64), x.astype(np.float64), w.astype(np.float64), 1, pad,
                                  1, 1, False, "none", None)
        for got, ref, direct_got in zip(outs[0][:2], want, direct):
            err, direct_err = np.abs(got - ref).max(initial=0), np.abs(direct_got - ref).max(initial=0)
            bound = 2e-6 * np.abs(ref).max(initial=1) * np.sqrt(9 * max(OC, N * OH * OW))
            assert err <= bound and direct_err <= bound and err <= 5 * direct_err + 1e-6, (N, C, OC, H, W, err, direct_err)
        nonzero = np.count_nonzero(dout) / max(dout.size, 1)
        dx_winograd = path != "portable" and N > 0 and nonzero > 0.1
        dw_winograd = path != "portable" and N > 0 and nonzero > 0.5 and OC > 16
        for got, other, ran in ((outs[0][0], direct[0], dx_winograd), (outs[0][1], direct[1], dw_winograd)):
            if not ran:  # the direct or sparse kernels either way
                assert np.array_equal(got, other), (N, C, OC, H, W, pad, density)
            elif OH * OW > 1:  # (one pixel: a single product per weight, exact either way)
                assert not np.array_equal(got, other), (N, C, OC, H, W, pad, density)


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_winograd_keeps_a_non_finite_input_in_the_outputs_that_read_it(path):
    # The transforms add and subtract the values of a tile's 4 × 4 patch, but each input value
    # reaches only the transformed values of the outputs whose 3 × 3 window covers it: an
    # infinite input makes exactly the outputs that read it non-finite (NaN where two of its
    # terms cancel, where the direct sum gives ±inf), and leaves every other output finite.
    _core.set_simd_path(path)
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    for at in ((0, 3, 0, 0), (0, 5, 3, 4), (1, 0, 7, 7), (1, 15, 2, 5)):
        xi = x.copy()
        xi[at] = np.inf
        got, direct = (_conv_winograd(xi, w, None, (1, 1, 1, 1), "none", on) for on in (True, False))
        assert np.array_equal(np.isfinite(got), np.isfinite(direct)), at
        reads = np.zeros(got.shape, bool)
        reads[at[0], :, max(at[2] - 1, 0):at[2] + 2, max(at[3] - 1, 0):at[3] + 2] = True
        assert np.array_equal(~np.isfinite(got), reads), at


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_conv_gradients_of_non_finite_values_are_non_finite_where_the_twins_are(path):
    # The stride-1 kernels sum over "wide" rows: the columns past OW read the next image row's
    # first values, times a zero gradient. An infinite input there made 0 · inf = NaN terms
    # in weight gradients that read it only through those columns (finite in the twin and in
    # PyTorch); Winograd's (16 → 32 channels here) did the same through tiles past the output's
    # edge. A chunk of samples with a non-finite input takes im2col and the GEMM over the
    # output's own columns instead.
    _core.set_simd_path(path)
    rng = np.random.default_rng(13)
    for C, OC, k, stride, pad in ((1, 4, 3, 1, 0), (2, 8, 3, 1, 0), (16, 16, 3, 1, 0), (16, 32, 3, 1, 0),
                                  (1, 4, 3, 2, 0), (3, 5, 2, 1, 0), (16, 16, 3, 2, 1)):
        x = rng.standard_normal((3, C, 9, 9)).astype(np.float32)
        x[1, :, 3, 0] = np.inf
        x[2, 0, 5, 8] = -np.inf
        w = rng.standard_normal((OC, C, k, k)).astype(np.float32)
        ph, pw = (pad, pad) if isinstance(pad, int) else pad
        oh, ow = (9 + 2 * ph - k) // stride + 1, (9 + 2 * pw - k) // stride + 1
        dout = rng.standard_normal((3, OC, oh, ow)).astype(np.float32)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty(OC, np.float32)
        _core.conv2d_backward(dx, dw, db, dout, x, w, stride, pad, 1, 1, False, "none", None)
        want = [np.empty(a.shape) for a in (dx, dw, db)]
        numpy_ref.conv2d_backward(*want, dout.astype(np.float64), x.astype(np.float64), w.astype(np.float64), stride,
                                  pad, 1, 1, accumulate=False)
        assert np.array_equal(np.isfinite(dw), np.isfinite(want[1])), (C, OC, k, stride, pad)
        finite = np.isfinite(want[1])
        assert 0 < finite.sum() < finite.size
        np.testing.assert_allclose(dw[finite], want[1][finite], rtol=1e-4, atol=1e-4)
        # and the input gradient of an infinite weight (the same zeros, read by the input
        # gradient's kernels: the call runs im2col and the GEMM then)
        x, w[1, 0, 0, 0] = np.nan_to_num(x), np.inf
        _core.conv2d_backward(dx, dw, db, dout, x, w, stride, pad, 1, 1, False, "none", None)
        numpy_ref.conv2d_backward(*want, dout.astype(np.float64), x.astype(np.float64), w.astype(np.float64), stride,
                                  pad, 1, 1, accumulate=False)
        finite = np.isfinite(want[0])
        assert np.array_equal(np.isfinite(dx), finite) and 0 < finite.sum() < finite.size, (C, OC, k, stride, pad)
        np.testing.assert_allclose(dx[finite], want[0][finite], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("L", [1, 5, 32, 49, 196, 784])
def test_batchnorm_stats_of_offset_data_match_float64(L):
    # The statistics add every row's moments about its own rounded mean (Chan's update): data
    # far from zero (1e4 + N(0, 1)) must not lose its variance to cancellation, for rows
    # shorter, as long as and longer than the 32 lanes a row is summed in.
    rng = np.random.default_rng(L)
    x = (1e4 + rng.standard_normal((7, 3, L))).astype(np.float32)
    x[:, 2] = np.float32(1e4 + 0.5)  # a constant channel: variance 0
    mean, var = np.zeros(3, np.float32), np.zeros(3, np.float32)
    _core.batchnorm_stats(mean, var, x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2)), rtol=1e-7)
    np.testing.assert_allclose(var[:2], x64.var(axis=(0, 2))[:2], rtol=1e-5)
    assert var[2] == 0
