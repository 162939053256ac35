"""The optimizer kernels against torch.optim itself: 20 steps on the same tensor with the same
gradients give the same parameters. PyTorch is a test-only dependency (.ci/run installs it)."""
import numpy as np
import pytest

from fastnn.backends import cpp, numpy_ref

torch = pytest.importorskip("torch")

CONFIGS = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.001)),
    ("adam", dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    ("adamw", dict(lr=1e-2, weight_decay=0.1)),
    ("rmsprop", dict(lr=1e-2)),
    ("rmsprop", dict(lr=1e-3, alpha=0.9, momentum=0.9, weight_decay=0.01)),
]


def fastnn_steps(ops, kind, kw, p0, grads):
    p = p0.copy()
    n = p.size
    if kind == "sgd":
        buf = np.zeros(n, p.dtype) if kw.get("momentum", 0) else None
        for i, g in enumerate(grads):
            ops.sgd_step(p, g, buf, kw["lr"], kw.get("momentum", 0.0), kw.get("dampening", 0.0),
                         kw.get("nesterov", False), kw.get("weight_decay", 0.0), i == 0)
    elif kind in ("adam", "adamw"):
        m, v = np.zeros(n, p.dtype), np.zeros(n, p.dtype)
        b1, b2 = kw.get("betas", (0.9, 0.999))
        wd = kw.get("weight_decay", 0.01 if kind == "adamw" else 0.0)
        for i, g in enumerate(grads):
            ops.adam_step(p, g, m, v, i + 1, kw["lr"], b1, b2, kw.get("eps", 1e-8), wd, kind == "adamw")
    else:
        sq = np.zeros(n, p.dtype)
        buf = np.zeros(n, p.dtype) if kw.get("momentum", 0) else None
        for g in grads:
            ops.rmsprop_step(p, g, sq, buf, kw["lr"], kw.get("alpha", 0.99), kw.get("eps", 1e-8),
                             kw.get("weight_decay", 0.0), kw.get("momentum", 0.0))
    return p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kw", CONFIGS, ids=[f"{k}-{sorted(v.items())}" for k, v in CONFIGS])
def test_optimizer_kernels_match_torch(kind, kw, dtype):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(1000).astype(dtype)
    grads = [rng.standard_normal(1000).astype(dtype) for _ in range(20)]
    tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "rmsprop": torch.optim.RMSprop}[kind]([tp], **kw)
    for g in grads:
        tp.grad = torch.from_numpy(g.copy())
        opt.step()
    want = tp.detach().numpy()
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for ops in (cpp, numpy_ref):
        np.testing.assert_allclose(fastnn_steps(ops, kind, kw, p0, grads), want, **tol)
