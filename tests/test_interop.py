"""Working with other libraries: safetensors files (fnn.save(..., format="safetensors"),
fnn.load, fnn.read_safetensors) read by the safetensors library and PyTorch; ONNX export run in
onnxruntime; scikit-learn estimators (fastnn.sklearn)."""
import json
import os
import struct

import numpy as np
import pytest

import fastnn as fnn
from fastnn import cnn_models

if os.environ.get("CI"):  # CI installs every extra with [test]: a missing one fails here, never skips
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import safetensors  # noqa: F401
    import sklearn  # noqa: F401


def _cnn(batchnorm=True):
    fnn.manual_seed(0)
    m = cnn_models.build("cnn", 12, 5, batchnorm=batchnorm)
    # move BatchNorm's running statistics off their initial values
    m.fit(np.random.default_rng(0).normal(size=(16, 1, 12, 12)).astype(np.float32), np.arange(16) % 5,
          epochs=1, batch_size=8, verbose=0)
    return m


def _images(n=6, size=12, seed=1):
    return np.random.default_rng(seed).normal(size=(n, 1, size, size)).astype(np.float32)


# --- safetensors -----------------------------------------------------------------------------

def test_safetensors_round_trip_rebuilds_the_model(tmp_path):
    m = _cnn()
    p = tmp_path / "m.safetensors"
    fnn.save(m, p, format="safetensors", metadata={"classes": ["a", "b"]})
    m2 = fnn.load(p)
    assert type(m2) is type(m) and repr(m2) == repr(m)
    X = _images()
    assert np.array_equal(m2.predict(X), m.predict(X))
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and np.array_equal(a, b)
    assert m2.metadata == {"classes": ["a", "b"]}
    assert fnn.load(p, with_optimizer=True)[1] is None


def test_the_safetensors_library_reads_the_file(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m = _cnn()
    p = tmp_path / "m.safetensors"
    fnn.save(m, p, format="safetensors")
    loaded = st.load_file(str(p))
    sd = m.state_dict()
    assert list(loaded) == list(sd) or sorted(loaded) == sorted(sd)
    for k, v in sd.items():
        assert loaded[k].dtype == np.asarray(v).dtype and np.array_equal(loaded[k], v)


def test_pytorch_loads_the_safetensors_file_strictly_and_computes_the_same(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    m = _cnn()
    p = tmp_path / "m.safetensors"
    fnn.save(m, p, format="safetensors")
    tm = cnn_models.build_torch("cnn", torch, 12, 5, batchnorm=True)
    tm.load_state_dict(st_torch.load_file(str(p)), strict=True)
    tm.eval()
    X = _images()
    with torch.no_grad():
        want = tm(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.predict(X), want, rtol=1e-4, atol=1e-5)


def test_weights_from_pytorch_through_a_safetensors_file(tmp_path):
    torch = pytest.importorskip("torch")
    st_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(3)
    tm = cnn_models.build_torch("cnn", torch, 12, 5, batchnorm=True)
    tm.train()
    tm(torch.randn(8, 1, 12, 12))  # running statistics away from 0 and 1
    tm.eval()
    p = tmp_path / "from_torch.safetensors"
    st_torch.save_file(tm.state_dict(), str(p))
    m = cnn_models.build("cnn", 12, 5, batchnorm=True)
    m.load_state_dict(fnn.read_safetensors(p))
    X = _images()
    with torch.no_grad():
        want = tm(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.predict(X), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(fnn.FormatError, match="without fastnn's architecture"):
        fnn.load(p)  # a file without the architecture: load_state_dict is the way


def test_safetensors_refuses_an_optimizer_and_unknown_formats(tmp_path):
    m = fnn.Sequential(fnn.Linear(3, 2))
    with pytest.raises(ValueError, match="format='fastnn'"):
        fnn.save(m, tmp_path / "x.safetensors", optimizer=fnn.SGD(m.parameters(), lr=0.1), format="safetensors")
    with pytest.raises(ValueError, match="format must be"):
        fnn.save(m, tmp_path / "x.onnx", format="onnx")
    assert not list(tmp_path.iterdir())


def _write(path, header: dict, data: bytes, n=None):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if n is None else n) + raw + data)


@pytest.mark.parametrize("header, data, n, message", [
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, None, "outside the 4 bytes"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, None, "needs 12 bytes"),
    ({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4, None, "dtype 'BF16'"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "v": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, None, "share bytes"),
    ({"w": {"dtype": "F32", "shape": [2 ** 62], "data_offsets": [0, 8]}}, b"\0" * 8, None, "invalid shape"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, 10 ** 12, "header claims"),
    ({"__metadata__": {"format": 3}}, b"", None, "strings to strings"),
])
def test_hostile_safetensors_files_fail_with_format_error(tmp_path, header, data, n, message):
    p = tmp_path / "bad.safetensors"
    _write(p, header, data, n)
    with pytest.raises(fnn.FormatError, match=message):
        fnn.read_safetensors(p)


def test_a_safetensors_file_whose_architecture_disagrees_with_its_tensors_is_refused(tmp_path):
    m = fnn.Sequential(fnn.Linear(3, 2))
    p = tmp_path / "m.safetensors"
    fnn.save(m, p, format="safetensors")
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header["__metadata__"]["model"] = json.dumps({"type": "Sequential", "config": {"layers": [
        {"type": "Linear", "config": {"in_features": 4, "out_features": 2}}]}})
    _write(p, header, raw[8 + n:])
    with pytest.raises(fnn.FormatError, match=r"shape \(2, 3\), the architecture needs \(2, 4\)"):
        fnn.load(p)


# --- ONNX ----------------------------------------------------------------------------------

def _run_onnx(path, X):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": X})[0]


def _mlp_every_activation(dtype=np.float32):
    fnn.manual_seed(1)
    return fnn.Sequential(fnn.Linear(10, 16, dtype=dtype), fnn.ReLU(), fnn.Dropout(0.3), fnn.Linear(16, 16, dtype=dtype),
                          fnn.LeakyReLU(0.2), fnn.Linear(16, 16, dtype=dtype), fnn.GELU(),
                          fnn.Linear(16, 12, dtype=dtype), fnn.Tanh(), fnn.Linear(12, 12, dtype=dtype), fnn.Sigmoid(),
                          fnn.Linear(12, 4, dtype=dtype), fnn.Softmax())


@pytest.mark.parametrize("build, shape", [
    (_mlp_every_activation, (10,)),
    (lambda: _cnn(batchnorm=True), (1, 12, 12)),
    (lambda: _cnn(batchnorm=False), (1, 12, 12)),
    (lambda: cnn_models.build("resnet", 12, 5), (1, 12, 12)),
    (lambda: fnn.Sequential(fnn.Conv2d(3, 6, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2)), fnn.ReLU(),
                            fnn.Conv2d(6, 6, 3, padding="same", groups=3, bias=False), fnn.AvgPool2d(3, 2, 1),
                            fnn.MaxPool2d(2, 1, 1), fnn.Flatten(), fnn.Linear(90, 8), fnn.BatchNorm1d(8),
                            fnn.Linear(8, 3), fnn.Step(0.1)), (3, 13, 9)),
])
def test_exported_models_run_in_onnxruntime_to_predicts_outputs(tmp_path, build, shape):
    pytest.importorskip("onnx")
    model = build()
    path = tmp_path / "m.onnx"
    fnn.export_onnx(model, path, input_shape=(None, *shape))
    for n in (1, 7):  # the batch dimension is dynamic
        X = np.random.default_rng(n).normal(size=(n, *shape)).astype(np.float32)
        np.testing.assert_allclose(_run_onnx(path, X), model.predict(X), rtol=1e-5, atol=1e-5)


def test_a_float64_model_exports_in_float64(tmp_path):
    pytest.importorskip("onnx")
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(5, 8, dtype=np.float64), fnn.Tanh(), fnn.Linear(8, 2, dtype=np.float64))
    fnn.export_onnx(model, tmp_path / "m.onnx", input_shape=(5,))
    X = np.random.default_rng(0).normal(size=(4, 5))
    got = _run_onnx(tmp_path / "m.onnx", X)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-12, atol=1e-14)  # float32 would miss by 1e-7


def test_a_layer_without_an_onnx_form_is_named(tmp_path):
    pytest.importorskip("onnx")

    class Mine(fnn.Layer):
        def forward(self, x):
            return x

        def backward(self, g):
            return g
    with pytest.raises(TypeError, match="Mine has no ONNX form"):
        fnn.export_onnx(fnn.Sequential(fnn.Linear(3, 2), Mine()), tmp_path / "m.onnx", input_shape=(3,))
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(batch, 4\)"):
        fnn.export_onnx(fnn.Sequential(fnn.Linear(3, 2)), tmp_path / "m.onnx", input_shape=(4,))
    assert not list(tmp_path.iterdir())


# --- scikit-learn --------------------------------------------------------------------------

pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@parametrize_with_checks([MLPClassifier(), MLPRegressor()])
def test_the_estimators_pass_scikit_learns_checks(estimator, check):
    # every check scikit-learn has for a classifier and a regressor, default settings (training
    # accuracy, R², pickling, refits, read-only memmaps, messages for bad input ...); none is
    # declared an expected failure
    check(estimator)


def _digits():
    (X, y), (Xt, yt) = fnn.datasets.load("digits")
    return X.reshape(len(X), -1).astype(np.float64), y, Xt.reshape(len(Xt), -1).astype(np.float64), yt


def test_classifier_on_real_data_and_what_it_exposes():
    X, y, Xt, yt = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0).fit(X, y)
    assert clf.score(Xt, yt) > 0.93
    p = clf.predict_proba(Xt[:5])
    assert p.dtype == np.float64 and p.shape == (5, 10) and np.allclose(p.sum(1), 1)
    assert np.array_equal(clf.classes_, np.arange(10)) and clf.n_features_in_ == 64
    assert isinstance(clf.model_, fnn.Sequential) and len(clf.loss_curve_) == clf.n_iter_ <= 30
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    # string labels come back as strings
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf2 = MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0).fit(X, names[y])
    assert np.array_equal(clf2.predict(Xt[:20]), names[clf.predict(Xt[:20])])


def test_refits_with_the_same_random_state_are_identical_and_leave_the_users_generator_alone():
    X, y, Xt, _ = _digits()
    fnn.manual_seed(123)
    before = fnn.random.generator().bit_generator.state
    a = MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=7).fit(X, y).predict_proba(Xt)
    b = MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=7).fit(X, y).predict_proba(Xt)
    c = MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=8).fit(X, y).predict_proba(Xt)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert fnn.random.generator().bit_generator.state == before


def test_partial_fit_and_early_stopping():
    X, y, Xt, yt = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(64,), random_state=0)
    with pytest.raises(ValueError, match="classes="):
        clf.partial_fit(X[:100], y[:100])
    for _ in range(15):  # 15 passes over the data in chunks of 200 rows: one step each
        for i in range(0, len(X), 200):
            clf.partial_fit(X[i:i + 200], y[i:i + 200], classes=np.arange(10) if i == 0 else None)
    assert clf.n_iter_ == 15 * -(-len(X) // 200) and clf.score(Xt, yt) > 0.8
    es = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, early_stopping=True, n_iter_no_change=3,
                       random_state=0).fit(X, y)
    assert es.n_iter_ < 200 and es.score(Xt, yt) > 0.85  # stopped when the held-out accuracy stalled


def test_regressor_multi_output_in_float64():
    g = np.random.default_rng(0)
    X = g.normal(size=(300, 4))
    Y = np.stack([X[:, 0] - 2 * X[:, 1], np.sin(X[:, 2])], 1)
    reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(X, Y)
    out = reg.predict(X)
    assert out.dtype == np.float64 and out.shape == (300, 2) and reg.score(X, Y) > 0.9
    assert MLPRegressor(max_iter=20, random_state=0).fit(X, Y[:, 0]).predict(X).shape == (300,)


def test_pipeline_grid_search_and_cross_validation(tmp_path, monkeypatch):
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    monkeypatch.chdir(tmp_path)  # joblib's worker processes must import the installed fastnn
    X, y, Xt, yt = _digits()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=20, random_state=0))
    assert pipe.fit(X, y).score(Xt, yt) > 0.9
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2], "mlpclassifier__hidden_layer_sizes": [(16,), (32,)]},
                        cv=3, n_jobs=2).fit(X, y)
    assert grid.best_score_ > 0.85 and set(grid.best_params_) == {"mlpclassifier__alpha",
                                                                  "mlpclassifier__hidden_layer_sizes"}
    scores = cross_val_score(MLPClassifier(hidden_layer_sizes=(32,), max_iter=60, random_state=0), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
