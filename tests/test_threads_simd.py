"""Results do not depend on the thread count (bitwise) and every SIMD path can be forced."""
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastnn
from fastnn import _core
from fastnn.backends import cpp
from harness import CASES, GEMM_KERNELS, SIMD_PATHS, build, call, gemm_packing

# Shapes big enough that every kernel really splits its work across threads.
BIG = {"gemm": (257, 300, 513), "linear_forward": (300, 513, 257), "linear_backward": (300, 513, 257),
       "softmax_forward": (5000, 37), "softmax_backward": (5000, 37),
       "cross_entropy_forward": (20000, 10),
       # images: enough samples that each thread takes whole ones (and chunks of the weight
       # gradient), and channels that every geometry's groups divide
       "conv2d_forward": (17, 12, 14, 13, 24), "conv2d_backward": (17, 12, 14, 13, 24),
       **{k: (6, 8, 28, 27) for k in ("maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward",
                                       "avgpool2d_backward")},
       **{k: (64, 8, 10, 10) for k in ("batchnorm_stats", "batchnorm_forward", "batchnorm_backward",
                                       "batchnorm_update")}}
FLAT = (3, 100_003)


def gemm_both_thread_counts(a, b, ta, tb, c0=None, alpha=1.0, beta=0.0, packing=None, atol=None):
    """C = alpha·op(a)·op(b) + beta·c0 on 2 threads, then on 1 (2 first: nothing left in the
    packing buffers by a 1-thread call); asserts the two are bitwise equal and match float64."""
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    c0 = np.zeros((m, n), np.float32) if c0 is None else c0
    outs = []
    with gemm_packing(packing) if packing else contextlib.nullcontext():
        for t in (2, 1):
            fastnn.set_num_threads(t)
            c = c0.copy()
            cpp.gemm(c, a, b, ta, tb, alpha=alpha, beta=beta)
            outs.append(c)
    assert np.array_equal(outs[0], outs[1]), (m, n, k, ta, tb)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    want = alpha * ((a64.T if ta else a64) @ (b64.T if tb else b64)) + beta * c0
    np.testing.assert_allclose(outs[0], want, rtol=1e-4, atol=2e-3 * np.sqrt(k) if atol is None else atol)


@pytest.mark.parametrize("simd", SIMD_PATHS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_and_two_threads_are_bitwise_equal(case, simd):
    shape = BIG.get(case.kernel, (300_007,) if case.kernel.endswith("_step") else FLAT)
    _core.set_simd_path(simd)
    args, kwargs = build(case, shape, np.float32)
    fastnn.set_num_threads(1)
    r1, o1 = call(cpp, case, args, kwargs)
    fastnn.set_num_threads(2)
    r2, o2 = call(cpp, case, args, kwargs)
    assert r1 == r2
    for a, b in zip(o1, o2):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("simd", [p for p in SIMD_PATHS if p != "portable"])
@pytest.mark.parametrize("case", [c for c in CASES if c.kernel in GEMM_KERNELS],
                         ids=[c.id for c in CASES if c.kernel in GEMM_KERNELS])
def test_unpacked_gemm_one_and_two_threads_are_bitwise_equal(case, simd):
    # BIG shapes take the packed loops by default; force the unpacked ones, which split tiles.
    _core.set_simd_path(simd)
    args, kwargs = build(case, BIG[case.kernel], np.float32)
    with gemm_packing("none"):
        fastnn.set_num_threads(1)
        r1, o1 = call(cpp, case, args, kwargs)
        fastnn.set_num_threads(2)
        r2, o2 = call(cpp, case, args, kwargs)
    for a, b in zip(o1, o2):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize("packing", ["all", "none"])
@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_tall_gemm_split_by_rows(simd, packing):
    # Tall outputs are split by rows, each thread packing all of B for itself (from 2 A blocks
    # of rows in the packed loops, from 256 rows for a transposed B in the unpacked ones). Row
    # ranges that end mid-block, an edge sliver and a narrow edge panel, every transpose.
    _core.set_simd_path(simd)
    rng = np.random.default_rng(5)
    for m, n, k in ((1001, 130, 301), (577, 47, 600), (256, 10, 2100)):
        for ta in (False, True):
            for tb in (False, True):
                a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
                b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
                c0 = rng.standard_normal((m, n)).astype(np.float32)
                gemm_both_thread_counts(a, b, ta, tb, c0, alpha=0.5, beta=2.0, packing=packing)


@pytest.mark.parametrize("simd", [p for p in SIMD_PATHS if p != "portable"])
def test_short_gemm_split_by_columns(simd):
    # A short C whose B is read in place splits by column panels when whole slivers of rows
    # would split unevenly (32 rows on 2 threads: 12 and 20); the thread owning the last,
    # narrow panel packs it. Bitwise the same on 1 and 2 threads, and right.
    _core.set_simd_path(simd)
    rng = np.random.default_rng(6)
    for m, n, k in ((32, 784, 128), (32, 130, 784), (20, 100, 600), (13, 77, 999)):
        for ta in (False, True):
            a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            c0 = rng.standard_normal((m, n)).astype(np.float32)
            gemm_both_thread_counts(a, b, ta, False, c0, alpha=0.5, beta=2.0)


@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_large_narrow_gemm(simd):
    # Under the default limits a C of <= 256 columns skips packing at any size (X·Wᵀ of a
    # Linear layer on 1000 rows): tall row ranges, B packed whole per thread, edge slivers
    # and panels. Bitwise the same on 1 and 2 threads, and right.
    _core.set_simd_path(simd)
    rng = np.random.default_rng(7)
    for m, n, k, tb in ((1003, 130, 900, True), (1003, 130, 900, False), (600, 256, 700, True),
                        (517, 100, 20000, True)):  # the last packs: B too large to copy per thread
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        gemm_both_thread_counts(a, b, False, tb)


@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_few_row_gemm_one_and_two_threads_are_bitwise_equal(simd):
    # X·Wᵀ with <= 4 rows (batch-1 inference) splits its outputs across threads in multiples
    # of 8, so every output goes through the same dot kernel either way.
    _core.set_simd_path(simd)
    rng = np.random.default_rng(3)
    for m, n, k in ((1, 517, 301), (3, 130, 784), (4, 9, 20000)):
        a = rng.standard_normal((m, k)).astype(np.float32)
        w = rng.standard_normal((n, k)).astype(np.float32)
        gemm_both_thread_counts(a, w, False, True, atol=1e-3)


@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_convolution_of_fewer_samples_than_threads_is_thread_count_independent(simd):
    # With fewer samples than threads (batch-1 inference), the direct kernel gives each thread
    # whole blocks of output channels (and, fused with a max pool, pools them there): a
    # sample's bits are those of one thread and of the same sample in a larger batch.
    _core.set_simd_path(simd)
    rng = np.random.default_rng(4)
    for c, oc, hw, groups in ((1, 32, 28, 1), (32, 64, 14, 1), (64, 64, 7, 1), (16, 48, 9, 1), (32, 64, 10, 2),
                              (3, 16, 5, 1), (8, 128, 3, 1)):
        x = rng.standard_normal((3, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((oc, c // groups, 3, 3)).astype(np.float32)
        b = rng.standard_normal(oc).astype(np.float32)
        outs = []
        for threads, n in ((2, 1), (1, 1), (2, 3), (1, 3)):
            fastnn.set_num_threads(threads)
            y = np.empty((n, oc, hw, hw), np.float32)
            _core.conv2d_forward(y, x[:n], w, b, 1, 1, 1, groups, "relu")
            outs.append(y)
        for y in outs[1:]:
            assert np.array_equal(outs[0][0], y[0]), (c, oc, hw, groups)
        assert np.array_equal(outs[2], outs[3])
        want = numpy_conv_relu(x, w, b, groups)
        np.testing.assert_allclose(outs[2], want, rtol=1e-4, atol=1e-4 * np.sqrt(9 * c // groups))


def numpy_conv_relu(x, w, b, groups):
    """relu(conv(x, w, padding 1) + b) by the NumPy twin."""
    from fastnn.backends import numpy_ref
    y = np.empty((len(x), len(w), *x.shape[2:]), np.float32)
    numpy_ref.conv2d_forward(y, x, w, b, 1, 1, 1, groups, "relu")
    return y


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="n must be >= 1"):
        fastnn.set_num_threads(0)
    with pytest.raises(TypeError, match="expects an int"):
        fastnn.set_num_threads(2.5)
    fastnn.set_num_threads(3)
    assert fastnn.get_num_threads() == 3


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_fma_probe_gives_a_core_s_limit_on_every_path(path):
    # what `fastnn bench` and bench/cnn_profile.py divide by: chains optimised away would give an
    # absurd rate (no core does 10 TFLOP/s), a broken timer zero (the sanitizer build, whose
    # chains live in memory, gives 5-18 GFLOP/s here; an optimised one 50-120)
    _core.set_simd_path(path)
    rate = _core.fma_peak_gflops(0.01)
    assert 0.1 < rate < 10_000, (path, rate)
    for bad in (0, -1, float("nan"), 11):
        with pytest.raises(ValueError, match="seconds must be in"):
            _core.fma_peak_gflops(bad)


def _run(env_extra, code, env=None):
    # Run from a neutral directory: from the repository root, `import fastnn` would find the
    # source tree (without the compiled _core) instead of the installed package.
    env = {**(os.environ if env is None else env), **env_extra}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tempfile.gettempdir())


@pytest.mark.parametrize("path", SIMD_PATHS)
def test_env_var_forces_simd_path(path):
    r = _run({"FASTNN_SIMD": path}, "import fastnn; print(fastnn.build_info()['simd'])")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == path


def test_thread_count_from_environment():
    code = "import fastnn; print(fastnn.get_num_threads())"
    assert _run({"FASTNN_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}, code).stdout.strip() == "3"
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_NUM_THREADS"}
    assert _run({"OMP_NUM_THREADS": "5"}, code, env).stdout.strip() == "5"
    # a bad value warns and falls back: importing fastnn never fails on it
    for var, value in (("FASTNN_NUM_THREADS", "many"), ("OMP_NUM_THREADS", "abc"), ("FASTNN_NUM_THREADS", "0")):
        env = {k: v for k, v in os.environ.items() if k not in ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS")}
        bad = _run({var: value}, code, env)
        assert bad.returncode == 0, bad.stderr
        assert f"{var}={value!r} is not a whole number of threads >= 1; ignoring it" in bad.stderr
        assert bad.stdout.strip() == str(len(os.sched_getaffinity(0)))


def test_an_unknown_simd_path_in_the_environment_warns():
    r = _run({"FASTNN_SIMD": "bogus"}, "import fastnn; print(fastnn.build_info()['simd'])")
    assert r.returncode == 0, r.stderr
    assert "FASTNN_SIMD='bogus' is not a SIMD path" in r.stderr and r.stdout.strip() == SIMD_PATHS[-1]


def test_backend_selection():
    assert fastnn.get_backend() in ("cpp", "numpy")
    with fastnn.use_backend("numpy"):
        assert fastnn.get_backend() == "numpy"
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        fastnn.set_backend("gpu")
    r = _run({"FASTNN_BACKEND": "numpy"}, "import fastnn; print(fastnn.get_backend())")
    assert r.stdout.strip() == "numpy"


def test_build_info_reports_what_runs():
    info = fastnn.build_info()
    for key in ("version", "compiler", "openmp", "simd", "simd_available", "num_threads", "backend"):
        assert key in info
    assert info["version"] == fastnn.__version__
    assert info["simd"] in info["simd_available"]


def test_manual_seed_reproducible():
    a = fastnn.manual_seed(7).random(3)
    b = fastnn.manual_seed(7).random(3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        fastnn.manual_seed(-1)


FORK_CHILD = """
import multiprocessing, os, sys, numpy as np, fastnn
fastnn.set_num_threads(2)
x = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
out = np.empty_like(x)
fastnn._core.gemm(out, x, x)                        # the parent's OpenMP pool is running now
fastnn._core.relu_forward(np.empty(1 << 20, np.float32), np.ones(1 << 20, np.float32))

def work(i):                                        # a forked child: kernels, a model's fit
    c = np.empty_like(x)
    fastnn._core.gemm(c, x, x)
    m = fastnn.Sequential(fastnn.Linear(8, 16), fastnn.ReLU(), fastnn.Linear(16, 2))
    m.fit(np.ones((64, 8), np.float32), np.zeros(64, np.int64), epochs=2, verbose=0)
    return float(np.abs(c - out).max()), fastnn.get_num_threads()

with multiprocessing.get_context("fork").Pool(2) as pool:
    results = pool.map(work, range(4))
print(results)
assert all(d == 0.0 and t == 1 for d, t in results)   # the same bits, on one thread
"""


def test_a_forked_child_runs_kernels_instead_of_hanging(tmp_path):
    r = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr


# ---- the ThreadTuner (csrc/core/tuner.h): training steps drop to one thread when that is faster


# Made-up step times as measured on 2 cores (bench/under_load.py). Idle: an MLP step takes 120 µs
# on both threads, 170 µs on one; a CNN step 25 ms and 50 ms. Beside one busy process: 170 µs
# on one thread, and on both 170 µs except that one step in five waits out a 10 ms slice.
IDLE = (120e-6, 170e-6, 5000, 0, 0.0)
BUSY = (170e-6, 170e-6, 5000, 5, 10e-3)


def test_tuner_moves_to_one_thread_beside_a_busy_process():
    [(on_one, spent)] = _core._tuner_simulate([BUSY])
    assert on_one >= 0.99 * 5000
    assert spent <= 1.06 * 5000 * 170e-6  # probing costs at most 6% over one thread


def test_tuner_keeps_every_thread_on_an_idle_machine():
    for phase in (IDLE, (25e-3, 50e-3, 100, 0, 0.0)):
        [(on_one, spent)] = _core._tuner_simulate([phase])
        t_all, _, steps, _, _ = phase
        assert spent <= 1.025 * steps * t_all, (phase, spent / (steps * t_all))


def test_tuner_follows_the_load_as_it_comes_and_goes():
    # phases of 2.4-3.4 s; a new load is seen within a window (its steps slow down at once),
    # a load gone at the next probe (at most 64 windows, ~0.64 s, later)
    long_idle, long_busy = IDLE[:2] + (20000,) + IDLE[3:], BUSY[:2] + (20000,) + BUSY[3:]
    phases = [long_idle, long_busy, long_idle, long_busy]
    results = _core._tuner_simulate(phases)
    for (t_all, t_one, steps, every, stall), (on_one, spent) in zip(phases, results):
        best = steps * (t_one if every else t_all)
        assert spent <= 1.1 * best, (every, spent / best)  # the first probes of a phase included
    assert [on_one > 10000 for on_one, _ in results] == [False, True, False, True]


@pytest.mark.parametrize("kind", ["mlp-dropout", "cnn-batchnorm"])
def test_switching_threads_between_steps_changes_no_number(kind):
    # The tuner may switch at any step; here every other step runs on one thread.
    rng = np.random.default_rng(0)
    if kind == "mlp-dropout":
        X, y = rng.standard_normal((300, 20)).astype(np.float32), rng.integers(0, 4, 300)

        def make():
            return fastnn.Sequential(fastnn.Linear(20, 64), fastnn.ReLU(), fastnn.Dropout(0.2), fastnn.Linear(64, 4))
    else:
        X, y = rng.standard_normal((96, 2, 12, 12)).astype(np.float32), rng.integers(0, 4, 96)

        def make():
            return fastnn.Sequential(fastnn.Conv2d(2, 8, 3, padding=1), fastnn.BatchNorm2d(8), fastnn.ReLU(),
                                     fastnn.MaxPool2d(2), fastnn.Flatten(), fastnn.Linear(288, 4))
    weights = []
    old = fastnn.get_num_threads()
    try:
        for threads, alternate in ((1, False), (2, False), (2, True)):
            fastnn.set_num_threads(threads)
            _core._thread_tuning_alternate(alternate)
            fastnn.manual_seed(3)
            model = make()
            model.fit(X, y, optimizer=fastnn.Adam(model.parameters(), lr=1e-2), epochs=2, batch_size=16, verbose=0)
            weights.append(np.concatenate([v.ravel() for v in model.state_dict().values()]))
    finally:
        _core._thread_tuning_alternate(False)
        fastnn.set_num_threads(old)
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_array_equal(weights[0], weights[2])


# ---- The vector paths give one set of bits. The AVX2 kernels sum every value in the order
# the AVX-512 ones do (conv_avx2.cpp, winograd_avx2.cpp, pool_avx2.cpp; the GEMM's FMA chains
# over k in the same blocks, its dot products for a handful of rows in 16 lanes), so a CNN
# trains to the same weights on either: the digests below were taken on both paths (AMD EPYC
# with AVX-512, 2026-12-02) and hold on every vector path this CPU has. The "mixed" net's
# strided convolutions (a 3 × 3 of stride 2 over 16 channels, a depthwise one) run on the
# input split by stride phase (conv.cpp, Phase). (The portable path rounds the convolutions
# differently: its bits are its own.)
VECTOR_PATHS = [p for p in SIMD_PATHS if p != "portable"]
CNN_DIGESTS = {"cnn": "b04e8bd349189b3b", "mixed": "8965637bed02fb17"}


def _cnn_digest(name):
    from fastnn import cnn_models
    rng = np.random.default_rng(11)
    size = 28 if name == "cnn" else 32
    X, y = rng.standard_normal((48, 1, size, size)).astype(np.float32), rng.integers(0, 10, 48)
    fastnn.manual_seed(0)
    if name == "cnn":  # fastnn.cnn_models' CNN: Winograd with its pool fused, sparse gradients
        model = cnn_models.build("cnn")
    else:  # BatchNorm, stride 2, dilation, depthwise, 1 × 1, odd sizes, a global average pool
        model = fastnn.Sequential(
            fastnn.Conv2d(1, 16, 3, padding=1), fastnn.BatchNorm2d(16), fastnn.ReLU(), fastnn.MaxPool2d(2),
            fastnn.Conv2d(16, 32, 3, stride=2, padding=1), fastnn.ReLU(),
            fastnn.Conv2d(32, 32, 3, padding=2, dilation=2), fastnn.ReLU(), fastnn.MaxPool2d(3, stride=2),
            fastnn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32), fastnn.Conv2d(32, 48, 1), fastnn.ReLU(),
            fastnn.Conv2d(48, 16, 2), fastnn.AdaptiveAvgPool2d(1), fastnn.Flatten(), fastnn.Linear(16, 10))
    model.fit(X, y, optimizer=fastnn.Adam(model.parameters(), lr=1e-2), epochs=2, batch_size=16, verbose=0)
    model.eval()
    h = hashlib.sha256()
    for v in model.state_dict().values():
        h.update(np.ascontiguousarray(v).tobytes())
    # predict of 1 and 3 images too: a Linear layer's product with a handful of rows runs as
    # dot products (gemm_small_m), 16 lane sums folded in one tree on either path
    for rows in (X, X[:1], X[:3]):
        h.update(model.predict(rows).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", CNN_DIGESTS)
@pytest.mark.parametrize("simd", VECTOR_PATHS)
def test_every_vector_path_trains_a_cnn_to_the_same_bits(simd, name):
    _core.set_simd_path(simd)
    assert _cnn_digest(name) == CNN_DIGESTS[name]
