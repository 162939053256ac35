"""Convolution and pooling over images, NCHW as PyTorch: Conv2d, MaxPool2d, AvgPool2d,
AdaptiveAvgPool2d(1)."""
from __future__ import annotations

import numpy as np

from fastnn import init as _init
from fastnn.backends import ops
from fastnn.layers.base import Layer, float_input, register, shape_str
from fastnn.parameter import Parameter, check_dtype


def _int(value, name: str, who: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{who}: {name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{who}: {name} must be >= {low}, got {value}")
    return int(value)


def _pair(value, name: str, who: str, low: int) -> tuple:
    """An int or a pair of ints, as PyTorch takes kernel_size, stride, padding, dilation."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {value!r}")
        return tuple(_int(v, name, who, low) for v in value)
    v = _int(value, name, who, low)
    return v, v


def _out_size(size, pad, k, stride, dilation=1):
    return None if size is None else (size + pad - dilation * (k - 1) - 1) // stride + 1


def _image(layer, x, channels):
    """x as a float (N, C, H, W) batch with the layer's channel count, or a ValueError saying
    what is wrong and how to fix it."""
    name = type(layer).__name__
    x = float_input(x, name, layer.dtype)
    if x.ndim != 4:
        hint = ("; add the channel axis: x[:, None] (or x.reshape(N, 1, H, W))" if x.ndim == 3 and channels == 1
                else "; images are (N, C, H, W)")
        raise ValueError(f"{layer!r} expected a batch of images (N, C, H, W), got shape {shape_str(x.shape)}{hint}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{layer!r} expected {channels} input channels, got shape {shape_str(x.shape)}"
                         + ("; images are NCHW: move the channels first with x.transpose(0, 3, 1, 2)"
                            if x.shape[3] == channels else ""))
    return x


@register
class Conv2d(Layer):
    """2-D convolution (cross-correlation, as PyTorch) over NCHW images.

    Args:
        in_channels, out_channels: C and OC.
        kernel_size, stride, dilation: an int or a pair (height, width).
        padding: an int, a pair, "valid" (no padding) or "same" (stride 1: the output keeps the
            input's size; an even kernel pads one more row/column after than before, as PyTorch).
        groups: split the channels into this many independent groups (in_channels for a
            depthwise convolution).
        bias: learn a bias per output channel.
        init: "default" (PyTorch's U(±1/√fan_in), fan_in = in_channels/groups·kH·kW) or a
            scheme of fnn.init ("he_uniform", ...).
        dtype: np.float32 (default) or np.float64.

    Shape:
        x (N, C, H, W)  ->  y (N, OC, OH, OW), OH = (H + 2·pad − dilation·(kH − 1) − 1) // stride + 1

    Example:
        >>> conv = Conv2d(1, 8, 3, padding=1)
        >>> conv(np.zeros((2, 1, 28, 28))).shape
        (2, 8, 28, 28)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, init: str = "default", dtype=np.float32):
        super().__init__()
        who = "Conv2d"
        self.in_channels = _int(in_channels, "in_channels", who, 1)
        self.out_channels = _int(out_channels, "out_channels", who, 1)
        self.kernel_size = _pair(kernel_size, "kernel_size", who, 1)
        self.stride = _pair(stride, "stride", who, 1)
        self.dilation = _pair(dilation, "dilation", who, 1)
        self.groups = _int(groups, "groups", who, 1)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"Conv2d: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                             f"must both be divisible by groups ({self.groups})")
        if isinstance(padding, str) and padding == "valid":  # (PyTorch's spelling of no padding)
            padding = 0
        if padding == "same":
            if self.stride != (1, 1):
                raise ValueError(f"Conv2d: padding='same' needs stride 1, got stride={self.stride}")
            # total padding dilation·(k − 1) per axis, the odd one after (as PyTorch)
            th, tw = (d * (k - 1) for d, k in zip(self.dilation, self.kernel_size))
            self._pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        elif isinstance(padding, str):
            raise ValueError(f"Conv2d: padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
        else:
            ph, pw = _pair(padding, "padding", who, 0)
            self._pads = (ph, ph, pw, pw)
        self.padding = padding if padding == "same" else _pair(padding, "padding", who, 0)
        if init not in _init.SCHEMES:
            raise ValueError(f"Conv2d: unknown init {init!r}; choose one of {', '.join(_init.SCHEMES)}")
        self.init = init
        dt = check_dtype(dtype, who)
        kh, kw = self.kernel_size
        self.weight = Parameter(np.zeros((self.out_channels, self.in_channels // self.groups, kh, kw), dt))
        self.bias = Parameter(np.zeros(self.out_channels, dt)) if bias else None
        self._parameters["weight"] = self.weight
        if self.bias is not None:
            self._parameters["bias"] = self.bias
        _init.init_linear(self.weight, self.bias, init)

    def _kw(self) -> dict:
        return dict(stride=self.stride, padding=self._pads, dilation=self.dilation, groups=self.groups)

    def _out_hw(self, H, W):
        (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = self.kernel_size, self.stride, self.dilation, self._pads
        return _out_size(H, pt + pb, kh, sh, dh), _out_size(W, pl + pr, kw, sw, dw)

    def forward(self, x):
        x = _image(self, x, self.in_channels)
        oh, ow = self._out_hw(*x.shape[2:])
        if oh < 1 or ow < 1:
            raise ValueError(f"{self!r} needs images of at least {self._min_size()} pixels (with its padding), "
                             f"got shape {shape_str(x.shape)}; use larger images, more padding or a smaller kernel")
        out = np.empty((x.shape[0], self.out_channels, oh, ow), x.dtype)
        ops().conv2d_forward(out, x, self.weight.data, None if self.bias is None else self.bias.data, **self._kw())
        self._saved = x
        return out

    def _min_size(self) -> str:
        (kh, kw), (dh, dw), (pt, pb, pl, pr) = self.kernel_size, self.dilation, self._pads
        return f"{max(1, dh * (kh - 1) + 1 - pt - pb)}×{max(1, dw * (kw - 1) + 1 - pl - pr)}"

    def backward(self, grad_out):
        x = self._saved_or_raise()
        g = float_input(grad_out, "Conv2d.backward", x.dtype)
        want = (x.shape[0], self.out_channels, *self._out_hw(*x.shape[2:]))
        if g.shape != want:
            raise ValueError(f"Conv2d.backward: grad_out has shape {shape_str(g.shape)} but the forward output had "
                             f"shape {shape_str(want)}")
        dx = np.empty(x.shape, x.dtype)
        ops().conv2d_backward(dx, self.weight.grad, None if self.bias is None else self.bias.grad, g, x,
                              self.weight.data, **self._kw())
        return dx

    def lower(self, plan, x):
        if len(x.shape) != 3 or x.shape[0] != self.in_channels:
            return None
        oh, ow = self._out_hw(*x.shape[1:])
        if oh < 1 or ow < 1:
            return None
        return plan.conv2d(x, self.weight, self.bias, self.stride, self._pads, self.dilation, self.groups,
                           (self.out_channels, oh, ow))

    def output_shape(self, input_shape):
        return (input_shape[0], self.out_channels, *self._out_hw(*input_shape[2:4]))

    def get_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding if self.padding == "same" else list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None,
                "init": self.init, "dtype": np.dtype(self.weight.dtype).name}

    def summary_label(self) -> str:
        k = self.kernel_size[0] if self.kernel_size[0] == self.kernel_size[1] else self.kernel_size
        return f"Conv2d({self.in_channels}, {self.out_channels}, {k})"

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}",
                 f"stride={self.stride}"]
        if self.padding != (0, 0):
            parts.append(f"padding={self.padding!r}" if self.padding == "same" else f"padding={self.padding}")
        if self.dilation != (1, 1):
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        return ", ".join(parts)


class _Pool2d(Layer):
    kind = ""  # "max" or "avg": the kernels are <kind>pool2d_forward / _backward

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        who = type(self).__name__
        self.kernel_size = _pair(kernel_size, "kernel_size", who, 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride", who, 1)
        self.padding = _pair(padding, "padding", who, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"{who}: padding {self.padding} must be at most half the kernel size {self.kernel_size}")

    def _kw(self) -> dict:
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding)

    def _out_hw(self, H, W):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return _out_size(H, 2 * ph, kh, sh), _out_size(W, 2 * pw, kw, sw)

    def _check(self, x):
        x = _image(self, x, None)
        oh, ow = self._out_hw(*x.shape[2:])
        if oh < 1 or ow < 1:
            raise ValueError(f"{self!r} needs images of at least {self.kernel_size[0] - 2 * self.padding[0]}×"
                             f"{self.kernel_size[1] - 2 * self.padding[1]} pixels, got shape {shape_str(x.shape)}")
        return x, (x.shape[0], x.shape[1], oh, ow)

    def _grad(self, grad_out, shape, dtype):
        """grad_out checked against the output shape for an input of `shape`."""
        g = float_input(grad_out, f"{type(self).__name__}.backward", dtype)
        want = (shape[0], shape[1], *self._out_hw(*shape[2:]))
        if g.shape != want:
            raise ValueError(f"{type(self).__name__}.backward: grad_out has shape {shape_str(g.shape)} but the "
                             f"forward output had shape {shape_str(want)}")
        return g

    def lower(self, plan, x):
        if len(x.shape) != 3:
            return None
        oh, ow = self._out_hw(*x.shape[1:])
        if oh < 1 or ow < 1:
            return None
        return plan.pool2d(x, self.kind, self.kernel_size, self.stride, self.padding, (x.shape[0], oh, ow))

    def output_shape(self, input_shape):
        return (*input_shape[:2], *self._out_hw(*input_shape[2:4]))

    def get_config(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}

    def extra_repr(self) -> str:
        one = lambda p: p[0] if p[0] == p[1] else p
        parts = [f"kernel_size={one(self.kernel_size)}"]
        if self.stride != self.kernel_size:
            parts.append(f"stride={one(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"padding={one(self.padding)}")
        return ", ".join(parts)


@register
class MaxPool2d(_Pool2d):
    """The largest value of each kernel_size window, every `stride` pixels (default: the
    window, so windows do not overlap). Padding never wins. Its gradient goes to the value
    that won (the first of equal ones; a NaN wins, as PyTorch has it).

    Example:
        >>> MaxPool2d(2)(np.arange(16.0).reshape(1, 1, 4, 4))
        array([[[[ 5.,  7.],
                 [13., 15.]]]])
    """
    kind = "max"

    def forward(self, x):
        x, shape = self._check(x)
        out, argmax = np.empty(shape, x.dtype), np.empty(shape, np.int32)
        ops().maxpool2d_forward(out, argmax, x, **self._kw())
        self._saved = (x.shape, x.dtype, argmax)
        return out

    def backward(self, grad_out):
        shape, dtype, argmax = self._saved_or_raise()
        g = self._grad(grad_out, shape, dtype)
        dx = np.empty(shape, dtype)
        ops().maxpool2d_backward(dx, g, argmax, **self._kw())
        return dx


@register
class AvgPool2d(_Pool2d):
    """The mean of each kernel_size window, every `stride` pixels (default: the window).
    Padding counts as zeros (PyTorch's count_include_pad=True).

    Example:
        >>> AvgPool2d(2)(np.arange(16.0).reshape(1, 1, 4, 4))
        array([[[[ 2.5,  4.5],
                 [10.5, 12.5]]]])
    """
    kind = "avg"

    def forward(self, x):
        x, shape = self._check(x)
        out = np.empty(shape, x.dtype)
        ops().avgpool2d_forward(out, x, **self._kw())
        self._saved = (x.shape, x.dtype)
        return out

    def backward(self, grad_out):
        shape, dtype = self._saved_or_raise()
        g = self._grad(grad_out, shape, dtype)
        dx = np.empty(shape, dtype)
        ops().avgpool2d_backward(dx, g, **self._kw())
        return dx


@register
class AdaptiveAvgPool2d(Layer):
    """Global average pooling: (N, C, H, W) -> (N, C, 1, 1), the mean of each channel's image
    (PyTorch's AdaptiveAvgPool2d(1), the only output size it takes here).

    Example:
        >>> AdaptiveAvgPool2d(1)(np.ones((2, 3, 4, 4))).shape
        (2, 3, 1, 1)
    """

    def __init__(self, output_size=1):
        super().__init__()
        if output_size not in (1, (1, 1), [1, 1]):
            raise ValueError(f"AdaptiveAvgPool2d: only output_size=1 (global average pooling) is supported, got "
                             f"{output_size!r}")
        self.output_size = 1

    def _pool(self, shape):
        return AvgPool2d(kernel_size=tuple(int(s) for s in shape[-2:]))

    def forward(self, x):
        x = _image(self, x, None)
        pool = self._pool(x.shape)
        out = pool.forward(x)
        self._saved = pool
        return out

    def backward(self, grad_out):
        return self._saved_or_raise().backward(grad_out)

    def lower(self, plan, x):
        if len(x.shape) != 3:
            return None
        return plan.pool2d(x, "avg", x.shape[1:], (1, 1), (0, 0), (x.shape[0], 1, 1))

    def output_shape(self, input_shape):
        return (*input_shape[:2], 1, 1)

    def get_config(self) -> dict:
        return {"output_size": 1}

    def extra_repr(self) -> str:
        return "output_size=1"
