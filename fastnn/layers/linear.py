"""Linear: y = x·Wᵀ + b, weight (out_features, in_features) as in PyTorch."""
from __future__ import annotations

import numpy as np

from fastnn import init as _init
from fastnn.backends import ops
from fastnn.layers.base import Layer, float_input, register, shape_str
from fastnn.parameter import Parameter, check_dtype


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Linear: {name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"Linear: {name} must be >= 1, got {value}")
    return int(value)


@register
class Linear(Layer):
    """Fully connected layer: y = x·Wᵀ + b.

    Args:
        in_features: size of each input row (C).
        out_features: size of each output row (OC).
        bias: learn an additive bias (default True).
        init: "default" (PyTorch's U(±1/√in_features)), "xavier_uniform", "xavier_normal",
            "he_uniform", "he_normal" or "zeros"; the named schemes zero the bias.
        dtype: np.float32 (default) or np.float64.

    Shape:
        x (N, C) or (..., C)  ->  y (N, OC) or (..., OC)

    Example:
        >>> layer = Linear(3, 2)
        >>> layer(np.ones((4, 3))).shape
        (4, 2)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 init: str = "default", dtype=np.float32):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        if init not in _init.SCHEMES:
            raise ValueError(f"Linear: unknown init {init!r}; choose one of {', '.join(_init.SCHEMES)}")
        self.init = init
        dt = check_dtype(dtype, "Linear")
        self.weight = Parameter(np.zeros((self.out_features, self.in_features), dt))
        self.bias = Parameter(np.zeros(self.out_features, dt)) if bias else None
        self._parameters["weight"] = self.weight
        if self.bias is not None:
            self._parameters["bias"] = self.bias
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init.init_linear(self.weight, self.bias, self.init)

    def _as_rows(self, x, who: str) -> np.ndarray:
        x = float_input(x, who, self.weight.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            hint = ("flatten it first" if x.ndim > 2 and int(np.prod(x.shape[1:])) == self.in_features
                    else f"the last dimension must be {self.in_features}")
            raise ValueError(f"{self!r} expected input with {self.in_features} features, got shape "
                             f"{shape_str(x.shape)}; {hint}")
        return x.reshape(-1, self.in_features)

    def forward(self, x):
        rows = self._as_rows(x, "Linear")
        out = np.empty((rows.shape[0], self.out_features), self.weight.dtype)
        ops().linear_forward(out, rows, self.weight.data, None if self.bias is None else self.bias.data)
        lead = np.shape(x)[:-1]
        self._saved = (rows, lead)
        return out.reshape(*lead, self.out_features)

    def backward(self, grad_out):
        rows, lead = self._saved_or_raise()
        g = float_input(grad_out, "Linear.backward", self.weight.dtype)
        if g.shape != (*lead, self.out_features):
            raise ValueError(f"Linear.backward: grad_out has shape {shape_str(g.shape)} but the "
                             f"forward output had shape {shape_str((*lead, self.out_features))}")
        dx = np.empty(rows.shape, rows.dtype)  # C order, whatever the input's (a DataFrame's is often F)
        ops().linear_backward(dx, self.weight.grad, None if self.bias is None else self.bias.grad,
                              g.reshape(-1, self.out_features), rows, self.weight.data)
        return dx.reshape(*lead, self.in_features)

    def lower(self, plan, x):
        if not x.shape or x.shape[-1] != self.in_features:
            return None  # the layer path raises its error
        return plan.linear(x, self.weight, self.bias)

    def get_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "bias": self.bias is not None, "init": self.init,
                "dtype": np.dtype(self.weight.dtype).name}

    def output_shape(self, input_shape):
        return (*input_shape[:-1], self.out_features)

    def summary_label(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}{'' if self.bias is not None else ', bias=False'})"

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
