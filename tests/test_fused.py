"""The fused C++ path (fastnn/fused.py) against the layer-by-layer path it replaces: the same
arithmetic, so the same weights; thread-count independent; and safe against bad arguments."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core, fused


def data(n=250, d=12, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, k, n)


ACTS = [fnn.ReLU, fnn.Tanh, fnn.Sigmoid, fnn.GELU, lambda: fnn.LeakyReLU(0.1)]


def make(act, seed=0, d=12, k=4, dtype=np.float32):
    fnn.manual_seed(seed)
    return fnn.Sequential(fnn.Linear(d, 16, dtype=dtype), act(), fnn.Linear(16, 8, dtype=dtype), act(),
                          fnn.Linear(8, k, bias=False, dtype=dtype))


OPTS = {
    "sgd": lambda p: fnn.SGD(p, lr=0.05),
    "sgd-momentum": lambda p: fnn.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda p: fnn.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda p: fnn.Adam(p, lr=1e-2),
    "adamw": lambda p: fnn.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: fnn.RMSprop(p, lr=1e-3),
    "rmsprop-momentum": lambda p: fnn.RMSprop(p, lr=1e-3, alpha=0.9, momentum=0.5, weight_decay=1e-3),
}


def fit_both(act, opt_name, loss="cross_entropy", y=None, X=None, epochs=3, batch_size=32, **kw):
    if X is None:
        X, y = data()
    result = []
    for fused_ok in (True, False):
        model = make(act, k=y.shape[1] if y.ndim == 2 else 4)
        opt = OPTS[opt_name](model.parameters())
        fnn.manual_seed(7)
        hist = model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=batch_size,
                         verbose=0, fused_ok=fused_ok, **kw)
        result.append((model, opt, hist))
    return result


@pytest.mark.parametrize("opt_name", OPTS)
@pytest.mark.parametrize("act", ACTS, ids=["relu", "tanh", "sigmoid", "gelu", "leaky"])
def test_fused_fit_equals_layer_by_layer(act, opt_name):
    (fm, fo, fh), (lm, lo, lh) = fit_both(act, opt_name)
    assert fused.train_plan(fm, fnn.CrossEntropyLoss(), fo, *data()) is not None
    assert fh.history == lh.history                              # every loss and accuracy, exactly
    for k, v in lm.state_dict().items():
        np.testing.assert_array_equal(fm.state_dict()[k], v, err_msg=k)
    # the last batch's gradients are left in place, as after a manual loop (the fused loop's
    # backward sets them each batch instead of adding onto zeros)
    for (k, a), b in zip(fm.named_parameters(), lm.parameters()):
        assert np.any(b.grad != 0), k
        np.testing.assert_array_equal(a.grad, b.grad, err_msg=k)
    for (k, a), b in zip(fo.state_dict()["state"].items(), lo.state_dict()["state"].values()):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_fused_regression_equals_layer_by_layer(reduction):
    X, _ = data()
    y = np.sin(X[:, :3]).astype(np.float32)
    (fm, _, fh), (lm, _, lh) = fit_both(fnn.Tanh, "adam", loss=fnn.MSELoss(reduction), X=X, y=y,
                                        shuffle=False, validation_split=0.2)
    assert fh.history == lh.history
    for k, v in lm.state_dict().items():
        np.testing.assert_array_equal(fm.state_dict()[k], v)


@pytest.mark.parametrize("act", ACTS, ids=["relu", "tanh", "sigmoid", "gelu", "leaky"])
def test_fused_output_activation_equals_layer_by_layer(act):
    # An activation after the last Linear (a sigmoid output with MSE, say): the loss gradient
    # is with respect to the activation's output and must go through its backward.
    X, _ = data()
    y = (np.sin(X[:, :3]) > 0).astype(np.float32)
    result = []
    for fused_ok in (True, False):
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(12, 16), fnn.Tanh(), fnn.Linear(16, 3), act())
        opt = fnn.SGD(model.parameters(), lr=0.5, momentum=0.5)
        assert fused.train_plan(model, fnn.MSELoss(), opt, X, y) is not None
        fnn.manual_seed(7)
        hist = model.fit(X, y, loss="mse", optimizer=opt, epochs=3, batch_size=32, verbose=0,
                         fused_ok=fused_ok)
        result.append((model.state_dict(), hist.history))
    (fw, fh), (lw, lh) = result
    assert fh == lh
    for k in lw:
        np.testing.assert_array_equal(fw[k], lw[k], err_msg=k)


@pytest.mark.parametrize("loss,head", [("bce_with_logits", []), ("bce", [fnn.Sigmoid()])])
@pytest.mark.parametrize("labels", [1, 3])
def test_fused_binary_cross_entropy_equals_layer_by_layer(loss, head, labels):
    X, _ = data()
    y = (X[:, :labels] > 0).astype(np.float32)
    result = []
    for fused_ok in (True, False):
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(12, 16), fnn.ReLU(), fnn.Linear(16, labels), *head)
        opt = fnn.RMSprop(model.parameters(), lr=1e-2, momentum=0.3)
        assert fused.train_plan(model, fnn.losses.get_loss(loss), opt, X, y) is not None
        fnn.manual_seed(7)
        hist = model.fit(X, y, loss=loss, optimizer=opt, epochs=3, batch_size=32, verbose=0,
                         fused_ok=fused_ok, validation_split=0.2)
        result.append((model.state_dict(), hist.history, opt.state_dict()["state"]))
    (fw, fh, fs), (lw, lh, ls) = result
    assert fh == lh                                  # loss and accuracy (a fraction per sample)
    assert 0.5 < fh["accuracy"][-1] <= 1.0
    for k in lw:
        np.testing.assert_array_equal(fw[k], lw[k], err_msg=k)
    for i in ls:
        for name in ls[i]:
            np.testing.assert_array_equal(fs[i][name], ls[i][name], err_msg=name)


def test_fused_training_is_thread_count_independent():
    X, y = data(n=1000, d=64)
    weights = []
    for threads in (1, 2):
        fnn.set_num_threads(threads)
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Dropout(0.1), fnn.Linear(64, 32), fnn.ReLU(), fnn.Dropout(0.3),
                               fnn.Linear(32, 4))
        fnn.manual_seed(3)
        model.fit(X, y, optimizer=fnn.SGD(model.parameters(), lr=0.1, momentum=0.5), epochs=2,
                  batch_size=100, verbose=0)
        weights.append(model.state_dict())
    for k in weights[0]:
        np.testing.assert_array_equal(weights[0][k], weights[1][k])


def test_fused_predict_and_eval_call_equal_the_layers():
    X, _ = data(n=300)
    model = fnn.Sequential(fnn.Linear(12, 32), fnn.GELU(), fnn.Dropout(0.5), fnn.Linear(32, 5), fnn.Sigmoid())
    assert fused.forward(model, X) is not None                  # dropout is the identity here
    model.eval()
    np.testing.assert_array_equal(model.predict(X), model.forward(X))
    np.testing.assert_array_equal(model.predict(X[:1]), model.forward(X[:1]))
    np.testing.assert_array_equal(model(X), model.forward(X))
    model(X)
    with pytest.raises(RuntimeError, match="fused inference path, which keeps nothing for backward"):
        model.backward(np.ones((300, 5), np.float32))
    model.forward(X)
    model.backward(np.ones((300, 5), np.float32))                # forward() keeps what backward needs


DROPOUT_MODELS = {
    "input+hidden": lambda dt: fnn.Sequential(
        fnn.Dropout(0.2), fnn.Linear(12, 16, dtype=dt), fnn.Tanh(), fnn.Dropout(0.5), fnn.Linear(16, 8, dtype=dt),
        fnn.ReLU(), fnn.Dropout(0.3), fnn.Linear(8, 4, dtype=dt)),
    "after-sigmoid": lambda dt: fnn.Sequential(fnn.Linear(12, 32, dtype=dt), fnn.Sigmoid(), fnn.Dropout(0.5),
                                               fnn.Linear(32, 4, dtype=dt)),
    "no-activation": lambda dt: fnn.Sequential(fnn.Linear(12, 8, dtype=dt), fnn.Dropout(0.3),
                                               fnn.Linear(8, 4, bias=False, dtype=dt)),
    "p=0-and-gelu": lambda dt: fnn.Sequential(fnn.Dropout(0.0), fnn.Linear(12, 16, dtype=dt), fnn.GELU(),
                                              fnn.Dropout(0.25), fnn.Linear(16, 4, dtype=dt)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", DROPOUT_MODELS)
@pytest.mark.parametrize("max_uniforms", [None, 1000])
def test_fused_dropout_equals_layer_by_layer(name, dtype, max_uniforms, monkeypatch):
    # The fused loop draws each group's Dropout uniforms in one call, in the layers' order, and
    # applies the layer's kernel: the same masks, so the same weights, history and generator
    # state afterwards. A small max_uniforms makes it split a group into many C++ calls.
    if max_uniforms:
        monkeypatch.setattr(fused.TrainPlan, "MAX_UNIFORMS", max_uniforms)
    X, y = data()
    X = X.astype(dtype)
    result = []
    for fused_ok in (True, False):
        fnn.manual_seed(0)
        model = DROPOUT_MODELS[name](dtype)
        opt = fnn.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if fused_ok:
            assert fused.train_plan(model, fnn.CrossEntropyLoss(), opt, X, y) is not None
        fnn.manual_seed(7)
        hist = model.fit(X, y, optimizer=opt, epochs=3, batch_size=32, verbose=0, fused_ok=fused_ok,
                         validation_split=0.1)
        result.append((model.state_dict(), hist.history, fnn.random.generator().random(4)))
    (fw, fh, fr), (lw, lh, lr) = result
    assert fh == lh
    for k in lw:
        np.testing.assert_array_equal(fw[k], lw[k], err_msg=k)
    np.testing.assert_array_equal(fr, lr)                        # the generator moved the same way


def test_fused_dropout_really_drops():
    # With p = 0.9 on the hidden layer, training is noisy: its loss differs from p = 0's run
    # from the first batch on, while eval-mode outputs use no mask.
    X, y = data()
    losses = {}
    for p in (0.0, 0.9):
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(12, 64), fnn.ReLU(), fnn.Dropout(p), fnn.Linear(64, 4))
        h = model.fit(X, y, optimizer=fnn.SGD(model.parameters(), lr=0.0), epochs=1, batch_size=250,
                      verbose=0)
        losses[p] = h.history["loss"][0]
        model.eval()
        np.testing.assert_array_equal(model.predict(X), model.forward(X))
    assert losses[0.0] != losses[0.9]


@pytest.mark.parametrize("make_model,loss,opt", [
    (lambda: fnn.Sequential(fnn.Linear(12, 8), fnn.Dropout(0.3), fnn.ReLU(), fnn.Linear(8, 4)),
     "cross_entropy", "sgd"),                                  # dropout between a Linear and its activation
    (lambda: fnn.Sequential(fnn.Linear(12, 8), fnn.ReLU(), fnn.Dropout(0.3), fnn.Dropout(0.2), fnn.Linear(8, 4)),
     "cross_entropy", "sgd"),                                  # two in a row
    (lambda: fnn.Sequential(fnn.Linear(12, 4), fnn.Dropout(0.3)), "cross_entropy", "sgd"),  # on the output
    (lambda: fnn.Sequential(fnn.Linear(12, 4), fnn.Softmax()), "cross_entropy", "sgd"),
    (lambda: fnn.Sequential(fnn.Linear(12, 4), fnn.Softmax()), "mse", "sgd"),
])
def test_unsupported_models_fall_back_to_the_layers(make_model, loss, opt):
    X, y = data()
    model = make_model()
    optimizer = {"sgd": fnn.SGD, "rmsprop": fnn.RMSprop}[opt](model.parameters(), lr=0.01)
    loss_fn = fnn.losses.get_loss(loss)
    yy = np.eye(4, dtype=np.float32)[y] if loss != "cross_entropy" else y
    assert fused.train_plan(model, loss_fn, optimizer, X, yy) is None
    model.fit(X, yy, loss=loss_fn, optimizer=optimizer, epochs=1, verbose=0)


def test_numpy_backend_never_runs_fused():
    X, y = data()
    with fnn.use_backend("numpy"):
        model = make(fnn.ReLU)
        assert fused.layer_table(model, training=True) is None


def kernel_args(model, **kw):
    """(table, store, mlp_train_batches arguments) for plain SGD on data()."""
    table, store = fused.layer_table(model, training=True)
    X, y = data()
    args = dict(params=store.data, grads=store.grad, layers=table, x=X, targets=y, order=np.arange(250),
                batch_size=32, first_batch=0, n_batches=8, loss="cross_entropy", optimizer="sgd",
                hyper=np.array([0.1, 0, 0, 0, 0, 0, 0, 0.0]), state_a=None, state_b=None, step=1)
    return table, store, {**args, **kw}


def test_bad_arguments_to_the_fused_kernel_raise():
    table, store, args = kernel_args(make(fnn.ReLU))
    X = args["x"]
    before = store.data.copy()
    bad_table = table.copy()
    bad_table[1, 2] = store.data.size                              # weight beyond the buffer
    for change, msg in [(dict(layers=bad_table), "does not fit the parameter buffer"),
                        (dict(order=np.full(250, 250)), "order\\[0\\] = 250 is not in \\[0, 250\\)"),
                        (dict(n_batches=9), "do not fit 250 samples"),
                        (dict(targets=np.full(250, 4)), "label 4 at index 0 is outside \\[0, 4\\)"),
                        (dict(x=X[:, :5]), "expected x of shape \\(N, 12\\)"),
                        (dict(optimizer="adam"), "state buffers missing"),
                        (dict(dropout_u=np.zeros(5, np.float32)), "dropout_u must hold 0 uniforms")]:
        with pytest.raises(ValueError, match=msg):
            _core.mlp_train_batches(**{**args, **change})
    np.testing.assert_array_equal(store.data, before)


def test_bad_dropout_uniforms_raise():
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(12, 16), fnn.ReLU(), fnn.Dropout(0.5), fnn.Linear(16, 4))
    table, store, args = kernel_args(model, first_batch=7, n_batches=1)
    assert table[:, 6].tolist() == [0.0, 0.5]
    before = store.data.copy()
    bad_table = table.copy()
    bad_table[1, 6] = 1.0
    for change, msg in [({}, "the layers have dropout; dropout_u must hold their 416 uniforms"),
                        (dict(dropout_u=np.zeros(417, np.float32)), "must hold 416 uniforms .* got shape \\(417,\\)"),
                        (dict(layers=bad_table, dropout_u=np.zeros(416, np.float32)), "layer 1's dropout p must be in \\[0, 1\\), got 1")]:
        with pytest.raises(ValueError, match=msg):
            _core.mlp_train_batches(**{**args, **change})
    np.testing.assert_array_equal(store.data, before)
    _core.mlp_train_batches(**args, dropout_u=np.ones(416, np.float32))  # 26 rows × 16: the last batch
    assert not np.array_equal(store.data, before)
