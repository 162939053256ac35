"""Every example of ../shared/SEEDS.md, through the public API, with its exact numbers."""
import warnings

import numpy as np
import pytest

import fastnn as fnn

AND_OR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


# §1 ------------------------------------------------------------------------------ neurons
def test_mp_neuron_computes_and(backend):
    # y = 1 if 0.5·x1 + 0.5·x2 >= 0.7 else 0
    neuron = fnn.Sequential(fnn.Linear(2, 1, bias=False), fnn.Step(threshold=0.7))
    neuron[0].weight.data = [[0.5, 0.5]]
    assert neuron(AND_OR_X).ravel().tolist() == [0, 0, 0, 1]


def test_mp_neuron_computes_or(backend):
    neuron = fnn.Sequential(fnn.Linear(2, 1, bias=False), fnn.Step(threshold=0.5))
    neuron[0].weight.data = [[0.5, 0.5]]
    assert neuron(AND_OR_X).ravel().tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("name,targets", [("AND", [0, 0, 0, 1]), ("OR", [0, 1, 1, 1])])
def test_perceptron_rule_converges_on_separable_data(backend, name, targets):
    p = fnn.Perceptron(2, lr=1.0, max_epochs=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converging must not warn
        p.fit(AND_OR_X, targets)
    assert p.converged and p.epochs_ < 100 and p.errors_[-1] == 0
    assert p.predict(AND_OR_X).tolist() == targets


def test_perceptron_never_converges_on_xor(backend):
    p = fnn.Perceptron(2, lr=1.0, max_epochs=50)
    with pytest.warns(fnn.ConvergenceWarning, match="did not separate the data in 50 epochs"):
        p.fit(AND_OR_X, [0, 1, 1, 0])
    assert not p.converged and p.epochs_ == 50
    assert min(p.errors_) > 0  # never one clean epoch
    assert (p.predict(AND_OR_X) != np.array([0, 1, 1, 0])).any()


def test_hand_set_two_layer_net_computes_xor(backend):
    # hidden A: (1, −1), threshold ½ -> fires on (1,0); hidden B: (−1, 1) -> fires on (0,1);
    # output fires when A + B > 0.
    hidden = fnn.Linear(2, 2, bias=False)
    hidden.weight.data = [[1, -1], [-1, 1]]
    out = fnn.Linear(2, 1, bias=False)
    out.weight.data = [[1, 1]]
    net = fnn.Sequential(hidden, fnn.Step(0.5), out, fnn.Step(0.5))  # "> 0" on the sums 0, 1
    assert net(AND_OR_X).ravel().tolist() == [0, 1, 1, 0]


@pytest.mark.parametrize("activation", [fnn.Tanh, fnn.Sigmoid])
def test_mlp_learns_xor(backend, activation):
    fnn.manual_seed(0)
    net = fnn.Sequential(fnn.Linear(2, 8), activation(), fnn.Linear(8, 1))
    opt = fnn.SGD(net.parameters(), lr=0.5, momentum=0.9)
    loss_fn = fnn.BCEWithLogitsLoss()
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    for _ in range(500):
        loss = loss_fn(net(AND_OR_X), y)
        opt.zero_grad()
        net.backward(loss_fn.backward())
        opt.step()
    assert loss < 0.05
    assert ((net(AND_OR_X) > 0).astype(int) == y).all()


# §2 --------------------------------------------------------------- gradient descent on (x−1)²
def descend(x0, lr, steps):
    x = fnn.Parameter([x0], dtype=np.float64)
    opt = fnn.SGD([x], lr=lr)
    path = [float(x.data[0])]
    for _ in range(steps):
        opt.zero_grad()
        x.grad[...] = 2 * x.data - 2          # g'(x) = 2x − 2
        opt.step()                            # x ← x − η·g'(x)
        path.append(float(x.data[0]))
    return path


def test_gradient_descent_converges_with_small_step(backend):
    path = descend(3.0, 0.1, 100)
    first = next(i for i, x in enumerate(path) if abs(x - 1) < 1e-6)
    assert first <= 100 and abs(path[-1] - 1) < 1e-6
    assert path[1] == pytest.approx(2.6, abs=1e-15)


def test_gradient_descent_oscillates_forever_with_step_one(backend):
    path = descend(3.0, 1.0, 40)
    assert path == [3.0, -1.0] * 20 + [3.0]   # exactly, forever


@pytest.mark.parametrize("lr", [1.01, 1.1, 1.5])
def test_gradient_descent_diverges_above_one(backend, lr):
    dist = np.abs(np.array(descend(3.0, lr, 200)) - 1)     # x − 1 is scaled by (1 − 2η) per step
    assert (np.diff(dist) > 0).all()                         # grows every step, without bound
    assert dist[-1] / dist[0] == pytest.approx(abs(1 - 2 * lr) ** 200, rel=1e-9)


# §3 ------------------------------------------------------------ the hand-computed backprop step
def backprop_net(dtype=np.float64):
    net = fnn.Sequential(fnn.Linear(2, 2, dtype=dtype), fnn.ReLU(), fnn.Linear(2, 1, dtype=dtype))
    net[0].weight.data = [[1, 1],     # hidden 1: w11 (from x1), w21 (from x2)
                          [1, -1]]    # hidden 2: w12, w22
    net[0].bias.data = [1, 1]         # b11, b12
    net[2].weight.data = [[1, -1]]    # wa1, wa2
    net[2].bias.data = [1]            # b21
    return net


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_hand_computed_backprop_step(backend, dtype):
    net = backprop_net(dtype)
    x, Y = np.array([[1.0, 2.0]]), 2.0
    hidden = net[0](x)
    assert hidden.tolist() == [[4.0, 0.0]]                      # z1 = 4, z2 = 0
    assert net[1](hidden).tolist() == [[4.0, 0.0]]              # a1 = 4, a2 = 0
    y = net(x)
    assert y.tolist() == [[5.0]]
    J = 0.5 * (y[0, 0] - Y) ** 2
    assert J == 4.5
    opt = fnn.SGD(net.parameters(), lr=0.01)
    opt.zero_grad()
    net.backward(np.array([[y[0, 0] - Y]]))                       # ∂J/∂y = y − Y = 3
    assert net[0].weight.grad[0, 0] == 3                          # (y−Y)·wa1·ReLU'(z1)·x1
    assert net[0].weight.grad[1].tolist() == [0, 0]               # ReLU'(0) = 0
    opt.step()
    tol = dict(rel=0, abs=1e-15 if dtype == np.float64 else 1e-6)
    assert net[0].weight.data[:, 0] == pytest.approx([0.97, 1.0], **tol)    # w11, w12
    assert net[0].weight.data[:, 1] == pytest.approx([0.94, -1.0], **tol)   # w21, w22
    assert net[0].bias.data == pytest.approx([0.97, 1.0], **tol)            # b11, b12
    assert net[2].weight.data[0] == pytest.approx([0.88, -1.0], **tol)      # wa1, wa2
    assert net[2].bias.data == pytest.approx([0.97], **tol)                 # b21


def test_hand_computed_backprop_through_a_loss_object(backend):
    # The same step driven by MSELoss(sum): J = ½(y − Y)² has gradient ½·2(y − Y).
    net = backprop_net()
    loss_fn = fnn.MSELoss(reduction="sum")
    J = 0.5 * loss_fn(net(np.array([[1.0, 2.0]])), np.array([[2.0]]))
    assert J == 4.5
    net.zero_grad()
    net.backward(0.5 * loss_fn.backward())
    fnn.SGD(net.parameters(), lr=0.01).step()
    assert net[2].weight.data[0] == pytest.approx([0.88, -1.0], abs=1e-15)


# §4 --------------------------------------------------------------- linear regression by SGD
def test_linear_regression_steps(backend):
    model = fnn.Linear(1, 1, dtype=np.float64)
    model.weight.data, model.bias.data = [[0.5]], [0.6]
    opt = fnn.SGD(model.parameters(), lr=0.01)
    loss_fn = fnn.MSELoss(reduction="sum")

    def step(x, t):
        loss_fn(model(np.array([[x]])), np.array([[t]]))
        opt.zero_grad()
        model.backward(0.5 * loss_fn.backward())   # loss (y − t)²/2
        opt.step()
        return model.weight.data[0, 0], model.bias.data[0]

    assert step(0.0, 1.0) == pytest.approx((0.5, 0.604), abs=1e-15)
    assert step(1.0, 2.9) == pytest.approx((0.51796, 0.62196), abs=1e-15)


def test_linear_regression_approaches_2x_plus_1(backend):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (200, 1))
    t = 2 * x + 1 + rng.normal(0, 0.05, x.shape)
    model = fnn.Linear(1, 1, dtype=np.float64)
    model.weight.data, model.bias.data = [[0.5]], [0.6]
    opt = fnn.SGD(model.parameters(), lr=0.01)
    loss_fn = fnn.MSELoss(reduction="sum")
    for _ in range(30):
        for xi, ti in zip(x, t):
            loss_fn(model(xi[None]), ti[None])
            opt.zero_grad()
            model.backward(0.5 * loss_fn.backward())
            opt.step()
    assert model.weight.data[0, 0] == pytest.approx(2, abs=0.05)
    assert model.bias.data[0] == pytest.approx(1, abs=0.05)


# §5 ----------------------------------------------------------------------------- curve fitting
def test_polynomial_fit_loss_decreases_monotonically(backend):
    rng = np.random.default_rng(1)
    x = np.linspace(-1, 1, 50)[:, None]
    t = np.sin(3 * x) + rng.normal(0, 0.05, x.shape)
    powers = np.hstack([x ** k for k in range(1, 6)])       # k0 is the bias
    poly = fnn.Linear(5, 1, init="zeros", dtype=np.float64)
    opt = fnn.SGD(poly.parameters(), lr=0.002)
    loss_fn = fnn.MSELoss(reduction="sum")                  # summed squared error
    losses = []
    for _ in range(300):
        losses.append(loss_fn(poly(powers), t))
        opt.zero_grad()
        poly.backward(loss_fn.backward())
        opt.step()
    assert (np.diff(losses) < 0).all()
    assert losses[-1] < 0.1 * losses[0]


def test_one_hidden_layer_fits_sine(backend):
    fnn.manual_seed(0)
    x = np.linspace(-np.pi, np.pi, 256, dtype=np.float32)[:, None]
    t = np.sin(x)
    net = fnn.Sequential(fnn.Linear(1, 100), fnn.Tanh(), fnn.Linear(100, 1))
    net.fit(x, t, loss="mse", optimizer=fnn.Adam(net.parameters(), lr=0.01), epochs=300,
            batch_size=64, verbose=0)
    assert net.evaluate(x, t, loss="mse")["loss"] < 1e-3


def test_activations_are_needed_for_a_nonlinear_target(backend):
    # House-price style: price = W·features + b is linear; a non-linear target defeats it.
    fnn.manual_seed(0)
    rng = np.random.default_rng(2)
    X = rng.uniform(-1, 1, (512, 5)).astype(np.float32)
    linear_target = X @ np.array([[3], [-2], [1], [0.5], [2]], np.float32) + 1
    nonlinear_target = np.sin(2 * X[:, :1]) * X[:, 1:2] ** 2 + np.abs(X[:, 2:3])
    results = {}
    for name, make in [("linear", lambda: fnn.Sequential(fnn.Linear(5, 1))),
                       ("mlp", lambda: fnn.Sequential(fnn.Linear(5, 64), fnn.Tanh(), fnn.Linear(64, 1)))]:
        for tname, target in [("linear", linear_target), ("nonlinear", nonlinear_target)]:
            net = make()
            net.fit(X, target, loss="mse", optimizer=fnn.Adam(net.parameters(), lr=0.01), epochs=200,
                    batch_size=64, verbose=0)
            results[name, tname] = net.evaluate(X, target, loss="mse")["loss"]
    assert results["linear", "linear"] < 1e-4                  # a linear model fits a linear target
    assert results["linear", "nonlinear"] > 0.03               # ... but not a non-linear one
    assert results["mlp", "nonlinear"] < 0.2 * results["linear", "nonlinear"]


# §7 ------------------------------------------------------------------------ the classifiers
def test_784_50_100_10_has_45360_parameters():
    net = fnn.Sequential(fnn.Linear(784, 50), fnn.Sigmoid(), fnn.Linear(50, 100), fnn.Sigmoid(),
                         fnn.Linear(100, 10), fnn.Softmax())
    assert net.num_parameters() == (784 * 50 + 50) + (50 * 100 + 100) + (100 * 10 + 10) == 45360
    text = net.summary()
    assert "Total params: 45,360" in text
    assert "39,250" in text and "5,100" in text and "1,010" in text
    assert "(None, 10)" in text


def test_training_vs_inference_dropout_only_in_training(backend):
    fnn.manual_seed(0)
    net = fnn.Sequential(fnn.Linear(20, 50), fnn.ReLU(), fnn.Dropout(0.5), fnn.Linear(50, 3))
    x = np.random.default_rng(0).standard_normal((8, 20))
    net.eval()
    a, b = net(x), net(x)
    np.testing.assert_array_equal(a, b)                        # inference is deterministic
    net.train()
    assert not np.array_equal(net(x), net(x))                  # dropout draws new masks
    before = net.state_dict()
    net.predict(x)                                             # inference: no targets, no updates
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert net.training                                        # predict restores the mode


def test_overfitting_and_dropout_narrowing_the_gap(backend):
    # 100 training samples with 30% wrong labels: a big net memorises them (train 100%, test
    # far lower); dropout and weight decay stop the memorising and raise test accuracy.
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((4, 30)) * 0.5

    def sample(n, label_noise):
        y = rng.integers(0, 4, n)
        X = (centers[y] + rng.standard_normal((n, 30))).astype(np.float32)
        return X, np.where(rng.random(n) < label_noise, rng.integers(0, 4, n), y)

    X, y = sample(100, 0.3)
    Xt, yt = sample(2000, 0.0)
    acc = {}
    for name, p, wd in [("plain", 0.0, 0.0), ("regularised", 0.7, 0.3)]:
        fnn.manual_seed(0)
        drop = (lambda: [fnn.Dropout(p)] if p else [])  # noqa: E731
        net = fnn.Sequential(*drop(), fnn.Linear(30, 256), fnn.ReLU(), *drop(), fnn.Linear(256, 4))
        net.fit(X, y, optimizer=fnn.AdamW(net.parameters(), lr=3e-3, weight_decay=wd), epochs=150,
                batch_size=20, verbose=0)
        acc[name] = net.evaluate(X, y)["accuracy"], net.evaluate(Xt, yt)["accuracy"]
    (train, test), (rtrain, rtest) = acc["plain"], acc["regularised"]
    assert train == 1.0 and train - test > 0.2          # memorised the noise: overfitting
    assert rtrain - rtest < 0.05                       # the gap is gone
    assert rtest > test + 0.05                         # and the test accuracy is better
