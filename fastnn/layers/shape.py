"""Dropout and Flatten: layers without parameters that reshape or mask."""
from __future__ import annotations

import numpy as np

from fastnn.backends import ops
from fastnn.layers.base import Layer, float_input, register, shape_str
from fastnn.random import uniform


@register
class Dropout(Layer):
    """Inverted dropout: in training, zero each value with probability p and scale the rest
    by 1/(1 − p); in eval mode, the identity. Masks come from fnn.manual_seed's generator.

    Args:
        p: drop probability in [0, 1).

    Example:
        >>> d = Dropout(0.5).eval()
        >>> d(np.ones(3))
        array([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)):
            raise TypeError(f"Dropout: p must be a number, got {type(p).__name__}")
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}; p is the probability of "
                             "dropping a value, e.g. 0.2 or 0.5")
        self.p = float(p)

    def forward(self, x):
        x = float_input(x, "Dropout")
        if not self.training or self.p == 0.0:
            self._saved = (None, x.shape, 0.0)
            return x
        # the mask is kept as the uniforms it is drawn from: x · [u >= p] / (1 − p)
        u = uniform(x.size, x.dtype).reshape(x.shape)  # generator().random(x.shape, x.dtype)
        out = np.empty(x.shape, x.dtype)
        ops().dropout_apply(out, x, u, self.p)
        self._saved = (u, x.shape, self.p)
        return out

    def lower(self, plan, x):
        # the identity outside training (and at p = 0), where it draws nothing either
        if plan.training and self.training and self.p > 0.0:
            return plan.dropout(x, self.p)
        return x

    def backward(self, grad_out):
        u, shape, p = self._saved_or_raise()
        if u is None:
            g = float_input(grad_out, "Dropout.backward")
            if g.shape != shape:
                raise ValueError(f"Dropout.backward: grad_out has shape {shape_str(g.shape)} but the "
                                 f"forward output had shape {shape_str(shape)}")
            return g
        g = self._grad_like(grad_out, u)
        dx = np.empty(shape, u.dtype)
        ops().dropout_apply(dx, g, u, p)
        return dx

    def get_config(self):
        return {"p": self.p}


@register
class Flatten(Layer):
    """Flatten every dimension after the first: (N, d1, d2, ...) -> (N, d1·d2·...).

    Example:
        >>> fnn.Flatten()(np.zeros((2, 1, 28, 28))).shape
        (2, 784)
    """

    def forward(self, x):
        x = float_input(x, "Flatten")
        if x.ndim == 0:
            raise ValueError("Flatten expects a batch (N, ...), got a scalar")
        self._saved = x.shape
        # (the width spelled out: -1 cannot be worked out from an empty batch, which PyTorch flattens too)
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))

    def backward(self, grad_out):
        shape = self._saved_or_raise()
        g = float_input(grad_out, "Flatten.backward")
        flat = (shape[0], int(np.prod(shape[1:], dtype=np.int64)))
        if g.shape != flat:
            raise ValueError(f"Flatten.backward: grad_out has shape {shape_str(g.shape)}, expected "
                             f"{shape_str(flat)}")
        return g.reshape(shape)

    def lower(self, plan, x):
        return plan.reshape(x, (int(np.prod(x.shape, dtype=np.int64)),))

    def output_shape(self, input_shape):
        rest = input_shape[1:]
        n = None if any(s is None for s in rest) else int(np.prod(rest, dtype=np.int64))
        return (input_shape[0], n)
