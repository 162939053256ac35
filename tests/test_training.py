"""fit / evaluate / predict, History, the progress display, callbacks, and bad input that
must leave the model unchanged."""
import io
import re

import numpy as np
import pytest

import fastnn as fnn
from fastnn.progbar import Progbar


def blobs(n=300, d=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return (centers[y] + rng.standard_normal((n, d))).astype(np.float32), y


def mlp(d=10, k=3, seed=0):
    fnn.manual_seed(seed)
    return fnn.Sequential(fnn.Linear(d, 16), fnn.ReLU(), fnn.Linear(16, k))


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_fit_learns_and_reports_history(backend):
    X, y = blobs()
    model = mlp()
    hist = model.fit(X[:240], y[:240], loss=fnn.CrossEntropyLoss(),
                     optimizer=fnn.SGD(model.parameters(), lr=0.1, momentum=0.5), epochs=5,
                     batch_size=32, validation_data=(X[240:], y[240:]), verbose=0)
    assert list(hist.history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
    assert hist.epoch == [0, 1, 2, 3, 4] and all(len(v) == 5 for v in hist.history.values())
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert hist.history["val_accuracy"][-1] > 0.95
    ev = model.evaluate(X[240:], y[240:])
    assert ev["loss"] == pytest.approx(hist.history["val_loss"][-1], rel=1e-6)
    assert ev["accuracy"] == hist.history["val_accuracy"][-1]
    assert model.predict(X).shape == (300, 3)


def test_fit_equals_the_manual_loop(backend):
    X, y = blobs()
    a, b = mlp(), mlp()
    a.fit(X, y, optimizer=fnn.SGD(a.parameters(), lr=0.05, momentum=0.9), epochs=2, batch_size=50,
          shuffle=False, verbose=0)
    opt, loss_fn = fnn.SGD(b.parameters(), lr=0.05, momentum=0.9), fnn.CrossEntropyLoss()
    for _ in range(2):
        for s in range(0, 300, 50):
            loss_fn(b(X[s:s + 50]), y[s:s + 50])
            opt.zero_grad()
            b.backward(loss_fn.backward())
            opt.step()
    assert same(weights(a), weights(b))


def test_shuffling_is_reproducible_from_manual_seed():
    X, y = blobs()
    runs = []
    for _ in range(2):
        model = mlp()
        fnn.manual_seed(11)
        model.fit(X, y, optimizer=fnn.Adam(model.parameters()), epochs=2, verbose=0)
        runs.append(weights(model))
    assert same(*runs)


def test_both_backends_follow_the_same_trajectory():
    X, y = blobs()
    result = {}
    for name in ("cpp", "numpy"):
        with fnn.use_backend(name):
            model = mlp()
            fnn.manual_seed(3)
            h = model.fit(X, y, optimizer=fnn.Adam(model.parameters(), lr=1e-2), epochs=3, verbose=0)
            result[name] = h.history["loss"], weights(model)
    np.testing.assert_allclose(result["cpp"][0], result["numpy"][0], rtol=1e-5)
    for k in result["cpp"][1]:
        np.testing.assert_allclose(result["cpp"][1][k], result["numpy"][1][k], rtol=1e-4, atol=1e-5)


def test_regression_fit_has_no_accuracy(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)).astype(np.float32)
    y = X @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    model = fnn.Sequential(fnn.Linear(3, 1))
    hist = model.fit(X, y, loss="mse", optimizer=fnn.SGD(model.parameters(), lr=0.1), epochs=30,
                     batch_size=16, verbose=0, validation_split=0.25)
    assert list(hist.history) == ["loss", "val_loss"]
    assert hist.history["val_loss"][-1] < 1e-3
    assert model.evaluate(X, y, loss=fnn.MSELoss("sum"))["loss"] == pytest.approx(
        fnn.MSELoss("sum")(model.predict(X), y), rel=1e-6)


def test_binary_classification_accuracy():
    X, y = blobs(k=2)
    model = mlp(k=1)
    hist = model.fit(X, y[:, None].astype(np.float32), loss="bce_with_logits",
                     optimizer=fnn.Adam(model.parameters(), lr=1e-2), epochs=5, verbose=0)
    assert hist.history["accuracy"][-1] > 0.95


@pytest.mark.parametrize("loss,head", [("bce_with_logits", []), ("bce", [fnn.Sigmoid()])])
def test_multi_label_accuracy_is_the_fraction_of_correct_outputs(loss, head):
    # Three labels per sample: accuracy counts each output (Keras's binary accuracy), so it
    # stays in [0, 1] and equals the fraction computed by hand from predict.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5)).astype(np.float32)
    y = (X[:, :3] > 0).astype(np.float32)
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(5, 16), fnn.ReLU(), fnn.Linear(16, 3), *head)
    hist = model.fit(X, y, loss=loss, optimizer=fnn.Adam(model.parameters(), lr=1e-2), epochs=5,
                     batch_size=32, verbose=0)
    assert 0.5 < hist.history["accuracy"][-1] <= 1.0
    threshold = 0.0 if loss == "bce_with_logits" else 0.5
    by_hand = np.mean((model.predict(X) > threshold) == (y > 0.5))
    assert model.evaluate(X, y)["accuracy"] == pytest.approx(by_hand, rel=1e-12)


# ------------------------------------------------------------------------- the display
def test_verbose_2_prints_one_line_per_epoch(capsys):
    X, y = blobs(60)
    mlp().fit(X, y, epochs=3, batch_size=20, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"Epoch 1/3 - \S+ \d+[mu]s/step - loss: \d\.\d{4} - accuracy: \d\.\d{4}", lines[0])


def test_verbose_1_off_a_terminal_prints_only_finished_bars(capsys):
    X, y = blobs(60)
    mlp().fit(X, y, epochs=2, batch_size=20, verbose=1)
    out = capsys.readouterr().out
    assert "\r" not in out and "ETA" not in out
    lines = out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert lines[1].startswith("3/3 [==============================] - ")


def test_verbose_0_prints_nothing(capsys):
    X, y = blobs(60)
    mlp().fit(X, y, epochs=2, verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_bar_animates_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    bar = Progbar(4, verbose=1, stream=out, interval=0.0)
    for i in range(1, 4):
        bar.update(i, {"loss": 1.0 / i})
    bar.finish({"loss": 0.25})
    text = out.getvalue()
    assert text.count("\r") == 4 and "ETA:" in text and "loss: 0.5000" in text
    assert text.endswith("loss: 0.2500\x1b[K\n")


# ------------------------------------------------------------------------- callbacks
def test_early_stopping_restores_best_weights():
    X, y = blobs(200, seed=1)
    model = mlp()
    stop = fnn.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    # a learning rate far too high makes the validation loss worsen after a few epochs
    hist = model.fit(X[:150], y[:150], optimizer=fnn.SGD(model.parameters(), lr=3.0), epochs=50,
                     validation_data=(X[150:], y[150:]), callbacks=[stop], verbose=0)
    losses = hist.history["val_loss"]
    assert stop.stopped_epoch is not None and len(losses) < 50
    best = int(np.nanargmin(losses))
    assert len(losses) == best + 3                        # patience 2 after the best epoch
    assert model.evaluate(X[150:], y[150:])["loss"] == pytest.approx(losses[best], rel=1e-6)


def test_early_stopping_on_a_metric_fit_does_not_report():
    X, y = blobs(60)
    model = mlp()
    before = weights(model)
    with pytest.raises(ValueError, match="monitors 'val_loss'.*pass validation_data"):
        model.fit(X, y, callbacks=[fnn.EarlyStopping()], verbose=0)
    assert same(before, weights(model))


def test_model_checkpoint_saves_each_epoch_and_best_only(tmp_path):
    X, y = blobs(120)
    model = mlp()
    every = fnn.ModelCheckpoint(tmp_path / "m-{epoch:02d}.fnn", monitor="loss")
    best = fnn.ModelCheckpoint(tmp_path / "best.fnn", monitor="val_accuracy", save_best_only=True)
    model.fit(X[:90], y[:90], epochs=3, validation_data=(X[90:], y[90:]), callbacks=[every, best],
              verbose=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.fnn", "m-01.fnn", "m-02.fnn", "m-03.fnn"]
    last = fnn.load(tmp_path / "m-03.fnn")
    np.testing.assert_array_equal(last.predict(X), model.predict(X))


def test_terminate_on_nan(capsys):
    X, y = blobs(200)
    X[:, 0] *= 1e30                                        # finite data, exploding activations
    model = mlp()
    hist = model.fit(X, y, optimizer=fnn.SGD(model.parameters(), lr=10.0), epochs=5, batch_size=20,
                     callbacks=[fnn.TerminateOnNaN()], verbose=0)
    assert len(hist.epoch) == 1 and not np.isfinite(hist.history["loss"][0])
    assert "stopping training" in capsys.readouterr().err


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case,err,msg", [
    ("wide", ValueError, "X has shape \\(60, 12\\).*expected input with 10 features"),
    ("label", ValueError, "label 3 at index 5 is outside \\[0, 3\\); the model has 3 outputs"),
    ("nan", ValueError, "X contains nan at index \\(7, 2\\); remove or impute"),
    ("length", ValueError, "X has 60 samples but y has shape \\(59,\\)"),
    ("float-labels", TypeError, "integer class labels, got 2.5 at index 0; CrossEntropyLoss takes one whole-number"),
    ("string-labels", TypeError, "integer class labels for CrossEntropyLoss, got <U21; use y.astype"),
    ("val-label", ValueError, "label -1 at index 0 is outside"),
    ("optimizer", ValueError, "unknown optimizer 'sgdd'"),
    ("foreign-optimizer", ValueError, "updates none of this model's parameters"),
    ("batch", ValueError, "batch_size must be a positive int, got 0"),
    ("verbose", ValueError, "verbose must be 0, 1 or 2"),
])
def test_bad_fit_input_raises_and_leaves_weights_unchanged(case, err, msg):
    X, y = blobs(60)
    model = mlp()
    kw = dict(epochs=2, verbose=0)
    if case == "wide":
        X = np.hstack([X, X[:, :2]])
    elif case == "label":
        y = y.copy()
        y[5] = 3
    elif case == "nan":
        X = X.copy()
        X[7, 2] = np.nan
    elif case == "length":
        y = y[:59]
    elif case == "float-labels":
        y = y.astype(np.float32)
        y[0] = 2.5
    elif case == "string-labels":
        y = y.astype(str)
    elif case == "val-label":
        kw["validation_data"] = (X[:5], -np.ones(5, np.int64))
    elif case == "optimizer":
        kw["optimizer"] = "sgdd"
    elif case == "foreign-optimizer":
        kw["optimizer"] = fnn.SGD(mlp().parameters(), lr=0.1)
    elif case == "batch":
        kw["batch_size"] = 0
    elif case == "verbose":
        kw["verbose"] = 3
    before = weights(model)
    with pytest.raises(err, match=msg):
        model.fit(X, y, **kw)
    assert same(before, weights(model))


def test_predict_and_evaluate_leave_the_model_alone():
    X, y = blobs(60)
    model = mlp()
    model.train()
    before = weights(model)
    model.predict(X, batch_size=7)
    with pytest.raises(ValueError, match="pass loss="):
        model.evaluate(X, y)
    model.evaluate(X, y, loss="cross_entropy", batch_size=7)
    assert same(before, weights(model)) and model.training
    # (batches of 7 end in one of 4 rows, which the GEMM sums in another order than 60 rows:
    # a rounding's difference, ~1e-8 here, which rtol alone fails where outputs cancel to ~0.04)
    np.testing.assert_allclose(model.predict(X, batch_size=7), model.predict(X), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------- optimizers
@pytest.mark.parametrize("make,msg", [
    (lambda p: fnn.SGD(p, lr=-0.1), "invalid learning rate lr -0.1"),
    (lambda p: fnn.SGD(p, lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda p: fnn.SGD(p, lr=0.1, momentum=-1), "invalid momentum -1.0"),
    (lambda p: fnn.Adam(p, betas=(0.9, 1.0)), "invalid beta2 1.0; it must be in \\[0, 1\\)"),
    (lambda p: fnn.Adam(p, eps=-1e-8), "invalid eps"),
    (lambda p: fnn.AdamW(p, lr=float("nan")), "lr must be finite"),
    (lambda p: fnn.RMSprop(p, alpha=-0.5), "invalid alpha"),
    (lambda p: fnn.SGD([], lr=0.1), "empty parameter list"),
    (lambda p: fnn.SGD(p + p, lr=0.1), "appears more than once"),
    (lambda p: fnn.SGD(p, lr=0.1, momentun=0.9), "unexpected keyword|unknown hyper-parameter"),
])
def test_invalid_hyper_parameters(make, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        make(mlp().parameters())


def test_optimizer_state_dict_round_trip_resumes_exactly():
    X, y = blobs()
    a = mlp()
    opt_a = fnn.Adam(a.parameters(), lr=1e-2)
    a.fit(X, y, optimizer=opt_a, epochs=1, shuffle=False, verbose=0)
    b = mlp()
    b.load_state_dict(a.state_dict())
    opt_b = fnn.Adam(b.parameters(), lr=1e-2)
    opt_b.load_state_dict(opt_a.state_dict())
    for m, o in ((a, opt_a), (b, opt_b)):
        m.fit(X, y, optimizer=o, epochs=1, shuffle=False, verbose=0)
    assert same(weights(a), weights(b))
    sd = opt_a.state_dict()
    assert sd["state"][0]["step"] == 20 and sd["state"][0]["exp_avg"].shape == (16, 10)
    bad = {"state": {**sd["state"], 0: {**sd["state"][0], "exp_avg": np.zeros((3, 3))}},
           "param_groups": sd["param_groups"]}
    with pytest.raises(ValueError, match="state 'exp_avg' has shape \\(3, 3\\)"):
        opt_b.load_state_dict(bad)


def test_param_groups_with_their_own_learning_rates():
    model = mlp()
    w0 = weights(model)
    opt = fnn.SGD([{"params": model[0].parameters(), "lr": 0.0}, {"params": model[2].parameters()}], lr=0.1)
    X, y = blobs(60)
    model.fit(X, y, optimizer=opt, epochs=1, verbose=0)
    w1 = weights(model)
    assert np.array_equal(w0["0.weight"], w1["0.weight"]) and not np.array_equal(w0["2.weight"], w1["2.weight"])


@pytest.mark.parametrize("kind", ["float32", "float64", "list", "strided"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_predict_names_the_first_non_finite_value(kind, bad):
    # float32 arrays are checked inside the fused C++ call, everything else in NumPy first:
    # the same message either way, and no output.
    X, _ = blobs(40)
    model = mlp()
    X = X.copy()
    X[13, 1], X[20, 0] = bad, np.nan
    arg = {"float32": X, "float64": X.astype(np.float64), "list": X.tolist(),
           "strided": np.repeat(X, 2, axis=1)[:, ::2]}[kind]
    with pytest.raises(ValueError, match=rf"predict: X contains {bad} at index \(13, 1\); remove or impute"):
        model.predict(arg)
    with pytest.raises(ValueError, match=r"predict: X contains nan at index \(0, 0\)"):
        model.predict(np.full((1, X.shape[1]), np.nan, np.float32))


def test_predict_checks_the_input_not_the_overflow():
    # The fused path looks for NaN/inf in the first layer's output and scans X only when it
    # finds one: a bad input must still be found when the weights are all zero (inf·0 is NaN),
    # and a finite input whose product overflows must not be reported (the output is inf/NaN,
    # as the layers give it).
    X, _ = blobs(40)
    model = mlp()
    model.layers[0].weight.data[...] = 0.0
    X[29, 7] = -np.inf
    with pytest.raises(ValueError, match=r"predict: X contains -inf at index \(29, 7\)"):
        model.predict(X)
    model = mlp()
    model.layers[0].weight.data[...] = 1e30
    big = np.full((40, X.shape[1]), 1e30, np.float32)
    out = model.predict(big)
    with fnn.use_backend("numpy"), np.errstate(all="ignore"):
        want = model.eval()(big)
    assert not np.isfinite(out).all()
    np.testing.assert_array_equal(out, want)


def test_labels_as_whole_floats_or_a_column_train_as_integer_labels():
    # what pandas and Keras users pass: float64 class labels, (n, 1) label columns; and 1-D
    # targets for a one-output regression or binary model
    X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)

    def trained(labels, out=3, loss="cross_entropy"):
        fnn.manual_seed(0)
        m = fnn.Sequential(fnn.Linear(5, 8), fnn.ReLU(), fnn.Linear(8, out))
        m.fit(X, labels, loss=loss, epochs=2, batch_size=16, verbose=0)
        return np.concatenate([p.data.ravel() for p in m.parameters()])
    want = trained(y)
    assert np.array_equal(trained(y.astype(np.float64)), want)
    assert np.array_equal(trained(y.reshape(-1, 1)), want)
    assert np.array_equal(trained(y.astype(np.float32).reshape(-1, 1)), want)
    t = X[:, 2] * 2
    assert np.array_equal(trained(t, 1, "mse"), trained(t.reshape(-1, 1), 1, "mse"))
    b = (X[:, 3] > 0).astype(np.float32)
    assert np.array_equal(trained(b, 1, "bce_with_logits"), trained(b.reshape(-1, 1), 1, "bce_with_logits"))
    # the loss object takes them too
    logits = np.zeros((3, 2), np.float32)
    assert fnn.CrossEntropyLoss()(logits, np.array([0.0, 1.0, 1.0])) == fnn.CrossEntropyLoss()(logits, np.array([0, 1, 1]))


def test_predict_proba_follows_the_models_loss():
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    fnn.manual_seed(0)
    m = fnn.Sequential(fnn.Linear(4, 3))
    with pytest.raises(ValueError, match="pass loss="):
        m.predict_proba(X)
    m.fit(X, y, epochs=1, verbose=0)
    p = m.predict_proba(X)
    z = m.predict(X).astype(np.float64)
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(p, want / want.sum(1, keepdims=True), rtol=1e-6)
    b = fnn.Sequential(fnn.Linear(4, 1))
    b.fit(X, y.astype(np.float32), loss="bce_with_logits", epochs=1, verbose=0)
    np.testing.assert_allclose(b.predict_proba(X), 1 / (1 + np.exp(-b.predict(X).astype(np.float64))), rtol=1e-6)
    r = fnn.Sequential(fnn.Linear(4, 1))
    r.fit(X, X[:, 0], loss="mse", epochs=1, verbose=0)
    with pytest.raises(ValueError, match="MSELoss outputs values, not probabilities; use predict"):
        r.predict_proba(X)


def test_fit_steps_schedulers_given_as_callbacks():
    X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    m = fnn.Sequential(fnn.Linear(4, 2))
    opt = fnn.SGD(m.parameters(), lr=0.1)
    seen = []

    class Rate(fnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(opt.param_groups[0]["lr"])
    m.fit(X, y, optimizer=opt, epochs=5, verbose=0, callbacks=[fnn.StepLR(opt, step_size=2, gamma=0.5), Rate()])
    assert seen == [0.1, 0.05, 0.05, 0.025, 0.025]
    # ReduceLROnPlateau watches val_loss; a rate too small to move it (so no improvement)
    # is halved after `patience` epochs without one (eps=0: PyTorch skips changes below eps)
    opt2 = fnn.SGD(m.parameters(), lr=1e-9)
    plateau = fnn.ReduceLROnPlateau(opt2, patience=1, factor=0.5, eps=0.0)
    m.fit(X, y, optimizer=opt2, epochs=4, verbose=0, validation_split=0.25, callbacks=[plateau])
    assert plateau.get_last_lr() == [1e-9 * 0.5]
    with pytest.raises(ValueError, match="another optimizer"):
        m.fit(X, y, optimizer=fnn.SGD(m.parameters(), lr=0.1), epochs=1, verbose=0, callbacks=[fnn.StepLR(opt, 2)])
