"""Parity with PyTorch: the same architecture, weights copied in with load_state_dict and the
same batches give the same losses and the same weights after 20 steps of each optimizer, on
both backends; schedules and clipping match torch's too. Skipped when torch is absent
(.ci/run installs torch==2.13.0, so they run in CI)."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn as fnn
from test_fuzz import EXAMPLES, FUZZ, small_cnns

torch = pytest.importorskip("torch")

ACTS = {"relu": (fnn.ReLU, torch.nn.ReLU), "tanh": (fnn.Tanh, torch.nn.Tanh),
        "sigmoid": (fnn.Sigmoid, torch.nn.Sigmoid), "gelu": (fnn.GELU, torch.nn.GELU),
        "leaky": (lambda: fnn.LeakyReLU(0.1), lambda: torch.nn.LeakyReLU(0.1))}

ARCHS = {  # (sizes, activation, loss)
    "mlp-relu-ce": ([20, 32, 16, 5], "relu", "ce"),
    "mlp-tanh-mse": ([8, 24, 3], "tanh", "mse"),
    "mlp-sigmoid-ce": ([20, 50, 30, 10], "sigmoid", "ce"),
    "mlp-gelu-bce": ([12, 16, 4], "gelu", "bce"),
    "mlp-leaky-ce": ([20, 40, 5], "leaky", "ce"),
}

OPTIMS = {
    "sgd": (fnn.SGD, torch.optim.SGD, dict(lr=0.05)),
    "sgd-momentum": (fnn.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    "sgd-nesterov": (fnn.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "sgd-dampening": (fnn.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.5, dampening=0.3)),
    "adam": (fnn.Adam, torch.optim.Adam, dict(lr=1e-2)),
    "adam-wd": (fnn.Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2)),
    "adamw": (fnn.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
    "rmsprop": (fnn.RMSprop, torch.optim.RMSprop, dict(lr=1e-3)),
    "rmsprop-momentum": (fnn.RMSprop, torch.optim.RMSprop, dict(lr=1e-3, momentum=0.9, weight_decay=1e-3)),
}


def build(sizes, act):
    f_act, t_act = ACTS[act]
    f_layers, t_layers = [], []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        f_layers.append(fnn.Linear(a, b))
        t_layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            f_layers.append(f_act())
            t_layers.append(t_act())
    tm = torch.nn.Sequential(*t_layers)
    fm = fnn.Sequential(*f_layers)
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return fm, tm


def losses(kind):
    return {"ce": (fnn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()),
            "mse": (fnn.MSELoss(), torch.nn.MSELoss()),
            "bce": (fnn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss())}[kind]


def batches(sizes, kind, n_batches=20, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        if kind == "ce":
            y = rng.integers(0, sizes[-1], batch)
        else:
            y = rng.random((batch, sizes[-1])).astype(np.float32)
        yield x, y


@pytest.mark.parametrize("opt_name", OPTIMS)
@pytest.mark.parametrize("arch", ARCHS)
def test_twenty_steps_match_pytorch(backend, arch, opt_name):
    torch.manual_seed(0)
    sizes, act, kind = ARCHS[arch]
    f_cls, t_cls, kw = OPTIMS[opt_name]
    fm, tm = build(sizes, act)
    t64 = copy.deepcopy(tm).double()  # the float64 truth both float32 runs are measured against
    fopt, topt, t64opt = f_cls(fm.parameters(), **kw), t_cls(tm.parameters(), **kw), t_cls(t64.parameters(), **kw)
    floss, tloss = losses(kind)
    for x, y in batches(sizes, kind):
        lf = floss(fm(x), y)
        fopt.zero_grad()
        fm.backward(floss.backward())
        fopt.step()
        for model, opt, dtype in ((tm, topt, torch.float32), (t64, t64opt, torch.float64)):
            opt.zero_grad()
            yt = torch.from_numpy(y) if kind == "ce" else torch.from_numpy(y).to(dtype)
            lt = tloss(model(torch.from_numpy(x).to(dtype)), yt)
            lt.backward()
            opt.step()
            if dtype == torch.float32:
                assert lf == pytest.approx(lt.item(), rel=2e-5, abs=1e-6)
    # Each weight within rtol 1e-4, atol 2e-5 of PyTorch's; where PyTorch's own float32 run
    # strays further from the float64 one (RMSprop's first steps divide by the root of tiny
    # squares, so rounding noise grows over the 20 steps), fastnn must be no further from
    # float64 than three times PyTorch's distance. Which weights that noise hits depends on
    # the order of each sum (the NumPy backend's is its BLAS's, which differs by CPU: on an AMD
    # Zen 3 one weight of 1,500 strayed 4e-5 from PyTorch's, 3.7e-5 from float64): a weight
    # outside the tolerance passes if the tensor as a whole is within 1e-5 of float64
    # (relative, 2-norm) or no further from it than three times PyTorch's tensor.
    for k, v in tm.state_dict().items():
        f, t, truth = fm.state_dict()[k], v.numpy(), t64.state_dict()[k].numpy()
        torch_error = np.abs(t - truth).max()
        if torch_error > 2e-5:
            assert np.abs(f - truth).max() <= 3 * torch_error, (k, np.abs(f - truth).max(), torch_error)
        elif not np.allclose(f, t, rtol=1e-4, atol=2e-5):
            err, torch_err = np.linalg.norm(f - truth), np.linalg.norm(t - truth)
            assert err <= max(3 * torch_err, 1e-5 * np.linalg.norm(truth)), (k, err, torch_err)


class TorchResidual(torch.nn.Module):
    def __init__(self, block, shortcut=None):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def forward(self, x):
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


def build_residual():
    """Linear - Residual(Linear, ReLU, Linear) - ReLU - Residual(Linear-Tanh, shortcut Linear) - Linear."""
    tm = torch.nn.Sequential(
        torch.nn.Linear(10, 16),
        TorchResidual(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))),
        torch.nn.ReLU(),
        TorchResidual(torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Tanh()), torch.nn.Linear(16, 8)),
        torch.nn.Linear(8, 4))
    fm = fnn.Sequential(
        fnn.Linear(10, 16),
        fnn.Residual(fnn.Sequential(fnn.Linear(16, 16), fnn.ReLU(), fnn.Linear(16, 16))),
        fnn.ReLU(),
        fnn.Residual(fnn.Sequential(fnn.Linear(16, 8), fnn.Tanh()), fnn.Linear(16, 8)),
        fnn.Linear(8, 4))
    assert list(fm.state_dict()) == list(tm.state_dict())
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return fm, tm


@pytest.mark.parametrize("opt_name", ["sgd-momentum", "adam"])
def test_residual_network_matches_pytorch(backend, opt_name):
    # forward, input and parameter gradients, then 20 steps through fit (the plan on "cpp")
    torch.manual_seed(0)
    fm, tm = build_residual()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 10)).astype(np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    out = tm(tx)
    np.testing.assert_allclose(fm.forward(x), out.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal((8, 4)).astype(np.float32)
    out.backward(torch.from_numpy(g))
    fm.zero_grad()
    np.testing.assert_allclose(fm.backward(g), tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    for (k, p), (tk, tp) in zip(fm.named_parameters(), tm.named_parameters()):
        assert k == tk
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=k)
    f_cls, t_cls, kw = OPTIMS[opt_name]
    X = rng.standard_normal((160, 10)).astype(np.float32)
    y = rng.integers(0, 4, 160)
    fm.fit(X, y, optimizer=f_cls(fm.parameters(), **kw), epochs=1, batch_size=8, shuffle=False, verbose=0)
    topt, lf = t_cls(tm.parameters(), **kw), torch.nn.CrossEntropyLoss()
    for s in range(0, 160, 8):
        topt.zero_grad()
        lf(tm(torch.from_numpy(X[s:s + 8])), torch.from_numpy(y[s:s + 8])).backward()
        topt.step()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(fm.state_dict()[k], v.numpy(), rtol=1e-4, atol=2e-5, err_msg=k)


def test_fit_matches_a_pytorch_loop(backend):
    """fit() with shuffle=False is the same arithmetic as PyTorch's loop over the same batches."""
    torch.manual_seed(1)
    fm, tm = build([20, 32, 16, 5], "relu")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((100, 20)).astype(np.float32)
    y = rng.integers(0, 5, 100)
    hist = fm.fit(X, y, loss=fnn.CrossEntropyLoss(), optimizer=fnn.SGD(fm.parameters(), lr=0.1, momentum=0.5),
                  epochs=3, batch_size=25, shuffle=False, verbose=0)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.5)
    lf = torch.nn.CrossEntropyLoss()
    for epoch in range(3):
        total = 0.0
        for s in range(0, 100, 25):
            topt.zero_grad()
            loss = lf(tm(torch.from_numpy(X[s:s + 25])), torch.from_numpy(y[s:s + 25]))
            loss.backward()
            topt.step()
            total += loss.item() * 25
        assert hist.history["loss"][epoch] == pytest.approx(total / 100, rel=1e-5)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(fm.state_dict()[k], v.numpy(), rtol=1e-4, atol=1e-5)


def test_optimizer_state_dict_loads_from_pytorch(backend):
    torch.manual_seed(2)
    fm, tm = build([6, 8, 3], "tanh")
    topt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    x, y = next(batches([6, 8, 3], "ce"))
    for _ in range(3):
        topt.zero_grad()
        torch.nn.CrossEntropyLoss()(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        topt.step()
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    sd = topt.state_dict()
    fopt = fnn.Adam(fm.parameters(), lr=1e-2)
    fopt.load_state_dict({"param_groups": sd["param_groups"],
                          "state": {i: {k: (v.item() if k == "step" else v.numpy()) for k, v in s.items()}
                                    for i, s in sd["state"].items()}})
    floss = fnn.CrossEntropyLoss()
    floss(fm(x), y)
    fopt.zero_grad()
    fm.backward(floss.backward())
    fopt.step()
    topt.zero_grad()
    torch.nn.CrossEntropyLoss()(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    topt.step()
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(fm.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sched", ["step", "cosine", "linear"])
def test_lr_schedules_match_pytorch(sched):
    fp = fnn.Parameter(np.zeros(3))
    tp = torch.nn.Parameter(torch.zeros(3))
    fopt, topt = fnn.SGD([fp], lr=0.1), torch.optim.SGD([tp], lr=0.1)
    if sched == "step":
        fs, ts = fnn.StepLR(fopt, step_size=3, gamma=0.5), torch.optim.lr_scheduler.StepLR(topt, 3, 0.5)
    elif sched == "linear":  # a warm-up
        fs, ts = fnn.LinearLR(fopt, start_factor=0.1, total_iters=6), \
            torch.optim.lr_scheduler.LinearLR(topt, start_factor=0.1, total_iters=6)
    else:
        fs, ts = fnn.CosineAnnealingLR(fopt, T_max=7, eta_min=0.001), \
            torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=7, eta_min=0.001)
    for _ in range(25):  # past T_max, where the cosine turns back up
        assert fs.get_last_lr() == ts.get_last_lr()   # bit for bit
        fopt.step()
        topt.step()
        fs.step()
        ts.step()


@pytest.mark.parametrize("kw", [{}, {"mode": "max", "threshold_mode": "abs", "threshold": 0.01, "cooldown": 2},
                                {"patience": 0, "factor": 0.5, "min_lr": 0.02}])
def test_reduce_lr_on_plateau_matches_pytorch(kw):
    fp, tp = fnn.Parameter(np.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    fopt, topt = fnn.SGD([fp], lr=0.1), torch.optim.SGD([tp], lr=0.1)
    kw = {"patience": 2, **kw}
    fs, ts = fnn.ReduceLROnPlateau(fopt, **kw), torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
    metrics = np.random.default_rng(0).normal(size=40).cumsum() * 0.1 + np.linspace(1, 0, 40)
    for m in metrics:
        fopt.step()
        topt.step()
        fs.step(m)
        ts.step(m)
        assert fs.get_last_lr() == ts.get_last_lr()


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_pytorch(norm_type):
    rng = np.random.default_rng(0)
    fm, tm = build([10, 20, 5], "relu")
    grads = [rng.standard_normal(p.shape).astype(np.float32) for p in fm.parameters()]
    for p, tp, g in zip(fm.parameters(), tm.parameters(), grads):
        p.grad = g
        tp.grad = torch.from_numpy(g.copy())
    fn = fnn.clip_grad_norm_(fm.parameters(), 1.5, norm_type)
    tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.5, norm_type)
    assert fn == pytest.approx(tn.item(), rel=1e-5)
    for p, tp in zip(fm.parameters(), tm.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", ["cpp", "numpy"])
def test_relu_and_leaky_relu_special_values_match_pytorch(backend):
    x = np.array([np.nan, -np.inf, -1.0, -0.0, 0.0, 1e-40, 2.0, np.inf], np.float32)
    g = np.arange(1, 9).astype(np.float32)
    for layer, tf in ((fnn.ReLU(), torch.relu), (fnn.LeakyReLU(0.1), lambda t: torch.nn.functional.leaky_relu(t, 0.1))):
        tx = torch.from_numpy(x.copy()).requires_grad_()
        ty = tf(tx)
        ty.backward(torch.from_numpy(g))
        with fnn.use_backend(backend):
            y = layer.forward(x)
            dx = layer.backward(g)
        np.testing.assert_array_equal(y, ty.detach().numpy())  # NaN where torch has NaN
        np.testing.assert_array_equal(dx, tx.grad.numpy())


# ---------------------------------------------------------------- convolutional networks
def conv_pair(C, OC, k, **kw):
    f = fnn.Conv2d(C, OC, k, **kw)
    t = torch.nn.Conv2d(C, OC, k, **kw)
    return f, t


CNN_ARCHS = {
    # the net, on 12×12 images
    "conv-relu-maxpool": lambda: [
        conv_pair(1, 4, 3, padding=1), (fnn.ReLU(), torch.nn.ReLU()), (fnn.MaxPool2d(2), torch.nn.MaxPool2d(2)),
        conv_pair(4, 6, 3, padding=1), (fnn.ReLU(), torch.nn.ReLU()), (fnn.MaxPool2d(2), torch.nn.MaxPool2d(2)),
        (fnn.Flatten(), torch.nn.Flatten()), (fnn.Linear(54, 5), torch.nn.Linear(54, 5))],
    "stride-dilation-groups-avgpool": lambda: [
        conv_pair(1, 4, 3, stride=2, padding=2, dilation=2), (fnn.Tanh(), torch.nn.Tanh()),
        conv_pair(4, 8, (3, 2), groups=2, padding=(1, 0)), (fnn.GELU(), torch.nn.GELU()),
        (fnn.AvgPool2d(3, stride=2, padding=1), torch.nn.AvgPool2d(3, stride=2, padding=1)),
        conv_pair(8, 8, 3, groups=8, padding="same"),
        (fnn.Flatten(), torch.nn.Flatten()), (fnn.Linear(72, 5), torch.nn.Linear(72, 5))],
    "batchnorm-dropout-free": lambda: [
        conv_pair(1, 4, 3, padding=1, bias=False), (fnn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)),
        (fnn.ReLU(), torch.nn.ReLU()), (fnn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
        (fnn.Flatten(), torch.nn.Flatten()), (fnn.Linear(144, 8), torch.nn.Linear(144, 8)),
        (fnn.BatchNorm1d(8), torch.nn.BatchNorm1d(8)), (fnn.Linear(8, 5), torch.nn.Linear(8, 5))],
    # a conv feeding BatchNorm has no bias (its gradient is 0 up to rounding noise, which Adam
    # would blow up into steps as large as any other: the two libraries' noise differs)
    "residual": lambda: [
        conv_pair(1, 4, 3, padding=1, bias=False), (fnn.BatchNorm2d(4), torch.nn.BatchNorm2d(4)),
        (fnn.ReLU(), torch.nn.ReLU()),
        (fnn.Residual(fnn.Sequential(fnn.Conv2d(4, 4, 3, padding=1, bias=False), fnn.BatchNorm2d(4), fnn.ReLU(),
                                     fnn.Conv2d(4, 4, 3, padding=1))),
         TorchResidual(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4),
                                           torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1)))),
        (fnn.Residual(fnn.Sequential(fnn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False), fnn.BatchNorm2d(8)),
                      fnn.Sequential(fnn.Conv2d(4, 8, 1, stride=2, bias=False), fnn.BatchNorm2d(8))),
         TorchResidual(torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False),
                                           torch.nn.BatchNorm2d(8)),
                       torch.nn.Sequential(torch.nn.Conv2d(4, 8, 1, stride=2, bias=False), torch.nn.BatchNorm2d(8)))),
        (fnn.ReLU(), torch.nn.ReLU()), (fnn.AdaptiveAvgPool2d(1), torch.nn.AdaptiveAvgPool2d(1)),
        (fnn.Flatten(), torch.nn.Flatten()), (fnn.Linear(8, 5), torch.nn.Linear(8, 5))],
}


def build_cnn(arch):
    pairs = CNN_ARCHS[arch]()
    fm = fnn.Sequential([f for f, _ in pairs])
    tm = torch.nn.Sequential(*[t for _, t in pairs])
    assert list(fm.state_dict()) == list(tm.state_dict())
    fm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    return fm, tm


@pytest.mark.parametrize("arch", CNN_ARCHS)
def test_cnn_forward_and_gradients_match_pytorch(backend, arch):
    torch.manual_seed(0)
    fm, tm = build_cnn(arch)
    x = np.random.default_rng(1).standard_normal((6, 1, 12, 12)).astype(np.float32)
    for train in (True, False):                              # BatchNorm: batch statistics, then running ones
        fm.train(train), tm.train(train)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        out = tm(tx)
        np.testing.assert_allclose(fm.forward(x), out.detach().numpy(), rtol=1e-4, atol=1e-5)
        g = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
        tm.zero_grad()
        out.backward(torch.from_numpy(g))
        fm.zero_grad()
        np.testing.assert_allclose(fm.backward(g), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
        for (k, p), (tk, tp) in zip(fm.named_parameters(), tm.named_parameters()):
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=2e-4, atol=1e-5, err_msg=f"{k} train={train}")
    for k, v in tm.state_dict().items():                    # running statistics and the batch counter
        np.testing.assert_allclose(fm.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("opt_name", OPTIMS)
@pytest.mark.parametrize("arch", ["conv-relu-maxpool", "residual"])
def test_cnn_twenty_steps_match_pytorch(backend, arch, opt_name):
    # 20 steps through fit (the compiled plan on "cpp") against torch's loop on the same batches.
    # The residual net runs in float64: in float32 its 20 Adam steps (lr 0.01) are chaotic. A
    # pre-activation within rounding of a ReLU's kink flips with the summation order, and the
    # weights then part by ~6e-3: measured, starting from weights moved by a relative 1e-6, one
    # start in eight ends 5.7e-3 from the float64 run, in fastnn and PyTorch alike, whichever
    # GEMM or convolution path is in use. In float64 no flip is within reach.
    torch.manual_seed(0)
    fm, tm = build_cnn(arch)
    dtype = np.float64 if arch == "residual" else np.float32
    if dtype == np.float64:
        from fastnn.gradcheck import float64_copy
        fm, tm = float64_copy(fm), tm.double()
    f_cls, t_cls, kw = OPTIMS[opt_name]
    rng = np.random.default_rng(3)
    X = rng.standard_normal((160, 1, 12, 12)).astype(dtype)
    y = rng.integers(0, 5, 160)
    hist = fm.fit(X, y, optimizer=f_cls(fm.parameters(), **kw), epochs=1, batch_size=8, shuffle=False, verbose=0)
    topt, lf = t_cls(tm.parameters(), **kw), torch.nn.CrossEntropyLoss()
    total = 0.0
    for s in range(0, 160, 8):
        topt.zero_grad()
        loss = lf(tm(torch.from_numpy(X[s:s + 8])), torch.from_numpy(y[s:s + 8]))
        loss.backward()
        topt.step()
        total += loss.item() * 8
    assert hist.history["loss"][0] == pytest.approx(total / 160, rel=1e-4 if dtype == np.float32 else 1e-10)
    rtol, atol = (2e-3, 2e-4) if dtype == np.float32 else (1e-7, 1e-9)
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(fm.state_dict()[k], v.numpy(), rtol=rtol, atol=atol, err_msg=k)


# ---------------------------------------------------------------- random CNNs (Hypothesis)
# test_fuzz.py's drawn CNNs against a twin built from them; fuzz/run.py --target torch runs
# this with a large budget


def torch_twin(layer):
    """The PyTorch module computing what `layer` (a small_cnns layer but Dropout) computes."""
    nn = torch.nn
    if isinstance(layer, fnn.Sequential):
        return nn.Sequential(*[torch_twin(c) for c in layer.layers])
    if isinstance(layer, fnn.Residual):
        return TorchResidual(torch_twin(layer.block), torch_twin(layer.shortcut) if layer.shortcut is not None else None)
    if isinstance(layer, fnn.Conv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation, groups=layer.groups,
                         bias=layer.bias is not None)
    if isinstance(layer, fnn.Linear):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    if isinstance(layer, fnn.BatchNorm2d):
        return nn.BatchNorm2d(layer.num_features)
    if isinstance(layer, (fnn.MaxPool2d, fnn.AvgPool2d)):
        return (nn.MaxPool2d if isinstance(layer, fnn.MaxPool2d) else nn.AvgPool2d)(layer.kernel_size, layer.stride,
                                                                                    layer.padding)
    if isinstance(layer, fnn.LeakyReLU):
        return nn.LeakyReLU(layer.negative_slope)
    return {fnn.ReLU: nn.ReLU, fnn.GELU: nn.GELU, fnn.Tanh: nn.Tanh, fnn.Sigmoid: nn.Sigmoid, fnn.Flatten: nn.Flatten,
            fnn.Identity: nn.Identity}[type(layer)]()


@settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
@given(net=small_cnns(dtypes=(np.float64,)), batch=st.sampled_from([2, 3, 9]), seed=st.integers(0, 2**16))
def test_random_cnns_match_pytorch(net, batch, seed):
    # PyTorch's semantics over drawn architectures (same padding of even kernels, pools with
    # padding, groups, dilation, residual blocks, BatchNorm's batch and running statistics):
    # the forward pass in training and eval mode, the input and parameter gradients and the
    # running statistics agree with a PyTorch twin to 1e-9, both in float64 (in float32, a
    # max pool's window can hold two values within rounding of each other, and the two
    # libraries then send the gradient to different ones)
    layers, (C, H, W), dt = net
    # (Dropout's masks differ between the libraries; it is compared nowhere here)
    model = fnn.Sequential(*[fnn.Identity() if isinstance(c, fnn.Dropout) else c for c in layers])
    twin = torch.nn.Sequential(*[torch_twin(c) for c in model.layers]).double()
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float64)) for k, v in model.state_dict().items()})
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, C, H, W))
    rtol = atol = 1e-9

    def close(got, want, what):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * max(1.0, float(np.abs(want).max(initial=0))),
                                   err_msg=f"{what} {model}")
    for train in (True, False):
        model.train(train), twin.train(train)
        tx = torch.from_numpy(x.copy()).requires_grad_(True)
        out = twin(tx)
        got = model.forward(x.astype(dt))
        g = rng.standard_normal(out.shape)
        twin.zero_grad()
        out.backward(torch.from_numpy(g))
        model.zero_grad()
        dx = model.backward(g.astype(dt))
        close(got, out.detach().numpy(), f"forward, train={train}")
        close(dx, tx.grad.numpy(), f"input gradient, train={train}")
        for (k, p), tp in zip(model.named_parameters(), twin.parameters()):
            close(p.grad, tp.grad.numpy(), f"{k}.grad, train={train}")
    for k, v in twin.state_dict().items():
        close(np.asarray(model.state_dict()[k], np.float64), v.numpy(), k)
