"""Batch normalization: BatchNorm1d on (N, C) or (N, C, L), BatchNorm2d on (N, C, H, W), as
PyTorch's: the batch's statistics in training (and the running ones updated), the running ones
in eval mode."""
from __future__ import annotations

import numpy as np

from fastnn.backends import ops
from fastnn.layers.base import Layer, float_input, register, shape_str
from fastnn.parameter import Parameter, check_dtype


class _BatchNorm(Layer):
    ndims: tuple = ()    # the input ranks the layer takes
    expect = ""          # how the input is described in errors

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, dtype=np.float32):
        super().__init__()
        who = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"{who}: num_features must be an int >= 1, got {num_features!r}")
        for name, v, ok in (("eps", eps, lambda v: v > 0), ("momentum", momentum, lambda v: 0 <= v <= 1)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not ok(v):
                raise ValueError(f"{who}: {name} must be a number {'> 0' if name == 'eps' else 'in [0, 1]'}, got {v!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        dt = check_dtype(dtype, who)
        C = self.num_features
        self.weight = Parameter(np.ones(C, dt))
        self.bias = Parameter(np.zeros(C, dt))
        self._parameters["weight"] = self.weight
        self._parameters["bias"] = self.bias
        self._buffers["running_mean"] = np.zeros(C, dt)
        self._buffers["running_var"] = np.ones(C, dt)
        self._buffers["num_batches_tracked"] = np.zeros((), np.int64)

    @property
    def running_mean(self) -> np.ndarray:
        return self._buffers["running_mean"]

    @property
    def running_var(self) -> np.ndarray:
        return self._buffers["running_var"]

    @property
    def num_batches_tracked(self) -> np.ndarray:
        return self._buffers["num_batches_tracked"]

    def _check(self, x):
        name = type(self).__name__
        x = float_input(x, name, self.weight.dtype)
        if x.ndim not in self.ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{self!r} expected {self.expect} with C = {self.num_features}, got shape "
                             f"{shape_str(x.shape)}")
        return x

    def forward(self, x):
        x = self._check(x)
        out = np.empty(x.shape, x.dtype)
        C = self.num_features
        if self.training:
            count = x.size // C
            if count == 1:
                raise ValueError(f"{self!r} needs more than one value per channel in training, got shape "
                                 f"{shape_str(x.shape)}; use batches of 2 samples or more")
            mean, var = np.zeros(C, x.dtype), np.ones(C, x.dtype)
            if count:  # (an empty batch has no statistics: as PyTorch, the running ones stay and the count goes on)
                ops().batchnorm_stats(mean, var, x)
                ops().batchnorm_forward(out, x, mean, var, self.weight.data, self.bias.data, self.eps)
                ops().batchnorm_update(self.running_mean, self.running_var, mean, var, count, self.momentum)
            self.num_batches_tracked[...] += 1
        else:
            mean, var = self.running_mean.copy(), self.running_var.copy()
            ops().batchnorm_forward(out, x, mean, var, self.weight.data, self.bias.data, self.eps)
        self._saved = (x, mean, var, self.training)
        return out

    def backward(self, grad_out):
        x, mean, var, batch_stats = self._saved_or_raise()
        g = self._grad_like(grad_out, x)
        dx = np.empty(x.shape, x.dtype)
        ops().batchnorm_backward(dx, self.weight.grad, self.bias.grad, g, x, mean, var, self.weight.data, self.eps,
                                 batch_stats)
        return dx

    def lower(self, plan, x):
        if len(x.shape) + 1 not in self.ndims or x.shape[0] != self.num_features:
            return None
        return plan.batchnorm(x, self.weight, self.bias, self.running_mean, self.running_var,
                              self.num_batches_tracked, self.eps, self.momentum, self.training)

    def get_config(self) -> dict:
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "dtype": np.dtype(self.weight.dtype).name}

    def summary_label(self) -> str:
        return f"{type(self).__name__}({self.num_features})"

    def smallest_batch(self, sample_shape: tuple | None = None) -> int:
        # training takes more than one value per channel, as PyTorch: two samples of (C,) or of
        # 1×1 images; of an unknown shape, BatchNorm1d assumes (C,)
        if not self.training:
            return 1
        if sample_shape is None:
            return 2 if isinstance(self, BatchNorm1d) else 1
        return 2 if int(np.prod(sample_shape[1:], dtype=np.int64)) == 1 else 1

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


@register
class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) features (or (N, C, L) sequences), per channel:
    y = (x − mean) / √(var + eps) · weight + bias. In training, mean and var are the batch's
    (biased variance) and the running statistics move toward them by `momentum` (the variance
    unbiased); in eval mode the running statistics are used. running_mean, running_var and
    num_batches_tracked are in state_dict, saved with the model, and no optimizer touches them.

    Example:
        >>> bn = BatchNorm1d(3)
        >>> y = bn(np.random.default_rng(0).normal(5, 2, (100, 3)))
        >>> bool(abs(y.mean()) < 1e-4), bn.running_mean.round(1).tolist()
        (True, [0.5, 0.5, 0.5])
    """
    ndims = (2, 3)
    expect = "(N, C) or (N, C, L)"


@register
class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) images per channel, over the batch and the pixels;
    otherwise as BatchNorm1d.

    Example:
        >>> BatchNorm2d(8)(np.zeros((2, 8, 4, 4))).shape
        (2, 8, 4, 4)
    """
    ndims = (4,)
    expect = "images (N, C, H, W)"
