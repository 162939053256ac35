"""Float64 finite-difference checks of every differentiable kernel, on both backends.

For a kernel y = f(x) and a random cotangent R, backward(R) must equal the central difference
of Σ R ⊙ f(x) with respect to each input, element by element.
"""
import numpy as np
import pytest

from fastnn.backends import cpp, numpy_ref

BACKENDS = pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])


def numeric_grad(f, x, h=1e-6):
    """∂f/∂x by central differences; f returns a float, x is changed in place and restored."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return g


def check(analytic, numeric, rtol=1e-6, atol=1e-8):
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)


@BACKENDS
@pytest.mark.parametrize("bias", [True, False])
def test_linear(ops, bias, rng):
    N, C, OC = 4, 5, 3
    x, w = rng.normal(size=(N, C)), rng.normal(size=(OC, C))
    b = rng.normal(size=OC) if bias else None
    R = rng.normal(size=(N, OC))

    def f():
        out = np.empty((N, OC))
        ops.linear_forward(out, x, w, b)
        return float((out * R).sum())

    dx, dw = np.empty((N, C)), np.zeros((OC, C))
    db = np.zeros(OC) if bias else None
    ops.linear_backward(dx, dw, db, R, x, w)
    check(dx, numeric_grad(f, x))
    check(dw, numeric_grad(f, w))
    if bias:
        check(db, numeric_grad(f, b))


ACTIVATIONS = [  # name, saved tensor for backward ("x" or "y"), kwargs, input sampler
    ("relu", "x", {}, lambda r, s: r.choice([-1, 1], s) * r.uniform(0.1, 2, s)),  # away from the kink
    ("leaky_relu", "x", {"negative_slope": 0.1}, lambda r, s: r.choice([-1, 1], s) * r.uniform(0.1, 2, s)),
    ("sigmoid", "y", {}, lambda r, s: r.normal(0, 3, s)),
    ("tanh", "y", {}, lambda r, s: r.normal(0, 2, s)),
    ("gelu", "x", {}, lambda r, s: r.normal(0, 2, s)),
    ("softmax", "y", {}, lambda r, s: r.normal(0, 2, s)),
]


@BACKENDS
@pytest.mark.parametrize("name,saved,kw,sample", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation(ops, name, saved, kw, sample, rng):
    shape = (3, 7)
    x, R = sample(rng, shape), rng.normal(size=shape)
    fwd, bwd = getattr(ops, f"{name}_forward"), getattr(ops, f"{name}_backward")

    def f():
        y = np.empty(shape)
        fwd(y, x, **kw)
        return float((y * R).sum())

    y = np.empty(shape)
    fwd(y, x, **kw)
    dx = np.empty(shape)
    bwd(dx, R, x if saved == "x" else y, **kw)
    check(dx, numeric_grad(f, x))


LOSSES = [
    ("cross_entropy_forward", (6, 4), lambda r, s: r.integers(0, s[1], s[0]), {}),
    ("mse_forward", (5, 3), lambda r, s: r.normal(size=s), {"reduction": "mean"}),
    ("mse_forward", (5, 3), lambda r, s: r.normal(size=s), {"reduction": "sum"}),
    ("bce_with_logits_forward", (5, 3), lambda r, s: r.uniform(0, 1, s), {}),
    ("bce_forward", (5, 3), lambda r, s: r.uniform(0, 1, s), {}),
]


@BACKENDS
@pytest.mark.parametrize("name,shape,target,kw", LOSSES, ids=[f"{l[0]}-{l[3]}" for l in LOSSES])
def test_loss(ops, name, shape, target, kw, rng):
    x = rng.uniform(0.05, 0.95, shape) if name == "bce_forward" else rng.normal(0, 2, shape)
    t = target(rng, shape)
    fn = getattr(ops, name)
    g = np.empty(shape)
    loss = fn(g, x, t, **kw)
    assert loss == fn(None, x, t, **kw)  # the gradient never changes the loss
    check(g, numeric_grad(lambda: fn(None, x, t, **kw), x))


def test_step_has_no_gradient_kernel():
    # The M-P step function has derivative 0 almost everywhere; there is no step_backward.
    assert not hasattr(cpp, "step_backward") and not hasattr(numpy_ref, "step_backward")


CONVS = {  # x (N, C, H, W), weight, out (N, OC, OH, OW), kwargs
    "3x3-pad1": ((2, 3, 5, 4), (4, 3, 3, 3), (2, 4, 5, 4), dict(padding=1)),
    "stride2-dilation2": ((2, 2, 7, 6), (3, 2, 2, 2), (2, 3, 4, 2), dict(stride=2, dilation=2, padding=(1, 0))),
    "groups2": ((1, 4, 4, 4), (6, 2, 3, 1), (1, 6, 4, 4), dict(groups=2, padding=(1, 0))),
    "depthwise": ((2, 3, 4, 5), (3, 1, 3, 3), (2, 3, 4, 5), dict(groups=3, padding=1)),
    "1x1": ((2, 3, 3, 3), (2, 3, 1, 1), (2, 2, 3, 3), {}),
    "asymmetric-pad": ((1, 2, 3, 4), (2, 2, 2, 2), (1, 2, 3, 4), dict(padding=(0, 1, 1, 0))),
}


@BACKENDS
@pytest.mark.parametrize("name", CONVS)
def test_conv2d(ops, name, rng):
    xs, ws, os, kw = CONVS[name]
    x, w, b = rng.normal(size=xs), rng.normal(size=ws), rng.normal(size=ws[0])
    out, R = np.empty(os), rng.normal(size=os)

    def f():
        ops.conv2d_forward(out, x, w, b, **kw)
        return float((out * R).sum())

    dx, dw, db = np.empty(xs), np.zeros(ws), np.zeros(ws[0])
    ops.conv2d_backward(dx, dw, db, R, x, w, **kw)
    check(dx, numeric_grad(f, x))
    check(dw, numeric_grad(f, w))
    check(db, numeric_grad(f, b))


POOLS = {  # on x (2, 3, 5, 6): kind, out shape, kwargs
    "max-2x2": ("max", (2, 3, 2, 3), dict(kernel_size=2)),
    "max-3x3-stride2-pad1": ("max", (2, 3, 3, 3), dict(kernel_size=3, stride=2, padding=1)),
    "avg-2x3-pad": ("avg", (2, 3, 6, 3), dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1))),
    "avg-global": ("avg", (2, 3, 1, 1), dict(kernel_size=(5, 6))),
}


@BACKENDS
@pytest.mark.parametrize("name", POOLS)
def test_pool2d(ops, name, rng):
    kind, os, kw = POOLS[name]
    xs = (2, 3, 5, 6)
    x = rng.permutation(np.arange(np.prod(xs), dtype=np.float64)).reshape(xs) / 7  # distinct: no ties
    out, R = np.empty(os), rng.normal(size=os)
    fwd = getattr(ops, f"{kind}pool2d_forward")
    extra = (np.empty(os, np.int32),) if kind == "max" else ()

    def f():
        fwd(out, *extra, x, **kw)
        return float((out * R).sum())

    f()
    dx = np.empty(xs)
    getattr(ops, f"{kind}pool2d_backward")(dx, R, *extra, **kw)
    check(dx, numeric_grad(f, x, h=1e-4))   # the max stays put under a perturbation this small


@BACKENDS
@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 5), (3, 2, 3, 2)])
@pytest.mark.parametrize("batch_stats", [True, False])
def test_batchnorm(ops, shape, batch_stats, rng):
    # training: the statistics are the batch's, so they are part of the function of x
    C = shape[1]
    x, gamma, beta = rng.normal(size=shape), rng.normal(size=C), rng.normal(size=C)
    rm, rv = rng.normal(size=C), rng.uniform(0.5, 2, C)
    R = rng.normal(size=shape)
    mean, var = np.empty(C), np.empty(C)

    def f():
        if batch_stats:
            ops.batchnorm_stats(mean, var, x)
        else:
            mean[...], var[...] = rm, rv
        y = np.empty(shape)
        ops.batchnorm_forward(y, x, mean, var, gamma, beta, 1e-3)
        return float((y * R).sum())

    f()
    dx, dg, db = np.empty(shape), np.zeros(C), np.zeros(C)
    ops.batchnorm_backward(dx, dg, db, R, x, mean, var, gamma, 1e-3, batch_stats)
    check(dx, numeric_grad(f, x), rtol=1e-5, atol=1e-7)
    check(dg, numeric_grad(f, gamma))
    check(db, numeric_grad(f, beta))
