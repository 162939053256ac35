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


def test_building_a_large_model_peaks_near_two_copies_of_its_weights(tmp_path):
    # initialisation drew a float64 array the size of the weights and Sequential copied zero
    # gradients: 400 MB of weights peaked at 1.2 GB; now the data twice (old store and new) at most
    code = ("import resource, fastnn as fnn\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "m = fnn.Sequential(fnn.Linear(10000, 10000))\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024, m.num_parameters() * 4 / 2**20)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    peak, weights = map(float, r.stdout.split())
    assert peak < 2.3 * weights, (peak, weights)


def _unaligned(a):
    buf = np.empty(a.nbytes + 1, np.uint8)
    view = buf[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned
    return view


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_unaligned_data_trains_and_predicts_like_aligned(kind):
    # np.frombuffer(buf, offset=1) and some file readers give arrays whose floats sit at odd
    # byte offsets; the compiled plan used to read them through misaligned pointers (undefined
    # behaviour, reported by the sanitizer stage). Now they are copied (predict) or go the layer
    # path (fit), with the same numbers.
    rng = np.random.default_rng(0)
    if kind == "mlp":
        X = rng.standard_normal((96, 6)).astype(np.float32)

        def make():
            return fnn.Sequential(fnn.Linear(6, 16), fnn.ReLU(), fnn.Linear(16, 3))
    else:
        X = rng.standard_normal((48, 1, 8, 8)).astype(np.float32)

        def make():
            return fnn.Sequential(fnn.Conv2d(1, 4, 3, padding=1), fnn.ReLU(), fnn.MaxPool2d(2),
                                  fnn.Flatten(), fnn.Linear(64, 3))
    y = np.arange(len(X)) % 3
    fits = []
    for data in (X, _unaligned(X)):
        fnn.manual_seed(1)
        model = make()
        model.fit(data, _unaligned(y.astype(np.int64)) if data is not X else y, epochs=2, batch_size=16,
                  verbose=0)
        fits.append(model)
    for a, b in zip(fits[0].parameters(), fits[1].parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    model = fits[0].eval()
    want = model.predict(X)
    np.testing.assert_array_equal(model.predict(_unaligned(X)), want)
    np.testing.assert_array_equal(model(_unaligned(X)), want)
    np.testing.assert_array_equal(model.predict(_unaligned(X[:1])), model.predict(X[:1]))


class Scale(fnn.Layer):
    """A user's own layer with a parameter: y = x * s (one scale per feature)."""

    def __init__(self, n):
        super().__init__()
        self.s = fnn.Parameter(np.linspace(0.5, 1.5, n))

    def forward(self, x):
        self._x = np.asarray(x, self.s.dtype)
        return self._x * self.s.data

    def backward(self, grad_out):
        self.s.grad += (grad_out * self._x).sum(axis=0)
        return grad_out * self.s.data


def test_gradcheck_takes_a_users_own_layer():
    # gradcheck rebuilt layers from fastnn's registry: KeyError for any other class
    x = np.random.default_rng(0).standard_normal((4, 3))
    layer = Scale(3)
    keep = layer.s.data.copy()
    assert fnn.gradcheck(layer, x)
    assert fnn.gradcheck(fnn.Sequential(fnn.Linear(3, 3), Scale(3), fnn.Tanh()), x)
    np.testing.assert_array_equal(layer.s.data, keep)  # the original is untouched

    class Wrong(Scale):
        def backward(self, grad_out):
            return super().backward(grad_out) * 1.01
    with pytest.raises(fnn.GradcheckError, match="dinput"):
        fnn.gradcheck(Wrong(3), x)


def test_gradcheck_checks_a_float32_batchnorm_model_in_float64():
    x = np.random.default_rng(1).standard_normal((6, 2, 3, 3))
    model = fnn.Sequential(fnn.Conv2d(2, 2, 3, padding=1), fnn.BatchNorm2d(2), fnn.ReLU())
    assert model.dtype == np.float32
    assert fnn.gradcheck(model, x)
    assert model[1].running_mean.dtype == np.float32


def test_save_refuses_a_model_with_a_users_own_layer(tmp_path):
    # save wrote the file, then fnn.load could not read it
    model = fnn.Sequential(fnn.Linear(3, 3), Scale(3))
    path = tmp_path / "m.fnn"
    with pytest.raises(TypeError, match="Scale, a layer class of your own"):
        fnn.save(model, path)
    assert not path.exists() and not list(tmp_path.iterdir())

    class Linear(fnn.Linear):  # a subclass under a built-in's name is not the built-in
        pass
    with pytest.raises(TypeError, match="Linear, a layer class of your own"):
        fnn.save(fnn.Sequential(Linear(2, 2)), path)
    fnn.save(fnn.Sequential(fnn.Linear(3, 3)), path)  # fastnn's own layers save


class Doubler(fnn.Layer):
    def forward(self, x):
        return 2 * np.asarray(x, np.float32)

    def backward(self, grad_out):
        return 2 * grad_out


@pytest.mark.parametrize("backend", ["cpp", "numpy"])
@pytest.mark.parametrize("kind", ["mlp-dropout", "custom-layer", "cnn-batchnorm"])
def test_eight_threads_predicting_on_one_model_match_serial_results(kind, backend):
    # A web server or a thread pool shares one model: the compiled plan's workspace, the plan
    # cache and the layers' forward caches must not mix calls. Threads start together on a
    # model that has no plan yet, so they also race to compile it.
    rng = np.random.default_rng(0)
    fnn.manual_seed(0)
    with fnn.use_backend(backend):
        if kind == "mlp-dropout":
            model, shape = fnn.Sequential(fnn.Linear(20, 64), fnn.ReLU(), fnn.Dropout(0.3), fnn.Linear(64, 10)), (20,)
        elif kind == "custom-layer":
            model, shape = fnn.Sequential(fnn.Linear(20, 64), Doubler(), fnn.ReLU(), fnn.Linear(64, 10)), (20,)
        else:
            model, shape = fnn.Sequential(fnn.Conv2d(1, 8, 3, padding=1), fnn.BatchNorm2d(8), fnn.ReLU(),
                                          fnn.MaxPool2d(2), fnn.Flatten(), fnn.Linear(8 * 7 * 7, 10)), (1, 14, 14)
        model.eval()
        Xs = [rng.standard_normal((n, *shape)).astype(np.float32) for n in (1, 7, 300)]
        twin = pickle.loads(pickle.dumps(model))
        want = [twin.predict(X) for X in Xs]
        got, errors = [], []
        start = threading.Barrier(8)

        def work(seed):
            r = np.random.default_rng(seed)
            start.wait()
            try:
                for _ in range(40):
                    i = int(r.integers(len(Xs)))
                    out = model.predict(Xs[i]) if r.integers(2) else model(Xs[i])
                    got.append((i, out))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and len(got) == 320
    for i, out in got:
        np.testing.assert_array_equal(out, want[i])


# ---- found by tests/test_fuzz.py


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
def test_pooling_an_empty_image_plane_is_refused(ops):
    # x of shape (1, 1, 0, 1) with padding made a 1x1 output from a window over padding alone:
    # the C++ kernel read outside x (5.7e13 came out), the twin gave -inf
    x = np.zeros((1, 1, 0, 1), np.float32)
    out, am = np.full((1, 1, 1, 1), 7.0, np.float32), np.zeros((1, 1, 1, 1), np.int32)
    with pytest.raises(ValueError, match="empty image plane"):
        ops.maxpool2d_forward(out, am, x, (2, 3), (1, 2), (1, 1))
    with pytest.raises(ValueError, match="empty image plane"):
        ops.avgpool2d_forward(out, x, 2, 1, 1)
    assert out[0, 0, 0, 0] == 7.0


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
def test_a_convolution_with_no_output_channels_runs(ops):
    # the twin reshaped the (0, 1, 3, 3) weight with -1 and raised; C++ ran (as PyTorch does)
    x = np.ones((2, 1, 4, 4), np.float32)
    w = np.ones((0, 1, 3, 3), np.float32)
    out = np.empty((2, 0, 4, 4), np.float32)
    ops.conv2d_forward(out, x, w, np.ones(0, np.float32), padding=1)
    dx, dw, db = np.full_like(x, np.nan), np.zeros_like(w), np.zeros(0, np.float32)
    ops.conv2d_backward(dx, dw, db, out, x, w, padding=1)
    np.testing.assert_array_equal(dx, 0)


@pytest.mark.parametrize("geometry", ["3x3-same", "2x2-stride3", "3x3-stride2-pad1", "3x3-dilation2",
                                      "2x2-asymmetric-pad", "3x3-groups2"])
def test_convolutions_with_no_input_or_output_channels_match_the_twin(geometry):
    # found by fuzz/run.py: with no output channels (or no input channels), most C++ paths
    # divided by a channel count and the process died of SIGFPE (the 3×3 padding-1 case above
    # happened to take a path that did not)
    from harness import CASES, CONV_GEOMETRIES, SIMD_PATHS, _conv_out, run_case
    cases = [c for c in CASES if c.id.startswith(("conv2d_forward[" + geometry + ",", "conv2d_backward[" + geometry + ","))]
    assert cases
    for path in SIMD_PATHS:  # (conftest puts the path back)
        fnn._core.set_simd_path(path)
        for case in cases:
            for shape in [(1, 1, 2, 30, 0), (2, 16, 5, 6, 0), (2, 0, 5, 5, 4), (3, 0, 14, 14, 32), (0, 0, 4, 4, 0)]:
                if not _conv_out(shape, CONV_GEOMETRIES[geometry])[0]:
                    continue  # (an image too small for the kernel, channels the groups do not divide)
                for dtype in (np.float32, np.float64):
                    run_case(case, shape, dtype, seed=1)


def test_optimizer_state_with_a_step_for_some_parameters_only_is_a_value_error():
    # load_state_dict raised KeyError('step'); fnn.load let it through instead of FormatError
    model = fnn.Sequential(fnn.Linear(2, 2))
    opt = fnn.Adam(model.parameters())
    model.fit(np.ones((4, 2), np.float32), np.array([0, 1, 0, 1]), optimizer=opt, epochs=1, verbose=0)
    sd = opt.state_dict()
    del sd["state"][1]["step"]
    with pytest.raises(ValueError, match="step count is given for some parameters"):
        fnn.Adam(model.parameters()).load_state_dict(sd)


@pytest.mark.parametrize("groups", [True, 3, None, [{"lr": 0.1}], ["x"]])
def test_a_file_whose_optimizer_groups_are_not_a_list_of_groups_is_a_format_error(tmp_path, groups):
    # fnn.load raised TypeError ("'bool' object is not iterable") for param_groups = true
    import json
    import struct
    model = fnn.Sequential(fnn.Linear(2, 2))
    path = tmp_path / "m.fnn"
    fnn.save(model, path, optimizer=fnn.SGD(model.parameters(), lr=0.1))
    raw = path.read_bytes()
    hlen = struct.unpack_from("<Q", raw, 16)[0]
    header = json.loads(raw[24:24 + hlen])
    header["optimizer"]["param_groups"] = groups
    text = json.dumps(header).encode()
    start = 24 + hlen + (-(24 + hlen) % 64)
    out = raw[:16] + struct.pack("<Q", len(text)) + text
    path.write_bytes(out + b"\0" * (-len(out) % 64) + raw[start:])
    with pytest.raises(fnn.FormatError, match="param_groups|optimizer group"):
        fnn.load(path, with_optimizer=True)


def test_a_float64_input_beyond_float32s_range_is_named_as_such():
    # 1e300 became inf in the float32 conversion (with a RuntimeWarning) and the error said
    # "X contains inf"
    import warnings
    model = fnn.Sequential(fnn.Linear(2, 2))
    X = np.array([[0.0, 1.0], [1e300, 2.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"X holds 1e\+300 at index \(1, 0\), beyond float32's range"):
            model.predict(X)
        with pytest.raises(ValueError, match="beyond float32's range"):
            model.fit(X, np.array([0, 1]), epochs=1, verbose=0)


@pytest.mark.parametrize("loss", [[], {"a": 1}, "MSELoss", {"type": [1]}, {"type": "MSELoss", "config": {"reduction": 3}},
                                  {"type": "MSELoss", "config": {"bogus": 1}}, {"type": "Loss"}])
def test_a_damaged_loss_entry_in_a_model_file_only_loses_the_loss(tmp_path, loss):
    # found by the fuzz tests: a list as the loss's type raised TypeError (unhashable) from load
    import json
    import struct
    m = fnn.Sequential(fnn.Linear(3, 2))
    m.fit(np.ones((4, 3), np.float32), np.zeros(4, np.int64), epochs=1, verbose=0)
    fnn.save(m, tmp_path / "m.fnn")
    raw = (tmp_path / "m.fnn").read_bytes()
    hlen = struct.unpack_from("<Q", raw, 16)[0]
    header = json.loads(raw[24:24 + hlen])
    data_start = 24 + hlen + (-(24 + hlen) % 64)
    header["loss"] = loss
    text = json.dumps(header).encode()
    out = raw[:16] + struct.pack("<Q", len(text)) + text
    (tmp_path / "m.fnn").write_bytes(out + b"\0" * (-len(out) % 64) + raw[data_start:])
    back = fnn.load(tmp_path / "m.fnn")
    assert np.array_equal(back.predict(np.ones((2, 3), np.float32)), m.predict(np.ones((2, 3), np.float32)))
    assert getattr(back, "_last_loss", None) is None


def test_an_empty_batch_goes_through_a_cnn_in_training_as_through_pytorch(backend):
    # found by a fuzz of random CNNs: Flatten of (0, C, H, W) raised numpy's "cannot reshape
    # array of size 0 into shape (0,newaxis)", and BatchNorm in training "batchnorm_update: count
    # must be >= 1, got 0". PyTorch 2.13 gives the empty output, leaves the running statistics,
    # counts the batch in num_batches_tracked and makes zero gradients.
    fnn.manual_seed(0)
    bn = fnn.BatchNorm2d(4)
    model = fnn.Sequential(fnn.Conv2d(1, 4, 3, padding=1), bn, fnn.ReLU(), fnn.MaxPool2d(2), fnn.Flatten(),
                           fnn.Linear(64, 3))
    bn.running_mean[...], bn.running_var[...] = 0.5, 2.0
    x = np.zeros((0, 1, 8, 8), np.float32)
    out = model(x)
    assert out.shape == (0, 3)
    for p in model.parameters():
        p.grad[...] = 0
    dx = model.backward(np.zeros((0, 3), np.float32))
    assert dx.shape == x.shape
    assert all(not p.grad.any() for p in model.parameters())
    assert (bn.running_mean == 0.5).all() and (bn.running_var == 2.0).all() and int(bn.num_batches_tracked) == 1
    assert fnn.Flatten()(np.zeros((0, 2, 3))).shape == (0, 6)
    assert fnn.BatchNorm1d(3)(np.zeros((0, 3), np.float32)).shape == (0, 3)
    model.eval()
    assert model.predict(x).shape == (0, 3)


def test_state_values_beyond_float32s_range_are_refused_not_loaded_as_infinities():
    # found by fuzz/run.py (a header-mutated file's float64 tensors): load_state_dict cast
    # 1e300 to inf with only NumPy's overflow warning, in weights and in optimizer buffers
    import warnings
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(2, 2))
    opt = fnn.Adam(model.parameters())
    model.fit(np.ones((4, 2), np.float32), np.array([0, 1, 0, 1]), optimizer=opt, epochs=1, verbose=0)
    before, opt_before = model.state_dict(), opt.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd = {**before, "0.weight": np.array([[0.5, 1e300], [0.0, 1.0]])}
        with pytest.raises(ValueError, match=r"state_dict\['0.weight'\] holds 1e\+300 at index \(0, 1\), beyond "
                                             r"float32's range"):
            model.load_state_dict(sd)
        sd = {k: {**v, "exp_avg": np.full(np.shape(v["exp_avg"]), -1e300)} for k, v in opt_before["state"].items()}
        with pytest.raises(ValueError, match="Adam.load_state_dict: state 'exp_avg' holds -1e\\+300"):
            opt.load_state_dict({**opt_before, "state": sd})
        # what float32 holds loads as given, infinities and NaN included
        model.load_state_dict({**before, "0.bias": np.array([np.inf, np.nan])})
    assert np.isinf(model[0].bias.data[0]) and np.isnan(model[0].bias.data[1])
    np.testing.assert_array_equal(model[0].weight.data, before["0.weight"])  # untouched by the refusals
    np.testing.assert_array_equal(opt.state_dict()["state"][0]["exp_avg"], opt_before["state"][0]["exp_avg"])
