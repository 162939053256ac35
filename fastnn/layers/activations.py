"""Activation layers. Each is one forward kernel and one backward kernel of the backend;
sigmoid and tanh differentiate from their output, the others from their input."""
from __future__ import annotations

import numpy as np

from fastnn.backends import ops
from fastnn.layers.base import Layer, float_input, register


class _Activation(Layer):
    kernel = ""            # the backend ops are f"{kernel}_forward" / f"{kernel}_backward"
    saves_output = False   # backward takes the forward output y instead of the input x

    def _args(self) -> tuple:
        return ()

    def lower(self, plan, x):
        return plan.activation(x, self.kernel, *self._args())

    def forward(self, x):
        x = float_input(x, type(self).__name__)
        out = np.empty(x.shape, x.dtype)
        getattr(ops(), self.kernel + "_forward")(out, x, *self._args())
        self._saved = out if self.saves_output else x
        return out

    def backward(self, grad_out):
        saved = self._saved_or_raise()
        g = self._grad_like(grad_out, saved)
        dx = np.empty(saved.shape, saved.dtype)
        getattr(ops(), self.kernel + "_backward")(dx, g, saved, *self._args())
        return dx


@register
class ReLU(_Activation):
    """max(x, 0); its derivative at 0 is taken as 0, as PyTorch does.

    Example:
        >>> ReLU()(np.array([-1.0, 2.0]))
        array([0., 2.])
    """
    kernel = "relu"


@register
class LeakyReLU(_Activation):
    """x if x > 0 else negative_slope·x.

    Args:
        negative_slope: slope for negative inputs (default 0.01).

    Example:
        >>> fnn.LeakyReLU(0.1)(np.array([-2.0, 3.0]))
        array([-0.2,  3. ])
    """
    kernel = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float, np.floating)):
            raise TypeError(f"LeakyReLU: negative_slope must be a number, got {type(negative_slope).__name__}")
        if not np.isfinite(negative_slope):
            raise ValueError(f"LeakyReLU: negative_slope must be finite, got {negative_slope}")
        self.negative_slope = float(negative_slope)

    def _args(self):
        return (self.negative_slope,)

    def get_config(self):
        return {"negative_slope": self.negative_slope}


@register
class Sigmoid(_Activation):
    """1 / (1 + e^−x), overflow-free for any x; derivative y(1 − y).

    Example:
        >>> fnn.Sigmoid()(np.array([0.0]))
        array([0.5])
    """
    kernel = "sigmoid"
    saves_output = True


@register
class Tanh(_Activation):
    """tanh(x); derivative 1 − y².

    Example:
        >>> fnn.Tanh()(np.array([0.0, 100.0]))
        array([0., 1.])
    """
    kernel = "tanh"
    saves_output = True


@register
class GELU(_Activation):
    """x·Φ(x), the exact erf form (PyTorch's default GELU).

    Example:
        >>> fnn.GELU()(np.array([0.0, 10.0]))
        array([ 0., 10.])
    """
    kernel = "gelu"


@register
class Softmax(_Activation):
    """exp(x) / Σ exp(x) along `dim` (default the last), computed stably.

    For training a classifier use CrossEntropyLoss on the logits instead: it fuses the
    softmax and the log and is exact where softmax followed by a log underflows.

    Example:
        >>> fnn.Softmax()(np.zeros((1, 4)))
        array([[0.25, 0.25, 0.25, 0.25]])
    """
    kernel = "softmax"
    saves_output = True

    def __init__(self, dim: int = -1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Softmax: dim must be an int, got {type(dim).__name__}")
        self.dim = int(dim)

    def _axis(self, ndim: int) -> int:
        if not -max(ndim, 1) <= self.dim < max(ndim, 1):
            raise ValueError(f"Softmax(dim={self.dim}) got an input with {ndim} dimensions")
        return self.dim % max(ndim, 1)

    def lower(self, plan, x):
        # over the last axis only (the layer path moves any other axis there and back)
        if x.shape and self.dim in (-1, len(x.shape)):
            return plan.softmax(x)
        return None

    def forward(self, x):
        x = float_input(x, "Softmax")
        axis = self._axis(x.ndim)
        if x.ndim <= 1 or axis == x.ndim - 1:
            return super().forward(x)
        y = np.moveaxis(super().forward(np.moveaxis(x, axis, -1)), -1, axis)
        self._saved = y
        return y

    def backward(self, grad_out):
        y = self._saved_or_raise()
        axis = self._axis(y.ndim)
        if y.ndim <= 1 or axis == y.ndim - 1:
            return super().backward(grad_out)
        g = self._grad_like(grad_out, y)
        g_last, y_last = np.moveaxis(g, axis, -1), np.moveaxis(y, axis, -1)
        dx_last = np.empty(y_last.shape, y.dtype)
        ops().softmax_backward(dx_last, g_last, y_last)
        return np.moveaxis(dx_last, -1, axis)

    def get_config(self):
        return {"dim": self.dim}


@register
class Step(_Activation):
    """The M-P neuron's threshold: 1 where x >= threshold, else 0. Forward only.

    Args:
        threshold: θ (default 0).

    Example:
        >>> fnn.Step()(np.array([-1.0, 0.0, 2.0]))
        array([0., 1., 1.])
    """
    kernel = "step"

    def __init__(self, threshold: float = 0.0):
        super().__init__()
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)):
            raise TypeError(f"Step: threshold must be a number, got {type(threshold).__name__}")
        self.threshold = float(threshold)

    def _args(self):
        return (self.threshold,)

    def lower(self, plan, x):
        # forward only: a training plan cannot hold it (its backward raises on the layer path)
        return None if plan.training else super().lower(plan, x)

    def backward(self, grad_out):
        raise RuntimeError("Step has no usable gradient (its derivative is 0 wherever it exists), so "
                           "backpropagation cannot train through it; use Sigmoid or Tanh for training, "
                           "or fnn.Perceptron for the classic perceptron rule")

    def get_config(self):
        return {"threshold": self.threshold}
