"""The compiled plan (fastnn/plan.py, csrc/plan/) against the layer-by-layer path: the same
arithmetic, so the same weights, gradients, optimizer state, History and generator state, bit
for bit; independent of the thread count; rebuilt when the model changes; safe against bad
arguments; bounded in memory."""
import copy
import os
import pickle
import signal
import threading

import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core, plan


def data(n=250, d=12, k=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, k, n)


ACTS = [fnn.ReLU, fnn.Tanh, fnn.Sigmoid, fnn.GELU, lambda: fnn.LeakyReLU(0.1)]
ACT_IDS = ["relu", "tanh", "sigmoid", "gelu", "leaky"]


def make(act, seed=0, d=12, k=4, dtype=np.float32):
    fnn.manual_seed(seed)
    return fnn.Sequential(fnn.Linear(d, 16, dtype=dtype), act(), fnn.Linear(16, 8, dtype=dtype), act(),
                          fnn.Linear(8, k, bias=False, dtype=dtype))


OPTS = {
    "sgd": lambda p: fnn.SGD(p, lr=0.05),
    "sgd-momentum": lambda p: fnn.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd-nesterov": lambda p: fnn.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "sgd-dampening": lambda p: fnn.SGD(p, lr=0.05, momentum=0.9, dampening=0.3),
    "adam": lambda p: fnn.Adam(p, lr=1e-2),
    "adamw": lambda p: fnn.AdamW(p, lr=1e-2, weight_decay=0.1),
    "rmsprop": lambda p: fnn.RMSprop(p, lr=1e-3),
    "rmsprop-momentum": lambda p: fnn.RMSprop(p, lr=1e-3, alpha=0.9, momentum=0.5, weight_decay=1e-3),
}


def runs_as_plan(model, loss, opt, X, y):
    return plan.training(model, fnn.losses.get_loss(loss), opt, X, y, None) is not None


def assert_same_training(a, b):
    """Two (model, optimizer, history) results agree bit for bit."""
    (am, ao, ah), (bm, bo, bh) = a, b
    assert ah.history.keys() == bh.history.keys()         # every loss and accuracy, exactly (NaN too)
    for key in ah.history:
        np.testing.assert_array_equal(ah.history[key], bh.history[key], err_msg=key)
    for (k, p), q in zip(am.named_parameters(), bm.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=k)
        # the last batch's gradients stay in place, as after a manual loop
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=k + ".grad")
    sa, sb = ao.state_dict(), bo.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sa["state"]:
        assert sa["state"][i].keys() == sb["state"][i].keys()
        for name in sa["state"][i]:
            np.testing.assert_array_equal(sa["state"][i][name], sb["state"][i][name], err_msg=name)


def fit_both(build, make_opt, X, y, loss="cross_entropy", **kw):
    """fit through the plan and through the layers from the same start; asserts the first ran
    as a plan, returns both results and the generator's next draws after each."""
    result = []
    for use_plan in (True, False):
        model = build()
        opt = make_opt(model.parameters())
        if use_plan:
            assert runs_as_plan(model, loss, opt, X, y)
        fnn.manual_seed(7)
        hist = model.fit(X, y, loss=loss, optimizer=opt, verbose=0, use_plan=use_plan, **kw)
        result.append(((model, opt, hist), fnn.random.generator().random(4)))
    (a, ra), (b, rb) = result
    assert_same_training(a, b)
    np.testing.assert_array_equal(ra, rb)                  # the generator moved the same way
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt_name", OPTS)
@pytest.mark.parametrize("act", ACTS, ids=ACT_IDS)
def test_plan_fit_equals_layer_by_layer(act, opt_name, dtype):
    X, y = data(dtype=dtype)
    fit_both(lambda: make(act, dtype=dtype), OPTS[opt_name], X, y, epochs=3, batch_size=32)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_plan_regression_equals_layer_by_layer(reduction):
    X, _ = data()
    y = np.sin(X[:, :3]).astype(np.float32)
    fit_both(lambda: make(fnn.Tanh, k=3), OPTS["adam"], X, y, loss=fnn.MSELoss(reduction), epochs=3,
             batch_size=32, shuffle=False, validation_split=0.2)


@pytest.mark.parametrize("act", ACTS + [lambda: fnn.Softmax()], ids=ACT_IDS + ["softmax"])
def test_plan_output_activation_equals_layer_by_layer(act):
    # An activation after the last Linear (a sigmoid output with MSE, say): the loss gradient
    # is with respect to the activation's output and must go through its backward.
    X, _ = data()
    y = (np.sin(X[:, :3]) > 0).astype(np.float32)

    def build():
        fnn.manual_seed(0)
        return fnn.Sequential(fnn.Linear(12, 16), fnn.Tanh(), fnn.Linear(16, 3), act())
    fit_both(build, lambda p: fnn.SGD(p, lr=0.5, momentum=0.5), X, y, loss="mse", epochs=3, batch_size=32)


@pytest.mark.parametrize("loss,head", [("bce_with_logits", []), ("bce", [fnn.Sigmoid()])])
@pytest.mark.parametrize("labels", [1, 3])
def test_plan_binary_cross_entropy_equals_layer_by_layer(loss, head, labels):
    X, _ = data()
    y = (X[:, :labels] > 0).astype(np.float32)

    def build():
        fnn.manual_seed(0)
        return fnn.Sequential(fnn.Linear(12, 16), fnn.ReLU(), fnn.Linear(16, labels), *head)
    (_, _, h), _ = fit_both(build, lambda p: fnn.RMSprop(p, lr=1e-2, momentum=0.3), X, y, loss=loss, epochs=3,
                            batch_size=32, validation_split=0.2)
    assert 0.5 < h.history["accuracy"][-1] <= 1.0          # a fraction of outputs per sample


def test_plan_bce_raises_where_the_layers_do_and_keeps_the_steps_it_applied():
    # BCELoss on outputs outside [0, 1] (no sigmoid): both paths raise at the first batch whose
    # outputs leave the range, after the same updates.
    X, _ = data()
    y = (X[:, :2] > 0).astype(np.float32)
    X = np.abs(X) * 0.01   # the first outputs stay in [0, 1]; a large rate pushes them out
    result = []
    for use_plan in (True, False):
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(12, 2))
        model[0].weight.data = np.full((2, 12), 0.5, np.float32)
        model[0].bias.data = np.full(2, 0.5, np.float32)
        opt = fnn.SGD(model.parameters(), lr=50.0)
        fnn.manual_seed(7)
        with pytest.raises(ValueError, match="prob must be probabilities in \\[0, 1\\]"):
            model.fit(X, y, loss="bce", optimizer=opt, epochs=5, batch_size=16, verbose=0, use_plan=use_plan)
        result.append(model.state_dict())
    for k in result[0]:
        np.testing.assert_array_equal(result[0][k], result[1][k])


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
    # placements the MLP table could not hold
    "between-linear-and-act": lambda dt: fnn.Sequential(fnn.Linear(12, 8, dtype=dt), fnn.Dropout(0.3), fnn.ReLU(),
                                                        fnn.Linear(8, 4, dtype=dt)),
    "two-in-a-row": lambda dt: fnn.Sequential(fnn.Linear(12, 8, dtype=dt), fnn.ReLU(), fnn.Dropout(0.3),
                                              fnn.Dropout(0.2), fnn.Linear(8, 4, dtype=dt)),
    "on-the-output": lambda dt: fnn.Sequential(fnn.Linear(12, 4, dtype=dt), fnn.Dropout(0.3)),
}


class EveryBatch(fnn.Callback):
    """Watches every batch, so fit runs one batch per plan call instead of up to 64."""

    def on_batch_end(self, batch, logs=None):
        pass


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", DROPOUT_MODELS)
@pytest.mark.parametrize("per_call", ["many", "one"])
def test_plan_dropout_equals_layer_by_layer(name, dtype, per_call):
    # The plan draws each Dropout's uniforms from its copy of the generator, in the layers'
    # order: the same masks, so the same weights, history and generator state afterwards,
    # whether a call runs one batch or many.
    X, y = data(dtype=dtype)

    def build():
        fnn.manual_seed(0)
        return DROPOUT_MODELS[name](dtype)
    fit_both(build, lambda p: fnn.SGD(p, lr=0.1, momentum=0.9), X, y, epochs=3, batch_size=32,
             validation_split=0.1, callbacks=[EveryBatch()] if per_call == "one" else None)


def test_plan_dropout_really_drops():
    # With p = 0.9 on the hidden layer, training is noisy: its loss differs from p = 0's run
    # from the first batch on, while eval-mode outputs use no mask.
    X, y = data()
    losses = {}
    for p in (0.0, 0.9):
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(12, 64), fnn.ReLU(), fnn.Dropout(p), fnn.Linear(64, 4))
        h = model.fit(X, y, optimizer=fnn.SGD(model.parameters(), lr=0.0), epochs=1, batch_size=250, verbose=0)
        losses[p] = h.history["loss"][0]
        model.eval()
        np.testing.assert_array_equal(model.predict(X), model.forward(X))
    assert losses[0.0] != losses[0.9]


def test_plan_training_is_thread_count_independent():
    X, y = data(n=1000, d=64)
    weights = []
    try:
        for threads in (1, 2):
            fnn.set_num_threads(threads)
            fnn.manual_seed(0)
            model = fnn.Sequential(fnn.Dropout(0.1), fnn.Linear(64, 32), fnn.ReLU(), fnn.Dropout(0.3),
                                   fnn.Linear(32, 4))
            opt = fnn.Adam(model.parameters(), lr=0.01)
            assert runs_as_plan(model, "cross_entropy", opt, X, y)
            fnn.manual_seed(3)
            h = model.fit(X, y, optimizer=opt, epochs=2, batch_size=100, verbose=0)
            weights.append((model.state_dict(), h.history, model.predict(X)))
    finally:
        fnn.set_num_threads(2)
    (w1, h1, p1), (w2, h2, p2) = weights
    assert h1 == h2
    np.testing.assert_array_equal(p1, p2)
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plan_predict_and_eval_call_equal_the_layers(dtype):
    X, _ = data(n=300, dtype=dtype)
    model = fnn.Sequential(fnn.Linear(12, 32, dtype=dtype), fnn.GELU(), fnn.Dropout(0.5),
                           fnn.Linear(32, 5, dtype=dtype), fnn.Softmax(), fnn.Step(0.2))
    assert plan.inference(model, X) is not None                # dropout is the identity here
    model.eval()
    for batch_size in (1, 7, 256, 1000):
        np.testing.assert_array_equal(model.predict(X, batch_size=batch_size), model.forward(X))
    np.testing.assert_array_equal(model.predict(X[:1]), model.forward(X[:1]))
    np.testing.assert_array_equal(model(X), model.forward(X))
    net = model[:5]                                             # without the Step: it has a backward
    net(X)
    with pytest.raises(RuntimeError, match="compiled inference plan, which keeps nothing for backward"):
        net.backward(np.ones((300, 5), dtype))
    net.forward(X)
    net.backward(np.ones((300, 5), dtype))                      # forward() keeps what backward needs


def test_plan_takes_images_through_flatten():
    # (N, 8, 8) images through Flatten: the plan reads them in place, predict and fit agree
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 120)

    def build():
        fnn.manual_seed(0)
        return fnn.Sequential(fnn.Flatten(), fnn.Linear(64, 16), fnn.ReLU(), fnn.Linear(16, 3))
    (m, _, _), _ = fit_both(build, lambda p: fnn.Adam(p, lr=1e-2), X, y, epochs=2, batch_size=16)
    m.eval()
    np.testing.assert_array_equal(m.predict(X), m.forward(X))


RESIDUAL_MODELS = {
    "identity-shortcut": lambda: fnn.Sequential(
        fnn.Linear(12, 16), fnn.Residual(fnn.Sequential(fnn.Linear(16, 16), fnn.ReLU(), fnn.Linear(16, 16))),
        fnn.Tanh(), fnn.Linear(16, 4)),
    "linear-shortcut+dropout": lambda: fnn.Sequential(
        fnn.Residual(fnn.Sequential(fnn.Linear(12, 8), fnn.Dropout(0.3), fnn.GELU()),
                     fnn.Sequential(fnn.Dropout(0.2), fnn.Linear(12, 8))), fnn.Linear(8, 4)),
    "x+x": lambda: fnn.Sequential(fnn.Linear(12, 8), fnn.Residual(fnn.Identity()), fnn.Sigmoid(), fnn.Linear(8, 4)),
    "nested": lambda: fnn.Sequential(
        fnn.Linear(12, 8), fnn.Residual(fnn.Sequential(fnn.Residual(fnn.Linear(8, 8)), fnn.ReLU(),
                                                       fnn.Residual(fnn.Linear(8, 8), fnn.Linear(8, 8)))),
        fnn.Linear(8, 4)),
    "on-the-input": lambda: fnn.Sequential(fnn.Residual(fnn.Linear(12, 12)), fnn.Linear(12, 4)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", RESIDUAL_MODELS)
def test_plan_residual_equals_layer_by_layer(name, dtype):
    # A residual block's input has two consumers: in backward the first writes its gradient
    # and the second adds, which must give the layers' block + shortcut sum bit for bit.
    X, y = data(dtype=dtype)

    def build():
        fnn.manual_seed(0)
        m = RESIDUAL_MODELS[name]()
        return m if dtype == np.float32 else _as_dtype(m, dtype)
    (m, _, _), _ = fit_both(build, OPTS["adam"], X, y, epochs=2, batch_size=32)
    m.eval()
    np.testing.assert_array_equal(m.predict(X), m.forward(X))


def _as_dtype(model, dtype):
    """The same architecture and weights in float64."""
    from fastnn.gradcheck import float64_copy
    return float64_copy(model)


CNN_MODELS = {
    # the net of the convolutional-networks issue, on small images
    "conv-pool-linear": lambda: fnn.Sequential(
        fnn.Conv2d(1, 4, 3, padding=1), fnn.ReLU(), fnn.MaxPool2d(2), fnn.Conv2d(4, 6, 3, padding=1), fnn.ReLU(),
        fnn.MaxPool2d(2), fnn.Flatten(), fnn.Linear(54, 16), fnn.ReLU(), fnn.Linear(16, 4)),
    "batchnorm+dropout": lambda: fnn.Sequential(
        fnn.Conv2d(1, 4, 3, padding="same"), fnn.BatchNorm2d(4), fnn.ReLU(), fnn.AvgPool2d(2),
        fnn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False), fnn.BatchNorm2d(4), fnn.GELU(), fnn.Flatten(),
        fnn.Dropout(0.25), fnn.Linear(36, 8), fnn.BatchNorm1d(8), fnn.Tanh(), fnn.Linear(8, 4)),
    "resnet-block": lambda: fnn.Sequential(
        fnn.Conv2d(1, 4, 3, padding=1), fnn.BatchNorm2d(4), fnn.ReLU(),
        fnn.Residual(fnn.Sequential(fnn.Conv2d(4, 4, 3, padding=1), fnn.BatchNorm2d(4), fnn.ReLU(),
                                    fnn.Conv2d(4, 4, 3, padding=1), fnn.BatchNorm2d(4))), fnn.ReLU(),
        fnn.Residual(fnn.Sequential(fnn.Conv2d(4, 8, 3, stride=2, padding=1), fnn.BatchNorm2d(8)),
                     fnn.Sequential(fnn.Conv2d(4, 8, 1, stride=2), fnn.BatchNorm2d(8))), fnn.ReLU(),
        fnn.AdaptiveAvgPool2d(1), fnn.Flatten(), fnn.Linear(8, 4)),
    # max pools fused into the convolution before them: without a ReLU, with odd sizes, a
    # pool that is not 2×2, and 20 channels (the AVX-512 kernel's 12-row tiles)
    "conv-maxpool-fused": lambda: fnn.Sequential(
        fnn.Conv2d(1, 4, 3), fnn.MaxPool2d(2), fnn.Tanh(), fnn.Conv2d(4, 20, 3, padding=1), fnn.ReLU(),
        fnn.MaxPool2d(3, stride=2, padding=1), fnn.Flatten(), fnn.Linear(180, 4)),
    # max pools fused into the activation before them (LeakyReLU with a 3×3 pool, ReLU after
    # Tanh; not after Tanh, whose backward reads its output), ReLU and pools into BatchNorm
    # (ReLU and a 2×2 pool, a pool alone, ReLU and an overlapping 3×3 pool)
    "bn-activation-maxpool": lambda: fnn.Sequential(
        fnn.Conv2d(1, 4, 3, padding=1), fnn.BatchNorm2d(4), fnn.ReLU(), fnn.MaxPool2d(2),
        fnn.Conv2d(4, 6, 3, padding=1), fnn.BatchNorm2d(6), fnn.LeakyReLU(0.1), fnn.MaxPool2d(3, stride=2, padding=1),
        fnn.Tanh(), fnn.MaxPool2d(2), fnn.Flatten(), fnn.Linear(6, 4)),
    "bn1d-relu": lambda: fnn.Sequential(  # BatchNorm1d with its ReLU fused (rows of L = 1)
        fnn.Flatten(), fnn.Linear(144, 16), fnn.BatchNorm1d(16), fnn.ReLU(), fnn.Linear(16, 4)),
    "bn-relu-maxpool-variants": lambda: fnn.Sequential(
        fnn.Conv2d(1, 4, 3, padding=1), fnn.BatchNorm2d(4), fnn.MaxPool2d(2),
        fnn.Conv2d(4, 6, 3, padding=1), fnn.BatchNorm2d(6), fnn.ReLU(), fnn.MaxPool2d(3, stride=2, padding=1),
        fnn.Tanh(), fnn.ReLU(), fnn.MaxPool2d(2, stride=1), fnn.Flatten(), fnn.Linear(24, 4)),
    # strided convolutions over channels in 16s (the phase split's kernels with vectors over
    # channels): one with a BatchNorm after it, one with a max pool fused (its gradient written
    # by the pool into the phase split's wide rows)
    "strided-16": lambda: fnn.Sequential(
        fnn.Conv2d(1, 16, 3, padding=1), fnn.ReLU(), fnn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False),
        fnn.BatchNorm2d(32), fnn.ReLU(), fnn.Conv2d(32, 16, 3, stride=2, padding=1), fnn.ReLU(), fnn.MaxPool2d(3),
        fnn.Flatten(), fnn.Linear(16, 4)),
    "groups-dilation-maxpool-pad": lambda: fnn.Sequential(
        fnn.Conv2d(1, 6, 3, padding=2, dilation=2), fnn.LeakyReLU(0.1), fnn.Conv2d(6, 6, 3, groups=3, padding=1),
        fnn.Sigmoid(), fnn.MaxPool2d(3, stride=2, padding=1), fnn.Conv2d(6, 6, 1, groups=6),
        fnn.Flatten(), fnn.Linear(150, 4)),
}


def images(n=48, size=9, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, size, size)).astype(dtype), rng.integers(0, 4, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CNN_MODELS)
def test_plan_cnn_equals_layer_by_layer(name, dtype):
    # convolutions, pools and BatchNorm (its running statistics and counter included) give
    # the layers' bits, in training and in predict
    X, y = images(size=10 if name == "groups-dilation-maxpool-pad" else 12, dtype=dtype)

    def build():
        fnn.manual_seed(0)
        m = CNN_MODELS[name]()
        return m if dtype == np.float32 else _as_dtype(m, dtype)
    (m, _, _), (lm, _, _) = fit_both(build, OPTS["adam"], X, y, epochs=2, batch_size=10)
    for k, v in lm.state_dict().items():                    # buffers too (fit_both checked parameters)
        np.testing.assert_array_equal(m.state_dict()[k], v, err_msg=k)
    m.eval()
    np.testing.assert_array_equal(m.predict(X, batch_size=7), np.concatenate([m.forward(X[i:i + 7]) for i in range(0, 48, 7)]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plan_batchnorm_with_a_pool_in_groups_of_planes_gives_the_layers_bits(dtype):
    # BatchNorm with ReLU and a max pool fused runs its passes a few planes at a time (at most
    # 8192 values: 14 planes of 24 × 24, so 20 channels go as 14 + 6, each group's channels
    # taking their own statistics and parameters); a 3 × 3 pool of 5 × 5 planes after the
    # second BatchNorm (an overlapping pool, odd sizes)
    X, y = images(n=24, size=24, dtype=dtype)

    def build():
        fnn.manual_seed(0)
        m = fnn.Sequential(
            fnn.Conv2d(1, 20, 3, padding=1), fnn.BatchNorm2d(20), fnn.ReLU(), fnn.MaxPool2d(2),
            fnn.Conv2d(20, 6, 3, padding=1, stride=2), fnn.BatchNorm2d(6), fnn.MaxPool2d(3, stride=2, padding=1),
            fnn.Flatten(), fnn.Linear(54, 4))
        return m if dtype == np.float32 else _as_dtype(m, dtype)
    (m, _, _), (lm, _, _) = fit_both(build, OPTS["adam"], X, y, epochs=2, batch_size=10)
    for k, v in lm.state_dict().items():
        np.testing.assert_array_equal(m.state_dict()[k], v, err_msg=k)
    m.eval()
    np.testing.assert_array_equal(m.predict(X, batch_size=7), np.concatenate([m.forward(X[i:i + 7]) for i in range(0, 24, 7)]))


WINOGRAD_MODELS = {
    # channels in 16s: 3 × 3 stride-1 convolutions take Winograd on the vector paths; a 2 × 2 pool
    # after one is made in its output transform (an odd 5 × 5 output: the last row and column
    # of tiles are not pooled)
    "pooled": lambda: fnn.Sequential(
        fnn.Conv2d(1, 16, 3, padding=1), fnn.ReLU(), fnn.Conv2d(16, 32, 3), fnn.ReLU(), fnn.MaxPool2d(2),
        fnn.Conv2d(32, 16, 3, padding=1), fnn.MaxPool2d(2), fnn.Flatten(), fnn.Linear(64, 4)),
    # an overlapping pool fused after one: the input gradient's kernel chosen by its exact
    # density (two windows' values may land on one pixel)
    "overlapping-pool": lambda: fnn.Sequential(
        fnn.Conv2d(1, 16, 3, padding=1), fnn.ReLU(), fnn.Conv2d(16, 16, 3, padding=1), fnn.ReLU(),
        fnn.MaxPool2d(3, stride=2, padding=1), fnn.Conv2d(16, 16, 3, padding=1), fnn.ReLU(), fnn.MaxPool2d(3, stride=1),
        fnn.Flatten(), fnn.Linear(256, 4)),
    # BatchNorm's dense input gradient: the input and weight gradients by Winograd too
    "batchnorm": lambda: fnn.Sequential(
        fnn.Conv2d(1, 16, 3, padding=1), fnn.BatchNorm2d(16), fnn.ReLU(), fnn.Conv2d(16, 32, 3, padding=1),
        fnn.BatchNorm2d(32), fnn.ReLU(), fnn.MaxPool2d(2), fnn.Flatten(), fnn.Linear(1152, 4)),
}


@pytest.mark.parametrize("name", WINOGRAD_MODELS)
def test_plan_winograd_convolutions_give_the_layers_bits(name):
    X, y = images(size=12)

    def build():
        fnn.manual_seed(0)
        return WINOGRAD_MODELS[name]()
    (m, _, _), _ = fit_both(build, OPTS["adam"], X, y, epochs=2, batch_size=10)
    m.eval()
    X[3] = 0.0  # ties: every window's values equal
    for bs in (1, 7, 48):  # (batch 1: the output channels split between the threads)
        want = np.concatenate([m.forward(X[i:i + bs]) for i in range(0, len(X), bs)])
        np.testing.assert_array_equal(m.predict(X, batch_size=bs), want)
    # the features before the Linear layer: a sample's bits alone or in a batch
    features = m[:-1]
    np.testing.assert_array_equal(np.concatenate([features.forward(X[i:i + 1]) for i in range(5)]), features.forward(X[:5]))
    # training on batches of one (each thread a block of the output channels, a fused pool's
    # argmax among them)
    fit_both(build, OPTS["adam"], X[:6], y[:6], epochs=1, batch_size=1)


@pytest.mark.parametrize("bias", [-0.2, 0.2])
def test_a_fused_relus_mask_counts_in_the_density_that_picks_the_kernels(bias):
    # conv2d_backward picks the weight gradient's kernel by the density of the output gradient
    # (at most half nonzero: the sparse kernel, the direct sum's bits; else Winograd's own
    # rounding). The plan's Conv2d+ReLU counted the gradient before ReLU's mask, the layers
    # after it: with most outputs negative (bias -0.2) the plan took Winograd, the layers the
    # sparse kernel, and the weights differed in the last bit (found by fuzz/run.py)
    X, y = images(size=12)

    def build():
        fnn.manual_seed(0)
        m = fnn.Sequential(fnn.Conv2d(1, 16, 3, padding=1), fnn.ReLU(), fnn.Conv2d(16, 32, 3, padding=1), fnn.ReLU(),
                           fnn.Flatten(), fnn.Linear(32 * 144, 4))
        m[2].bias.data[...] = bias
        return m
    fit_both(build, OPTS["sgd"], X, y, epochs=1, batch_size=16)


@pytest.mark.parametrize("threads", [1, 2])
def test_predict_of_one_image_follows_weights_changed_in_place(threads):
    # At batch 1 each thread keeps the Winograd transform of its half of a convolution's
    # weight between calls (conv.cpp, block_u; on one thread, of the whole weight): a weight
    # changed in place (same array, new values), by a user or a training step, must give the
    # new result, not the kept one.
    fnn.set_num_threads(threads)
    X, y = images(n=8, size=12)
    fnn.manual_seed(0)
    m = WINOGRAD_MODELS["pooled"]().eval()
    conv = m[2]
    first = m.predict(X[:1])
    conv.weight.data[5] *= -0.5           # output channel 5: in the first thread's half
    conv.weight.data[-1, -1, -1, -1] = 3.0  # the last value of the second thread's half
    fnn.manual_seed(0)
    fresh = WINOGRAD_MODELS["pooled"]().eval()
    fresh.load_state_dict(m.state_dict())
    after = m.predict(X[:1])
    assert not np.array_equal(after, first)
    np.testing.assert_array_equal(after, fresh.predict(X[:1]))
    m.fit(X, y, optimizer=fnn.SGD(m.parameters(), lr=0.1), epochs=1, batch_size=4, verbose=0)
    fresh.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(m.eval().predict(X[:1]), fresh.predict(X[:1]))
    # a convolution too wide to keep (each thread's half: 128 × 64 × 9 weights): transformed
    # on every call, the same bits as at batch 2 (where one transform serves both threads)
    fnn.manual_seed(0)
    wide = fnn.Sequential(fnn.Conv2d(1, 64, 3, padding=1), fnn.ReLU(), fnn.Conv2d(64, 256, 3, padding=1),
                          fnn.Flatten(), fnn.Linear(256 * 144, 4)).eval()
    for _ in range(2):
        np.testing.assert_array_equal(wide.predict(X[:1]), wide.predict(X[:2])[:1])
        wide[2].weight.data[7] += 0.25


def assert_same_on_1_and_2_threads(name, X, y, make_opt, batch_size):
    """Trains CNN_MODELS[name] for 2 epochs on 1 and on 2 threads: the weights, the history and
    predict (of all of X and of its first row) must be the same bits. Returns the last model."""
    results = []
    try:
        for threads in (1, 2):
            fnn.set_num_threads(threads)
            fnn.manual_seed(0)
            m = CNN_MODELS[name]()
            fnn.manual_seed(1)
            h = m.fit(X, y, optimizer=make_opt(m.parameters()), epochs=2, batch_size=batch_size, verbose=0)
            results.append((m.state_dict(), h.history, m.eval().predict(X), m.predict(X[:1])))
    finally:
        fnn.set_num_threads(2)
    (w1, h1, p1, q1), (w2, h2, p2, q2) = results
    assert h1 == h2
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(q1, q2)
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k], err_msg=k)
    return m


def test_plan_cnn_is_thread_count_independent():
    X, y = images(n=40, size=12)
    assert_same_on_1_and_2_threads("resnet-block", X, y, lambda p: fnn.SGD(p, lr=0.05, momentum=0.9), 16)


def test_max_pools_are_fused_into_convolutions_and_thread_count_independent():
    # A max pool right after a convolution runs inside its op, chunk by chunk of 8 samples
    # (batches of 37: four whole chunks and a short one, chunks spread over threads).
    X, y = images(n=74, size=12)
    m = assert_same_on_1_and_2_threads("conv-maxpool-fused", X, y, fnn.Adam, 37)
    core = plan.inference(m, X).core
    core.set_profiling(True)
    assert [t[0] for t in core.op_times()][:4] == ["conv2d+maxpool2d", "tanh", "conv2d+relu+maxpool2d", "linear"]


def test_max_pools_and_relus_are_fused_into_activations_and_batchnorm_and_thread_count_independent():
    X, y = images(n=74, size=12)
    m = assert_same_on_1_and_2_threads("bn-activation-maxpool", X, y, fnn.Adam, 37).train()
    core = plan.training(m, fnn.CrossEntropyLoss(), fnn.Adam(m.parameters()), X, y, None).compiled.core
    core.set_profiling(True)
    # (in training each convolution is linked to its BatchNorm: it takes the statistics' row
    # moments in forward and the BatchNorm's input gradient chunk by chunk in backward)
    assert [t[0] for t in core.op_times()] == [
        "conv2d+bn-stats/dx", "batchnorm+relu+maxpool2d", "conv2d+bn-stats/dx", "batchnorm", "activation+maxpool2d",
        "tanh", "maxpool2d", "linear"]
    m = assert_same_on_1_and_2_threads("bn-relu-maxpool-variants", X, y, fnn.Adam, 37).train()
    core = plan.training(m, fnn.CrossEntropyLoss(), fnn.Adam(m.parameters()), X, y, None).compiled.core
    core.set_profiling(True)
    assert [t[0] for t in core.op_times()] == [
        "conv2d+bn-stats/dx", "batchnorm+maxpool2d", "conv2d+bn-stats/dx", "batchnorm+relu+maxpool2d", "tanh",
        "relu+maxpool2d", "linear"]
    core = plan.inference(m.eval(), X).core
    core.set_profiling(True)
    assert [t[0] for t in core.op_times()][:4] == ["conv2d", "batchnorm+maxpool2d", "conv2d", "batchnorm+relu+maxpool2d"]


@pytest.mark.parametrize("threads", [1, 2])
def test_the_benchmarks_cnn_trains_the_layers_bits(threads):
    # fastnn.cnn_models' CNN on 28×28 images: channels in 16s take the direct kernel, the
    # pools' gradients are scattered into the convolutions' layout and the 32 → 64
    # convolution's weight gradient, three quarters zeros below its pool, takes the sparse
    # kernel; the weights after training are the layers' bits
    from fastnn import cnn_models
    X, y = images(n=40, size=28)
    try:
        fnn.set_num_threads(threads)

        def build():
            fnn.manual_seed(0)
            return cnn_models.build("cnn")
        fit_both(build, OPTS["adam"], X, y, epochs=1, batch_size=20)
    finally:
        fnn.set_num_threads(2)


@pytest.mark.parametrize("simd", _core.simd_available())
@pytest.mark.parametrize("name", ["conv-pool-linear", "bn-activation-maxpool", "resnet-block"])
def test_fused_cnn_ops_give_the_layers_bits_on_every_simd_path(name, simd):
    # The fused ops' vector and scalar builds: a pool's gradient with ReLU's mask in one pass
    # (conv2d+relu+maxpool2d), convolutions linked to their BatchNorm (row moments, input
    # gradient by chunks), on each SIMD path the plan gives that path's layer bits.
    _core.set_simd_path(simd)
    X, y = images(n=24, size=12)

    def build():
        fnn.manual_seed(0)
        return CNN_MODELS[name]()
    fit_both(build, OPTS["adam"], X, y, epochs=1, batch_size=10)


def test_a_relu_after_a_residual_block_runs_inside_its_add():
    # (its bits: test_plan_cnn_equals_layer_by_layer and the SIMD-path test above, "resnet-block")
    fnn.manual_seed(0)
    m = CNN_MODELS["resnet-block"]()
    X, y = images(n=8, size=12)
    for compiled in (plan.training(m, fnn.CrossEntropyLoss(), fnn.Adam(m.parameters()), X, y, None).compiled,
                     plan.inference(m.eval(), X)):
        compiled.core.set_profiling(True)
        names = [t[0] for t in compiled.core.op_times()]
        assert names.count("add+relu") == 2 and "add" not in names and "relu" not in names, names


def test_cnn_predict_of_one_image_is_thread_count_independent():
    # One image on two threads: each convolution (with its ReLU and pool) gives each thread
    # whole blocks of output channels. Its bits are those of one thread and of the layers, and
    # its features (before the Linear layers, whose one-row product is another kernel) those
    # of the same image in a batch.
    from fastnn import cnn_models
    X = images(n=5, size=28)[0]
    outs, features = [], []
    try:
        for threads in (2, 1):
            fnn.set_num_threads(threads)
            fnn.manual_seed(0)
            m = cnn_models.build("cnn").eval()
            outs += [m.predict(X[:1]), m.forward(X[:1])]
            assert isinstance(m[6], fnn.Flatten)
            features += [m[:7].predict(X[:1]), m[:7].predict(X)[:1], m[:7].forward(X[:1])]
            core = plan.inference(m, X[:1]).core
            core.set_profiling(True)
            assert [t[0] for t in core.op_times()][:2] == ["conv2d+relu+maxpool2d"] * 2
    finally:
        fnn.set_num_threads(2)
    for o in outs[1:]:
        np.testing.assert_array_equal(outs[0], o)
    for f in features[1:]:
        np.testing.assert_array_equal(features[0], f)


@pytest.mark.parametrize("use_plan", [True, False])
def test_a_setting_changed_between_fits_is_used(use_plan):
    # The plan is rebuilt when a layer setting changes: LeakyReLU's slope and Dropout's p set
    # between two fits give the layers' weights, and eval-mode outputs follow too.
    X, y = data()
    results = []
    for up in (use_plan, False):
        fnn.manual_seed(0)
        model = fnn.Sequential(fnn.Linear(12, 16), fnn.LeakyReLU(0.01), fnn.Dropout(0.1), fnn.Linear(16, 4))
        opt = fnn.SGD(model.parameters(), lr=0.1)
        fnn.manual_seed(1)
        model.fit(X, y, optimizer=opt, epochs=1, verbose=0, use_plan=up)
        before = model.predict(X)
        model[1].negative_slope = 0.5
        model[2].p = 0.4
        model.eval()
        after = model.predict(X)
        np.testing.assert_array_equal(after, model.forward(X))
        assert not np.array_equal(before, after)
        model.fit(X, y, optimizer=opt, epochs=2, verbose=0, use_plan=up)
        results.append(model.state_dict())
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k], err_msg=k)


def test_slicing_shares_layers_and_parameters():
    X, y = data()
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(12, 16), fnn.ReLU(), fnn.Linear(16, 4))
    opt = fnn.SGD(model.parameters(), lr=0.1, momentum=0.5)
    model.fit(X, y, optimizer=opt, epochs=1, verbose=0)
    features = model[:2]
    assert features[0] is model[0] and features[0].weight is model[0].weight
    assert model[0].weight._store is model[2].weight._store       # nothing moved
    model.eval()
    np.testing.assert_array_equal(features.predict(X), model[1].forward(model[0].forward(X)))
    # the original keeps training (its optimizer included) and the slice sees the new weights
    assert runs_as_plan(model, "cross_entropy", opt, X, y)
    model.fit(X, y, optimizer=opt, epochs=1, verbose=0)
    np.testing.assert_array_equal(features.predict(X), model[1].forward(model[0].forward(X)))
    np.testing.assert_allclose(features.predict(X), np.maximum(X @ model[0].weight.data.T + model[0].bias.data, 0),
                               rtol=1e-5, atol=1e-6)  # (NumPy's BLAS sums in its own order)
    # a slice trains too, through the plan, and its updates are the original's
    head = model[2:]
    opt2 = fnn.Adam(head.parameters(), lr=1e-2)
    H = features.predict(X)
    assert runs_as_plan(head, "cross_entropy", opt2, H, y)
    w_before = model[0].weight.data.copy()
    head.fit(H, y, optimizer=opt2, epochs=1, verbose=0)
    np.testing.assert_array_equal(model[2].weight.data, head[0].weight.data)
    np.testing.assert_array_equal(model[0].weight.data, w_before)


def test_slice_fit_equals_layer_by_layer():
    X, y = data()

    def build():
        fnn.manual_seed(0)
        return fnn.Sequential(fnn.Linear(12, 16), fnn.ReLU(), fnn.Linear(16, 8), fnn.Tanh(), fnn.Linear(8, 4))[2:]
    H = np.tanh(X[:, :16] if X.shape[1] >= 16 else np.tile(X, 2)[:, :16]).astype(np.float32)
    fit_both(build, OPTS["rmsprop-momentum"], H, y, epochs=2, batch_size=20)


class Doubler(fnn.Layer):
    """A user's own layer: it has no lower(), so a model holding it runs layer by layer."""

    def forward(self, x):
        return 2 * np.asarray(x, np.float32)

    def backward(self, grad_out):
        return 2 * grad_out


def test_a_user_defined_layer_falls_back_to_the_layers():
    X, y = data()
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(12, 8), Doubler(), fnn.ReLU(), fnn.Linear(8, 4))
    opt = fnn.SGD(model.parameters(), lr=0.05)
    assert not runs_as_plan(model, "cross_entropy", opt, X, y)
    assert plan.inference(model, X) is None
    h = model.fit(X, y, optimizer=opt, epochs=2, verbose=0)
    assert h.history["loss"][1] < h.history["loss"][0]
    model.eval()
    np.testing.assert_array_equal(model.predict(X), model.forward(X))


def test_user_subclasses_of_losses_and_optimizers_fall_back():
    class MyLoss(fnn.CrossEntropyLoss):
        pass

    class MySGD(fnn.SGD):
        pass
    X, y = data()
    model = make(fnn.ReLU)
    assert not runs_as_plan(model, MyLoss(), fnn.SGD(model.parameters(), lr=0.1), X, y)
    assert not runs_as_plan(model, "cross_entropy", MySGD(model.parameters(), lr=0.1), X, y)
    model.fit(X, y, loss=MyLoss(), optimizer=MySGD(model.parameters(), lr=0.1), verbose=0)


def test_numpy_backend_never_runs_a_plan():
    X, y = data()
    with fnn.use_backend("numpy"):
        model = make(fnn.ReLU)
        assert plan.inference(model, X) is None
        assert not runs_as_plan(model, "cross_entropy", fnn.SGD(model.parameters(), lr=0.1), X, y)


def test_copies_and_pickles_own_their_buffers_and_plans():
    X, y = data()
    model = make(fnn.ReLU)
    model.eval()
    out = model.predict(X)                                        # compiles a plan
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        params = clone.parameters()
        assert all(p._store is params[0]._store for p in params)
        assert params[0]._store is not model.parameters()[0]._store
        np.testing.assert_array_equal(clone.predict(X), out)
        clone.train()
        clone.fit(X, y, optimizer=fnn.SGD(clone.parameters(), lr=0.5), epochs=1, verbose=0)
        assert not np.array_equal(clone.predict(X), out)
        np.testing.assert_array_equal(model.predict(X), out)      # the original is untouched


# ---------------------------------------------------------------- random models, bit for bit
def random_model(rng, d, k, dtype, batchnorm=True):
    """batchnorm=False: a BatchNorm1d drawn becomes an Identity (training batches of one sample)."""
    layers, width = [], d
    if rng.random() < 0.3:
        layers.append(fnn.Dropout(float(rng.choice([0.1, 0.5]))))
    for _ in range(int(rng.integers(1, 4))):
        out = int(rng.integers(1, 24))
        layers.append(fnn.Linear(width, out, bias=bool(rng.random() < 0.8), dtype=dtype))
        width = out
        for _ in range(int(rng.integers(0, 3))):
            kind = rng.integers(0, 10)
            if kind == 9:
                layers.append(fnn.BatchNorm1d(width, dtype=dtype) if batchnorm else fnn.Identity())
            elif kind == 7:  # a residual block keeping the width
                layers.append(fnn.Residual(fnn.Sequential(fnn.Linear(width, width, dtype=dtype), fnn.Tanh())))
            elif kind == 8:  # one changing it, through a shortcut with a Dropout
                out = int(rng.integers(1, 24))
                layers.append(fnn.Residual(fnn.Sequential(fnn.Linear(width, out, dtype=dtype), fnn.ReLU()),
                                           fnn.Sequential(fnn.Dropout(0.2), fnn.Linear(width, out, dtype=dtype))))
                width = out
            else:
                layers.append([fnn.ReLU(), fnn.Tanh(), fnn.Sigmoid(), fnn.GELU(), fnn.LeakyReLU(float(rng.uniform(0, 0.3))),
                               fnn.Dropout(float(rng.uniform(0.05, 0.6))), fnn.Flatten()][kind])
    layers.append(fnn.Linear(width, k, dtype=dtype))
    return fnn.Sequential(layers)


@pytest.mark.parametrize("seed", range(40))
def test_random_models_plan_equals_layers(seed):
    check_random_model(seed)


def check_random_model(seed):
    """A random MLP (random_model), loss, optimizer and batch size from the seed: fit through
    the plan and through the layers give the same bits, and so do predict and forward."""
    rng = np.random.default_rng(seed)
    dtype = [np.float32, np.float64][seed % 2]
    n, d, k = int(rng.integers(1, 90)), int(rng.integers(1, 20)), int(rng.integers(1, 6))
    X = rng.standard_normal((n, d)).astype(dtype)
    loss = ["cross_entropy", "mse", "bce_with_logits"][seed % 3]
    y = rng.integers(0, k, n) if loss == "cross_entropy" else (rng.random((n, k)) < 0.5).astype(dtype)
    opt_name = list(OPTS)[int(rng.integers(0, len(OPTS)))]
    batch_size = int(rng.integers(1, 2 * n + 2))
    arch_seed = int(rng.integers(0, 2**31))

    def build():
        fnn.manual_seed(arch_seed)
        return random_model(np.random.default_rng(arch_seed), d, k, dtype,
                            batchnorm=min(n, batch_size) > 1 and n % batch_size != 1)
    (m, _, _), _ = fit_both(build, OPTS[opt_name], X, y, loss=loss, epochs=2, batch_size=batch_size,
                            shuffle=bool(seed % 4))
    m.eval()
    bs = max(1, batch_size // 2)   # a row's output can depend on the batch it is in (the GEMM path)
    np.testing.assert_array_equal(m.predict(X, batch_size=bs),
                                  np.concatenate([m.forward(X[i:i + bs]) for i in range(0, n, bs)]))


# ---------------------------------------------------------------- Ctrl-C
class InterruptSoon(fnn.Callback):
    """Sends this process SIGINT a moment after training starts."""

    def on_train_begin(self, logs=None):
        self.timer = threading.Timer(0.15, os.kill, (os.getpid(), signal.SIGINT))
        self.timer.start()


class StopAfter(fnn.Callback):
    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen >= self.n:
            self.model.stop_training = True


@pytest.mark.parametrize("use_plan", [True, False])
def test_ctrl_c_leaves_weights_and_optimizer_state_consistent(use_plan):
    # Ctrl-C stops fit after the batch in progress: the Adam step counter equals the updates
    # applied, so the weights equal a run of exactly that many batches.
    X, y = data(n=4000, d=64)
    fnn.manual_seed(0)
    model = make(fnn.ReLU, d=64)
    opt = fnn.Adam(model.parameters(), lr=1e-3)
    fnn.manual_seed(5)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, optimizer=opt, epochs=1000, batch_size=16, verbose=0, use_plan=use_plan,
                  callbacks=[InterruptSoon()])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    steps = opt.state_dict()["state"][0]["step"]
    assert steps > 0
    fnn.manual_seed(0)
    replay = make(fnn.ReLU, d=64)
    ropt = fnn.Adam(replay.parameters(), lr=1e-3)
    fnn.manual_seed(5)
    replay.fit(X, y, optimizer=ropt, epochs=1000, batch_size=16, verbose=0, use_plan=use_plan,
               callbacks=[StopAfter(steps)])
    assert ropt.state_dict()["state"][0]["step"] == steps
    for k, v in replay.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)


# ---------------------------------------------------------------- memory
def test_workspaces_are_sized_by_the_data_and_freed():
    X, y = data(n=100, d=12)
    model = make(fnn.ReLU)
    opt = fnn.SGD(model.parameters(), lr=0.1)
    runner = plan.training(model, fnn.CrossEntropyLoss(), opt, X, y, None)
    runner.run(np.arange(100, dtype=np.int64), 10**6, 0, 1)
    # 100 rows (not 10**6) of every value, gradient and gathered input: a few tens of KB
    assert 0 < runner.compiled.core.workspace_bytes < 64 * 1024
    runner.release()
    assert runner.compiled.core.workspace_bytes == 0
    model.fit(X, y, optimizer=opt, batch_size=10**6, verbose=0)   # returns at once
    # predict through a wide net: 1024 rows at a time need 34 MB, freed when the call ends; by
    # default the plan takes as many rows as fit in 8 MiB and keeps that workspace
    wide = fnn.Sequential(fnn.Linear(12, 4096), fnn.ReLU(), fnn.Linear(4096, 10))
    Xw = np.random.default_rng(0).standard_normal((2000, 12)).astype(np.float32)
    out = wide.predict(Xw, batch_size=1024)
    c = plan.inference(wide, Xw)
    assert c.core.workspace_bytes == 0
    wide.eval()
    np.testing.assert_array_equal(out, np.concatenate([wide.forward(Xw[i:i + 1024]) for i in range(0, 2000, 1024)]))
    out = wide.predict(Xw)
    c = plan.inference(wide, Xw)              # (eval() above changed the model: a new plan)
    rows = c.core.auto_rows
    assert rows == (8 << 20) // ((4096 + 4096 + 10) * 4)
    assert 0 < c.core.workspace_bytes <= 8 << 20
    np.testing.assert_array_equal(out, np.concatenate([wide.forward(Xw[i:i + rows]) for i in range(0, 2000, rows)]))
    small = make(fnn.ReLU)
    small.predict(X[:1])
    assert 0 < plan.inference(small, X[:1]).core.workspace_bytes <= 8 << 20  # kept for batch 1


# ---------------------------------------------------------------- the binding's checks
def built_plan(training=True):
    model = make(fnn.ReLU)
    store = model.parameters()[0]._store
    return _core.Plan(store.data, store.grad, training), store


def test_bad_offsets_and_sizes_are_value_errors():
    p, store = built_plan()
    n = store.data.size
    p.set_input(12)
    before = store.data.copy()
    for args, msg in [
        ((0, n, -1, 12, 16, 1), "the weight at offset .* does not fit the parameter buffer"),
        ((0, n - 10, -1, 12, 16, 1), "does not fit the parameter buffer"),
        ((0, -5, -1, 12, 16, 1), "does not fit"),
        ((0, 0, n - 3, 12, 16, 1), "the bias at offset .* does not fit"),
        ((0, 2**62, -1, 12, 16, 1), "overflows|does not fit"),
        ((0, 0, -1, 12, 2**62, 1), "the weight size overflows"),
        ((0, 0, -1, 3, 4, 2**62), "overflows"),
        ((0, 0, -1, 13, 16, 1), "holds 12 values per sample, not 1 × 13"),
        ((5, 0, -1, 12, 16, 1), "slot 5 does not exist"),
        ((-1, 0, -1, 12, 16, 1), "slot -1 does not exist"),
        ((0, 0, -1, 0, 16, 1), "sizes must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            p.linear(*args)
    for call, msg in [(lambda: p.activation(0, "nope"), "unknown activation 'nope'"),
                      (lambda: p.activation(0, "step", 0.0), "'step' has no backward"),
                      (lambda: p.softmax(0, 5), "rows of C=5 do not tile"),
                      (lambda: p.dropout(0, 1.0), "p must be in \\[0, 1\\)"),
                      (lambda: p.add(0, p.linear(0, 0, -1, 12, 3, 1)), "hold 12 and 3 values")]:
        with pytest.raises(ValueError, match=msg):
            call()
    with pytest.raises(ValueError, match="dropout is the identity outside training"):
        built_plan(training=False)[0].dropout(0, 0.5)
    np.testing.assert_array_equal(store.data, before)


def test_bad_run_arguments_raise_and_change_nothing():
    p, store = built_plan()
    p.set_input(12)
    h = p.linear(0, 0, 192, 12, 16, 1)
    p.set_output(p.activation(h, "relu"))
    X, y = data()
    order = np.arange(250, dtype=np.int64)
    rng = fnn.random.pcg64_state()
    before = store.data.copy()
    good = dict(x=X, targets=y, order=order, batch_size=32, first_batch=0, n_batches=8, loss="cross_entropy",
                optimizer=[_core.plan_sgd(0, store.data.size, None, first=True, lr=0.1, momentum=0.0,
                                          dampening=0.0, nesterov=False, weight_decay=0.0)], rng=rng, stop=None)
    for change, err, msg in [
        (dict(order=np.full(250, 250, np.int64)), ValueError, "order\\[0\\] = 250 is not in \\[0, 250\\)"),
        (dict(order=np.arange(250)[::-1].astype(np.int32)), TypeError, "order must be an aligned C-contiguous int64"),
        (dict(n_batches=9), ValueError, "do not fit 250 samples"),
        (dict(first_batch=2**62, n_batches=2**62), ValueError, "do not fit 250 samples"),
        (dict(targets=np.full(250, 16)), ValueError, "label 16 at index 0 is outside \\[0, 16\\)"),
        (dict(x=X[:, :5].copy()), ValueError, "the plan takes 12 values per sample"),
        (dict(x=X.astype(np.float64)), TypeError, "x must be an aligned C-contiguous float32 array"),
        (dict(loss="hinge"), ValueError, "unknown loss 'hinge'"),
        (dict(optimizer=[_core.plan_adam(0, store.data.size, None, None, step=0, lr=0.1, beta1=0.9, beta2=0.9,
                                         eps=1e-8, weight_decay=0.0, decoupled=False)]),
         ValueError, "the adam step needs its exp_avg buffer"),
        (dict(optimizer=[_core.plan_sgd(5, 2**62, None, first=True, lr=0.1, momentum=0.0, dampening=0.0,
                                        nesterov=False, weight_decay=0.0)]),
         ValueError, "optimizer span .* does not fit"),
        (dict(optimizer=[_core.plan_sgd(0, 10, np.zeros(9, np.float32), first=True, lr=0.1, momentum=0.9,
                                        dampening=0.0, nesterov=False, weight_decay=0.0)]),
         ValueError, "momentum_buf must hold 10 float32 values"),
        (dict(optimizer=[_core.plan_sgd(0, 10, store.data[:10], first=True, lr=0.1, momentum=0.9,
                                        dampening=0.0, nesterov=False, weight_decay=0.0)]),
         ValueError, "momentum_buf shares memory with params"),
    ]:
        with pytest.raises(err, match=msg):
            p.train(**{**good, **change})
    np.testing.assert_array_equal(store.data, before)
    with pytest.raises(ValueError, match="predict runs an inference plan"):
        p.predict(np.empty((250, 16), np.float32), X, 32, False)
    losses, correct, _, error = p.train(**good)
    assert len(losses) == 8 and error is None and not np.array_equal(store.data, before)
