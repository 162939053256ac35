"""fnn.gradcheck: compare a layer's or model's backward with central finite differences.

The check runs on a float64 copy (so the differences are accurate to ~1e-10) and never
touches the original. Dropout masks are replayed by restoring the random generator before
every forward, so layers with randomness are checked too.
"""
from __future__ import annotations

import copy

import numpy as np

from fastnn.layers.base import Layer
from fastnn.losses import Loss
from fastnn.parameter import FlatStore
from fastnn.random import generator


def float64_copy(layer: Layer) -> Layer:
    """A deep copy of `layer` (any Layer, a user's own subclass too) whose parameters and
    floating-point buffers are float64. Layers compute in their parameters' dtype, so the copy
    runs in float64. Parameters sharing a flat buffer share the new one, at the same offsets."""
    model = copy.deepcopy(layer)
    stores = {}
    for p in model.parameters():
        old = p._store
        if id(old) not in stores:
            new = FlatStore(old.data.size, np.float64)
            new.data[...] = old.data
            new.grad[...] = old.grad
            stores[id(old)] = new
        p._bind(stores[id(old)], p._offset)
    for m in model.modules():
        for name, b in m._buffers.items():
            if b.dtype.kind == "f":
                m._buffers[name] = b.astype(np.float64)
    return model


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate.

    Example:
        >>> class Wrong(fnn.Layer):
        ...     def forward(self, x):
        ...         return x * x
        ...     def backward(self, grad_out):
        ...         return grad_out          # should be 2·x·grad_out
        >>> fnn.gradcheck(Wrong(), np.ones((2, 2)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        fastnn.gradcheck.GradcheckError: ...
    """


def gradcheck(layer: Layer, x, target=None, loss: Loss | None = None, eps: float = 1e-6,
              atol: float = 1e-6, rtol: float = 1e-4, seed: int = 0) -> bool:
    """Check ∂f/∂x and ∂f/∂θ of `layer` by central differences in float64.

    f is loss(layer(x), target) when `loss` is given, else Σ g ⊙ layer(x) for a fixed random g.
    Every element of x and of every parameter is perturbed by ±eps, so keep models small.

    Returns True, or raises GradcheckError naming the worst element.

    Example:
        >>> fnn.gradcheck(fnn.Sequential(fnn.Linear(3, 4), fnn.Tanh()), np.random.rand(5, 3))
        True
    """
    if not isinstance(layer, Layer):
        raise TypeError(f"gradcheck expects a fastnn layer or model, got {type(layer).__name__}")
    model = float64_copy(layer)
    x = np.array(x, dtype=np.float64)
    rng_state = generator().bit_generator.state

    def forward():
        generator().bit_generator.state = rng_state
        return model.forward(x)

    out = forward()
    if loss is not None:
        def objective():
            return loss.forward(forward(), target, need_grad=False)
        loss.forward(out, target)
        upstream = loss.backward().copy()
    else:
        upstream = np.random.default_rng(seed).standard_normal(out.shape)

        def objective():
            return float(np.sum(upstream * forward()))

    model.zero_grad()
    forward()
    dx = model.backward(upstream)
    checks = [("input", x, dx)] + [(name, p.data, p.grad.copy()) for name, p in model.named_parameters()]
    try:
        for name, values, analytic in checks:
            numeric = np.empty_like(values)
            for i in np.ndindex(values.shape):
                keep = values[i]
                values[i] = keep + eps
                hi = objective()
                values[i] = keep - eps
                lo = objective()
                values[i] = keep
                numeric[i] = (hi - lo) / (2 * eps)
            err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
            if err.size and err.max() > 0:
                at = np.unravel_index(int(err.argmax()), err.shape)
                raise GradcheckError(f"gradcheck: d/d{name}{list(at)} is {analytic[at]:.10g} by backward but "
                                     f"{numeric[at]:.10g} by finite differences (atol={atol}, rtol={rtol})")
    finally:
        generator().bit_generator.state = rng_state
    return True
