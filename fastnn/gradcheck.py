"""fnn.gradcheck: compare a layer's or model's backward with central finite differences.

The check runs on a float64 copy (so the differences are accurate to ~1e-10) and never
touches the original. Dropout masks are replayed by restoring the random generator before
every forward, so layers with randomness are checked too.
"""
from __future__ import annotations

import numpy as np

from fastnn.layers.base import Layer, build_layer
from fastnn.losses import Loss
from fastnn.random import generator


def _float64(config):
    """A get_config() dict with every "dtype" (nested layers' too) set to float64."""
    if isinstance(config, dict):
        return {k: "float64" if k == "dtype" else _float64(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_float64(v) for v in config]
    return config


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with its finite-difference estimate."""


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
    model = build_layer(type(layer).__name__, _float64(layer.get_config()))
    model.load_state_dict(layer.state_dict())
    model.train(layer.training)
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
