"""The NumPy twin of every C++ kernel: same names, same arguments, same checks, same math.

This is the readable reference. Each function writes into the outputs it is given (outputs
first, then inputs, then parameters), exactly like its C++ counterpart in csrc/, and the test
harness (tests/harness.py) holds the two to agreement. Shape letters: N batch, C in-features or
classes, OC out-features.
"""
from __future__ import annotations

import math
import operator

import numpy as np

# ---------------------------------------------------------------- argument checks
# These mirror csrc/bindings.cpp so both backends reject bad input with the same errors.


def _shape(a) -> str:
    return str(tuple(int(s) for s in np.shape(a)))


def _out(op, name, a):
    """An output / in-place buffer: checked, never converted (a copy would drop the result)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy array it can write into, got "
                        f"{type(a).__name__}; allocate it with np.empty(shape, dtype=np.float32)")
    if a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: {name} must be float32 or float64, got {a.dtype}; it is written "
                        "in place, so it cannot be converted")
    if not a.flags.c_contiguous:
        raise TypeError(f"{op}: {name} with shape {_shape(a)} must be C-contiguous; pass "
                        f"np.ascontiguousarray({name})")
    if not a.flags.writeable:
        raise TypeError(f"{op}: {name} is read-only; pass a writeable array")
    if not a.flags.aligned:
        raise TypeError(f"{op}: {name} with shape {_shape(a)} is not aligned to its {a.itemsize}-byte items "
                        "(it starts at an odd byte offset); allocate it with np.empty")
    return a


def _opt_out(op, name, a, like):
    if a is None:
        return None
    _out(op, name, a)
    if a.dtype != like.dtype:
        raise TypeError(f"{op}: {name} has dtype {a.dtype} but the other outputs are "
                        f"{like.dtype}; use one dtype for all outputs")
    return a


def _in(op, name, x, dtype):
    """A read-only input, converted to `dtype` and C order if needed."""
    if x is None:
        raise TypeError(f"{op}: {name} must be an array, got None")
    try:
        return np.asarray(x, dtype=dtype, order="C")  # keeps 0-d arrays 0-d
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} ({type(x).__name__}) cannot be converted to "
                        f"{np.dtype(dtype).name}") from None


def _ndim(op, name, a, nd, fix):
    if a.ndim != nd:
        raise ValueError(f"{op}: {name} must be {nd}-D, got shape {_shape(a)}; {fix}")


def _same_shape(op, na, a, nb, b):
    if a.shape != b.shape:
        raise ValueError(f"{op}: {na} has shape {_shape(a)} but {nb} has shape {_shape(b)}; "
                         "they must have the same shape")


def _shape2(op, name, a, r, c):
    if a.shape != (r, c):
        raise ValueError(f"{op}: {name} has shape {_shape(a)}; expected ({r}, {c})")


def _span(a):
    lo = a.__array_interface__["data"][0]
    return lo, lo + a.nbytes


def _no_overlap(op, out_name, out, in_name, x, allow_identical):
    if out.nbytes == 0 or x.nbytes == 0:
        return
    (lo1, hi1), (lo2, hi2) = _span(out), _span(x)
    if hi1 <= lo2 or hi2 <= lo1:
        return
    if allow_identical and lo1 == lo2 and out.nbytes == x.nbytes:
        return
    raise ValueError(f"{op}: {out_name} shares memory with {in_name}; pass a separate output array")


# ---------------------------------------------------------------- scalar activations
_erf = np.frompyfunc(math.erf, 1, 1)  # NumPy has no erf; math.erf is exact to double precision


def _relu(x):
    return np.maximum(x, 0)


def _sigmoid(x):
    # Never exponentiates a large positive number: exp(-|x|) <= 1.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _erf_of(x):
    """erf elementwise in x's dtype (a 0-d x too: frompyfunc returns a bare float there)."""
    return np.asarray(_erf(x * 0.70710678118654752440), dtype=np.float64).astype(x.dtype)


def _gelu(x):
    return (0.5 * x * (1 + _erf_of(x))).astype(x.dtype, copy=False)


def _gelu_grad(x):
    cdf = 0.5 * (1 + _erf_of(x))
    pdf = np.exp(-0.5 * x * x) * x.dtype.type(0.39894228040143267794)
    return (cdf + x * pdf).astype(x.dtype, copy=False)


_ACTIVATIONS = {"none": lambda z: z, "relu": _relu, "sigmoid": _sigmoid, "tanh": np.tanh, "gelu": _gelu}


# ---------------------------------------------------------------- gemm
def gemm(c, a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, bias=None, activation="none"):
    """c = act(alpha * op(a) @ op(b) + beta * c + bias), in place.

    a: (M, K), or (K, M) when trans_a     b: (K, N), or (N, K) when trans_b
    c: (M, N) output                       bias: (N,) or None
    beta == 0 overwrites c without reading it.
    """
    op = "gemm"
    _out(op, "c", c)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"gemm: activation must be one of 'none', 'relu', 'sigmoid', 'tanh', "
                         f"'gelu', got '{activation}'")
    a, b = _in(op, "a", a, c.dtype), _in(op, "b", b, c.dtype)
    _ndim(op, "a", a, 2, "pass a matrix")
    _ndim(op, "b", b, 2, "pass a matrix")
    _ndim(op, "c", c, 2, "pass a matrix")
    opa, opb = (a.T if trans_a else a), (b.T if trans_b else b)
    (M, K), (Kb, N) = opa.shape, opb.shape
    if K != Kb:
        raise ValueError(f"gemm: op(a) is {M}x{K} and op(b) is {Kb}x{N} (a {_shape(a)}, "
                         f"trans_a={int(trans_a)}; b {_shape(b)}, trans_b={int(trans_b)}); inner "
                         "dimensions must agree")
    if c.shape != (M, N):
        raise ValueError(f"gemm: c has shape {_shape(c)} but op(a)·op(b) is ({M}, {N}); allocate "
                         "c with that shape")
    if bias is not None:
        bias = _in(op, "bias", bias, c.dtype)
        if bias.shape != (N,):
            raise ValueError(f"gemm: bias has shape {_shape(bias)} but c has {N} columns; pass a "
                             f"bias of shape ({N},)")
    _no_overlap(op, "c", c, "a", a, False)
    _no_overlap(op, "c", c, "b", b, False)
    T = c.dtype.type
    r = T(alpha) * (opa @ opb)
    if beta != 0:
        r = r + T(beta) * c
    if bias is not None:
        r = r + bias
    c[...] = _ACTIVATIONS[activation](r)


gemm_reference = gemm


# ---------------------------------------------------------------- linear
def _check_linear(op, x, w):
    _ndim(op, "weight", w, 2, "weight is (out_features, in_features)")
    if x.ndim != 2:
        fix = "flatten it first" if x.ndim > 2 else "reshape it to (N, features)"
        raise ValueError(f"{op}: x must be 2-D (N, {w.shape[1]}), got shape {_shape(x)}; {fix}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"{op}: expected input with {w.shape[1]} features, got shape "
                         f"{_shape(x)}; the weight is {_shape(w)}")
    return x.shape[0], x.shape[1], w.shape[0]


def _bias(op, b, OC, dtype):
    if b is None:
        return None
    b = _in(op, "bias", b, dtype)
    if b.shape != (OC,):
        raise ValueError(f"{op}: bias has shape {_shape(b)}; expected ({OC},)")
    return b


def linear_forward(out, x, weight, bias):
    """out = x · weightᵀ + bias.

    out:    (N, OC)  written
    x:      (N, C)
    weight: (OC, C)
    bias:   (OC,) or None
    """
    op = "linear_forward"
    _out(op, "out", out)
    x, w = _in(op, "x", x, out.dtype), _in(op, "weight", weight, out.dtype)
    N, _, OC = _check_linear(op, x, w)
    b = _bias(op, bias, OC, out.dtype)
    _shape2(op, "out", out, N, OC)
    _no_overlap(op, "out", out, "x", x, False)
    _no_overlap(op, "out", out, "weight", w, False)
    if b is not None:
        _no_overlap(op, "out", out, "bias", b, False)
    np.matmul(x, w.T, out=out)
    if b is not None:
        out += b


def linear_backward(dx, dweight, dbias, dout, x, weight, accumulate=True):
    """Backward of linear_forward. Parameter gradients are ADDED to (+=), or written when
    accumulate is False (a compiled plan's step: zero_grad and backward in one); dx is written.

    dx:      (N, C)   written = dout · weight            (None: skip, e.g. the first layer)
    dweight: (OC, C)  += doutᵀ · x
    dbias:   (OC,)    += Σ_n dout[n]                     (None: layer without bias)
    dout:    (N, OC)
    x:       (N, C)   the forward input
    weight:  (OC, C)
    """
    op = "linear_backward"
    _out(op, "dweight", dweight)
    dx = _opt_out(op, "dx", dx, dweight)
    dbias = _opt_out(op, "dbias", dbias, dweight)
    dt = dweight.dtype
    x, w, dout = _in(op, "x", x, dt), _in(op, "weight", weight, dt), _in(op, "dout", dout, dt)
    N, C, OC = _check_linear(op, x, w)
    _shape2(op, "dout", dout, N, OC)
    _shape2(op, "dweight", dweight, OC, C)
    if dbias is not None:
        if dbias.shape != (OC,):
            raise ValueError(f"{op}: dbias has shape {_shape(dbias)}; expected ({OC},)")
        for n, a in (("dout", dout), ("x", x), ("weight", w), ("dweight", dweight)):
            _no_overlap(op, "dbias", dbias, n, a, False)
    if dx is not None:
        _shape2(op, "dx", dx, N, C)
        for n, a in (("dout", dout), ("x", x), ("weight", w), ("dweight", dweight)):
            _no_overlap(op, "dx", dx, n, a, False)
        if dbias is not None:
            _no_overlap(op, "dx", dx, "dbias", dbias, False)
    for n, a in (("dout", dout), ("x", x), ("weight", w)):
        _no_overlap(op, "dweight", dweight, n, a, False)
    if dx is not None:
        np.matmul(dout, w, out=dx)
    if accumulate:
        dweight += dout.T @ x
    else:
        dweight[...] = dout.T @ x
    if dbias is not None:
        if accumulate:
            dbias += dout.sum(axis=0, dtype=dt)
        else:
            dbias[...] = dout.sum(axis=0, dtype=dt)


# ---------------------------------------------------------------- activations
def _elementwise(op, out_name, out, *inputs):
    """Checks an output and converts inputs ((name, array) pairs), each of the shape of the
    array before it and not partly overlapping the output (exactly in place is fine)."""
    _out(op, out_name, out)
    converted, prev_name, prev = [], out_name, out
    for name, a in inputs:
        a = _in(op, name, a, out.dtype)
        _same_shape(op, prev_name, prev, name, a)
        _no_overlap(op, out_name, out, name, a, True)
        converted.append(a)
        prev_name, prev = name, a
    return converted


def _unary(op, out, x, f, xname="x"):
    (x,) = _elementwise(op, "out", out, (xname, x))
    out[...] = f(x)


def _unary_backward(op, dx, dout, saved, saved_name, f):
    dout, s = _elementwise(op, "dx", dx, ("dout", dout), (saved_name, saved))
    dx[...] = dout * f(s)


def relu_forward(out, x):
    """out = max(x, 0), NaN passing through.   out, x: any shape, the same."""
    _unary("relu_forward", out, x, _relu)


def relu_backward(dx, dout, x):
    """dx = dout · [not x <= 0]   (ReLU'(0) = 0 and ReLU'(NaN) = 1, as PyTorch)."""
    _unary_backward("relu_backward", dx, dout, x, "x", lambda x: (~(x <= 0)).astype(x.dtype))


def leaky_relu_forward(out, x, negative_slope=0.01):
    """out = x if x > 0 else negative_slope · x."""
    T = out.dtype.type
    _unary("leaky_relu_forward", out, x, lambda x: np.where(x > 0, x, x * T(negative_slope)))


def leaky_relu_backward(dx, dout, x, negative_slope=0.01):
    """dx = dout · (1 if x > 0 else negative_slope)."""
    T = dx.dtype.type
    _unary_backward("leaky_relu_backward", dx, dout, x, "x",
                    lambda x: np.where(x > 0, T(1), T(negative_slope)))


def sigmoid_forward(out, x):
    """out = 1 / (1 + exp(−x)), computed without overflow."""
    _unary("sigmoid_forward", out, x, _sigmoid)


def sigmoid_backward(dx, dout, y):
    """dx = dout · y(1 − y), from the forward output y."""
    _unary_backward("sigmoid_backward", dx, dout, y, "y", lambda y: y * (1 - y))


def tanh_forward(out, x):
    """out = tanh(x)."""
    _unary("tanh_forward", out, x, np.tanh)


def tanh_backward(dx, dout, y):
    """dx = dout · (1 − y²), from the forward output y."""
    _unary_backward("tanh_backward", dx, dout, y, "y", lambda y: 1 - y * y)


def gelu_forward(out, x):
    """out = x · Φ(x) = ½x(1 + erf(x/√2)), exact GELU as PyTorch's default."""
    _unary("gelu_forward", out, x, _gelu)


def gelu_backward(dx, dout, x):
    """dx = dout · (Φ(x) + x·φ(x))."""
    _unary_backward("gelu_backward", dx, dout, x, "x", _gelu_grad)


def step_forward(out, x, threshold=0.0):
    """out = 1 if x >= threshold else 0 (the M-P neuron). No backward: its derivative is 0."""
    T = out.dtype.type
    _unary("step_forward", out, x, lambda x: (x >= T(threshold)).astype(out.dtype))


def dropout_apply(out, x, u, p):
    """out = x · [u >= p] / (1 − p): inverted dropout with its mask drawn as uniforms u in [0, 1).
    Forward applies it to the input, backward to the gradient, with the same u."""
    op = "dropout_apply"
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: p must be in [0, 1), got {p}")
    x, u = _elementwise(op, "out", out, ("x", x), ("u", u))
    T = out.dtype.type
    with np.errstate(invalid="ignore"):  # a dropped infinity is NaN (inf · 0), as in C++
        out[...] = x * ((u >= T(p)).astype(out.dtype) * T(1.0 / (1.0 - p)))


def add_forward(out, a, b):
    """out = a + b elementwise (a residual block's sum).   out, a, b: any shape, the same."""
    a, b = _elementwise("add_forward", "out", out, ("a", a), ("b", b))
    out[...] = a + b


def _rows(op, out, a, an, b=None, bn=""):
    _out(op, "out" if b is None else "dx", out)
    a = _in(op, an, a, out.dtype)
    if a.ndim == 0:
        raise ValueError(f"{op}: {an} must have at least 1 dimension, got a scalar")
    _same_shape(op, "out", out, an, a)
    _no_overlap(op, "out", out, an, a, True)
    if b is not None:
        b = _in(op, bn, b, out.dtype)
        _same_shape(op, an, a, bn, b)
        _no_overlap(op, "out", out, bn, b, True)
    return a, b


def softmax_forward(out, x):
    """Softmax over the last axis.   out, x: (..., C)."""
    x, _ = _rows("softmax_forward", out, x, "x")
    if x.size == 0:
        return
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    out[...] = e * (1 / e.sum(axis=-1, keepdims=True))


def softmax_backward(dx, dout, y):
    """dx = y ⊙ (dout − Σ_c dout ⊙ y), from the forward output y.   dx, dout, y: (..., C)."""
    dout, y = _rows("softmax_backward", dx, dout, "dout", y, "y")
    if dout.size == 0:
        return
    dx[...] = y * (dout - (dout * y).sum(axis=-1, keepdims=True))


# ---------------------------------------------------------------- images (NCHW)
# Shape letters: N batch, C channels, H×W an image, OC output channels, KH×KW a kernel or
# window, OH×OW the output image, G groups.
def _pair(op, name, v, low):
    """An int or a pair of ints, each >= low (stride, dilation, kernel size, padding)."""
    try:
        a, b = (v, v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else tuple(v)
        a, b = operator.index(a), operator.index(b)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {v!r}") from None
    if a < low or b < low:
        raise ValueError(f"{op}: {name} must be >= {low}, got ({a}, {b})")
    return a, b


def _padding(op, v):
    """(top, bottom, left, right) from an int, a pair (rows, columns), or four ints."""
    try:
        p = (operator.index(v),) if not isinstance(v, (str, bytes)) and np.ndim(v) == 0 else \
            tuple(operator.index(i) for i in v) if not isinstance(v, (str, bytes)) else ()
    except TypeError:
        p = ()
    if len(p) not in (1, 2, 4):
        raise TypeError(f"{op}: padding must be an int, a pair of ints or four ints (top, bottom, left, right), "
                        f"got {v!r}")
    if min(p) < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {v!r}")
    return (p * 4) if len(p) == 1 else (p[0], p[0], p[1], p[1]) if len(p) == 2 else p


def _out_size(op, axis, size, pad, k, stride, dilation):
    span, padded = dilation * (k - 1) + 1, size + pad
    if padded < span:
        raise ValueError(f"{op}: the input's {axis} is {size} ({padded} padded), smaller than the kernel's span "
                         f"of {span}; use a smaller kernel or more padding, or a larger image")
    return (padded - span) // stride + 1


def _ndim4(op, name, a):
    if a.ndim != 4:
        raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W), got shape {_shape(a)}")


def _conv_geometry(op, x, w, stride, padding, dilation, groups):
    _ndim4(op, "x", x)
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D (out_channels, in_channels/groups, kH, kW), got shape "
                         f"{_shape(w)}")
    if groups < 1:
        raise ValueError(f"{op}: groups must be >= 1, got {groups}")
    N, C, H, W = x.shape
    OC, Cg, KH, KW = w.shape
    if OC % groups or C != Cg * groups:
        raise ValueError(f"{op}: x has {C} channels and weight has shape {_shape(w)} with groups={groups}; the "
                         "weight must be (out_channels, in_channels/groups, kH, kW) with both channel counts "
                         "divisible by groups")
    if KH < 1 or KW < 1:
        raise ValueError(f"{op}: the kernel has size 0 (weight {_shape(w)})")
    SH, SW = _pair(op, "stride", stride, 1)
    DH, DW = _pair(op, "dilation", dilation, 1)
    PT, PB, PL, PR = _padding(op, padding)
    OH = _out_size(op, "height", H, PT + PB, KH, SH, DH)
    OW = _out_size(op, "width", W, PL + PR, KW, SW, DW)
    return dict(N=N, C=C, H=H, W=W, OC=OC, KH=KH, KW=KW, S=(SH, SW), D=(DH, DW), P=(PT, PB, PL, PR), G=groups,
                OH=OH, OW=OW)


def _patches(g):
    """For each kernel offset (kh, kw): the slices of the padded image that it reads for every
    output pixel."""
    (SH, SW), (DH, DW) = g["S"], g["D"]
    for kh in range(g["KH"]):
        for kw in range(g["KW"]):
            yield kh, kw, (slice(kh * DH, kh * DH + SH * (g["OH"] - 1) + 1, SH),
                           slice(kw * DW, kw * DW + SW * (g["OW"] - 1) + 1, SW))


def _padded(x, g):
    PT, PB, PL, PR = g["P"]
    return np.pad(x, ((0, 0), (0, 0), (PT, PB), (PL, PR)))


def _im2col(x, g):
    """col (N, G, C/G·KH·KW, OH·OW): the padded input under every output pixel, per group."""
    xp, Cg = _padded(x, g), g["C"] // g["G"]
    col = np.empty((g["N"], g["C"], g["KH"], g["KW"], g["OH"], g["OW"]), x.dtype)
    for kh, kw, (rows, cols) in _patches(g):
        col[:, :, kh, kw] = xp[:, :, rows, cols]
    return col.reshape(g["N"], g["G"], Cg * g["KH"] * g["KW"], g["OH"] * g["OW"])


def _conv_act(op, activation):
    if activation not in ("none", "relu"):
        raise ValueError(f"{op}: activation must be 'none' or 'relu', got '{activation}'")
    return activation


def conv2d_forward(out, x, weight, bias, stride=1, padding=0, dilation=1, groups=1, activation="none"):
    """out = act(conv(x, weight) + bias), as im2col and a matrix product per group.

    out:    (N, OC, OH, OW) written
    x:      (N, C, H, W)
    weight: (OC, C/G, KH, KW)
    bias:   (OC,) or None
    padding: an int, (rows, columns) on both sides, or (top, bottom, left, right)
    activation: "none" or "relu" (a compiled plan fuses a following ReLU here)
    """
    op = "conv2d_forward"
    _out(op, "out", out)
    _conv_act(op, activation)
    x, w = _in(op, "x", x, out.dtype), _in(op, "weight", weight, out.dtype)
    g = _conv_geometry(op, x, w, stride, padding, dilation, groups)
    b = _bias(op, bias, g["OC"], out.dtype)
    want = (g["N"], g["OC"], g["OH"], g["OW"])
    if out.shape != want:
        raise ValueError(f"{op}: out has shape {_shape(out)}; expected {want}")
    _no_overlap(op, "out", out, "x", x, False)
    _no_overlap(op, "out", out, "weight", w, False)
    if b is not None:
        _no_overlap(op, "out", out, "bias", b, False)
    G, OCg = g["G"], g["OC"] // g["G"]
    wg = w.reshape(G, OCg, math.prod(w.shape[1:]))              # (G, OCg, K); K, not -1: OC may be 0
    y = np.matmul(wg[None], _im2col(x, g))                      # (N, G, OCg, OH·OW)
    if b is not None:
        y += b.reshape(1, G, OCg, 1)
    out[...] = _relu(y.reshape(want)) if activation == "relu" else y.reshape(want)


def conv2d_backward(dx, dweight, dbias, dout, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    accumulate=True, activation="none", y=None):
    """Backward of conv2d_forward: dx written = col2im(weightᵀ · dout) (None: skip);
    dweight += Σ_n dout_n · col_nᵀ and dbias += Σ dout over samples and pixels (written
    instead when accumulate is False). With activation "relu", dout is the gradient at the
    ReLU's output y (forward's out) and is multiplied by relu_grad(y) first.

    dx: (N, C, H, W)   dweight: (OC, C/G, KH, KW)   dbias: (OC,) or None   dout, y: (N, OC, OH, OW)
    """
    op = "conv2d_backward"
    if _conv_act(op, activation) != "none" and y is None:
        raise ValueError(f"{op}: activation='{activation}' needs y, the forward output it masks by")
    _out(op, "dweight", dweight)
    dx = _opt_out(op, "dx", dx, dweight)
    dbias = _opt_out(op, "dbias", dbias, dweight)
    dt = dweight.dtype
    x, w, dout = _in(op, "x", x, dt), _in(op, "weight", weight, dt), _in(op, "dout", dout, dt)
    g = _conv_geometry(op, x, w, stride, padding, dilation, groups)
    want = (g["N"], g["OC"], g["OH"], g["OW"])
    if dout.shape != want:
        raise ValueError(f"{op}: dout has shape {_shape(dout)}; expected {want}")
    _same_shape(op, "dweight", dweight, "weight", w)
    inputs = (("dout", dout), ("x", x), ("weight", w))
    for n, a in inputs:
        _no_overlap(op, "dweight", dweight, n, a, False)
    if dbias is not None:
        if dbias.shape != (g["OC"],):
            raise ValueError(f"{op}: dbias has shape {_shape(dbias)}; expected ({g['OC']},)")
        for n, a in inputs + (("dweight", dweight),):
            _no_overlap(op, "dbias", dbias, n, a, False)
    if dx is not None:
        _same_shape(op, "dx", dx, "x", x)
        for n, a in inputs + (("dweight", dweight),) + ((("dbias", dbias),) if dbias is not None else ()):
            _no_overlap(op, "dx", dx, n, a, False)
    if activation == "relu":
        yv = _in(op, "y", y, dt)
        _same_shape(op, "dout", dout, "y", yv)
        for n, a in (("dweight", dweight), ("dx", dx), ("dbias", dbias)):
            if a is not None:
                _no_overlap(op, n, a, "y", yv, False)
        dout = dout * (~(yv <= 0)).astype(dt)                   # relu_grad(y): ReLU'(x) from its output
    G, OCg, N = g["G"], g["OC"] // g["G"], g["N"]
    wg = w.reshape(G, OCg, math.prod(w.shape[1:]))
    dy = dout.reshape(N, G, OCg, g["OH"] * g["OW"])             # (N, G, OCg, OH·OW)
    col = _im2col(x, g)
    dw = np.einsum("ngop,ngkp->gok", dy, col).reshape(w.shape).astype(dt)
    db = dout.sum(axis=(0, 2, 3), dtype=dt)
    if accumulate:
        dweight += dw
        if dbias is not None:
            dbias += db
    else:
        dweight[...] = dw
        if dbias is not None:
            dbias[...] = db
    if dx is not None:
        dcol = np.matmul(np.swapaxes(wg, 1, 2)[None], dy)       # (N, G, K, OH·OW)
        dcol = dcol.reshape(N, g["C"], g["KH"], g["KW"], g["OH"], g["OW"])
        PT, PB, PL, PR = g["P"]
        dxp = np.zeros((N, g["C"], g["H"] + PT + PB, g["W"] + PL + PR), dt)
        for kh, kw, (rows, cols) in _patches(g):                # col2im: back where im2col read
            dxp[:, :, rows, cols] += dcol[:, :, kh, kw]
        dx[...] = dxp[:, :, PT:PT + g["H"], PL:PL + g["W"]]


def _pool_geometry(op, xshape, kernel_size, stride, padding):
    N, C, H, W = xshape
    if H == 0 or W == 0:  # a window over padding alone has no maximum and no pixels to average
        raise ValueError(f"{op}: x has shape {tuple(int(d) for d in xshape)}, an empty image plane; pooling needs "
                         "images "
                         "of at least 1x1 pixels")
    KH, KW = _pair(op, "kernel_size", kernel_size, 1)
    SH, SW = (KH, KW) if stride is None else _pair(op, "stride", stride, 1)
    PH, PW = _pair(op, "padding", padding, 0)
    if 2 * PH > KH or 2 * PW > KW:
        raise ValueError(f"{op}: padding ({PH}, {PW}) must be at most half the kernel size ({KH}, {KW})")
    OH = _out_size(op, "height", H, 2 * PH, KH, SH, 1)
    OW = _out_size(op, "width", W, 2 * PW, KW, SW, 1)
    return dict(N=N, C=C, H=H, W=W, KH=KH, KW=KW, S=(SH, SW), D=(1, 1), P=(PH, PH, PW, PW), OH=OH, OW=OW)


def _pool_out(op, name, a, g):
    want = (g["N"], g["C"], g["OH"], g["OW"])
    if a.shape != want:
        raise ValueError(f"{op}: {name} has shape {_shape(a)}; expected {want}")


def _argmax(op, a, output):
    """maxpool2d's argmax: an output of forward (int32, never converted), an input of backward
    (any integer array, converted)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: argmax must be an int32 numpy array, got {type(a).__name__}")
    if not output and a.dtype.kind in "iu":
        return np.ascontiguousarray(a, dtype=np.int32)
    if a.dtype != np.int32 or not a.flags.c_contiguous or (output and not a.flags.writeable) or not a.flags.aligned:
        want = "writeable aligned C-contiguous int32" if output else "integer"
        raise TypeError(f"{op}: argmax must be a {want} array, "
                        f"got {a.dtype}")
    return a


def maxpool2d_forward(out, argmax, x, kernel_size, stride=None, padding=0):
    """out = the largest value of each window; argmax = its index ih·W + iw in the image plane
    (the first of equal maxima; a NaN wins, the last one; padding never does).

    out, argmax (int32): (N, C, OH, OW)   x: (N, C, H, W)   stride: the window size by default
    """
    op = "maxpool2d_forward"
    _out(op, "out", out)
    _argmax(op, argmax, True)
    x = _in(op, "x", x, out.dtype)
    _ndim4(op, "x", x)
    g = _pool_geometry(op, x.shape, kernel_size, stride, padding)
    _pool_out(op, "out", out, g)
    _pool_out(op, "argmax", argmax, g)
    _no_overlap(op, "out", out, "x", x, False)
    _no_overlap(op, "argmax", argmax, "x", x, False)
    _no_overlap(op, "argmax", argmax, "out", out, False)
    # the padded image, which positions are in the image, and their index ih·W + iw there
    xp = _padded(x, g)
    inside = _padded(np.ones((1, 1, g["H"], g["W"]), bool), g)[0, 0]
    index = _padded(np.arange(g["H"] * g["W"]).reshape(1, 1, g["H"], g["W"]), g)[0, 0]
    best = np.full(out.shape, -np.inf, out.dtype)
    at = np.full(out.shape, -1, np.int64)
    for _, _, (rows, cols) in _patches(g):                      # window offsets in order
        v, ok = xp[:, :, rows, cols], inside[rows, cols]
        upd = ok & ((v > best) | np.isnan(v) | (at < 0))
        best = np.where(upd, v, best)
        at = np.where(upd, index[rows, cols], at)
    out[...] = best
    argmax[...] = at


def maxpool2d_backward(dx, dout, argmax, kernel_size, stride=None, padding=0):
    """dx written: zero, plus each dout at its window's argmax (summed where windows share it)."""
    op = "maxpool2d_backward"
    _out(op, "dx", dx)
    argmax = _argmax(op, argmax, False)
    dout = _in(op, "dout", dout, dx.dtype)
    _ndim4(op, "dx", dx)
    g = _pool_geometry(op, dx.shape, kernel_size, stride, padding)
    _pool_out(op, "dout", dout, g)
    _pool_out(op, "argmax", argmax, g)
    _no_overlap(op, "dx", dx, "dout", dout, False)
    _no_overlap(op, "dx", dx, "argmax", argmax, False)
    bad = np.flatnonzero((argmax < 0) | (argmax >= g["H"] * g["W"]))
    if bad.size:
        raise ValueError(f"{op}: argmax[{bad[0]}] = {argmax.flat[bad[0]]} is outside its {g['H']}×{g['W']} plane")
    d = np.zeros((g["N"] * g["C"], g["H"] * g["W"]), dx.dtype)
    planes = np.repeat(np.arange(g["N"] * g["C"]), g["OH"] * g["OW"])
    np.add.at(d, (planes, argmax.reshape(-1)), dout.reshape(-1))
    dx[...] = d.reshape(dx.shape)


def avgpool2d_forward(out, x, kernel_size, stride=None, padding=0):
    """out = the mean of each window, padding counting as zeros (count_include_pad, as PyTorch).

    out: (N, C, OH, OW)   x: (N, C, H, W)
    """
    op = "avgpool2d_forward"
    _out(op, "out", out)
    x = _in(op, "x", x, out.dtype)
    _ndim4(op, "x", x)
    g = _pool_geometry(op, x.shape, kernel_size, stride, padding)
    _pool_out(op, "out", out, g)
    _no_overlap(op, "out", out, "x", x, False)
    xp, total = _padded(x, g), np.zeros(out.shape, out.dtype)
    for _, _, (rows, cols) in _patches(g):
        total += xp[:, :, rows, cols]
    out[...] = total * out.dtype.type(1 / (g["KH"] * g["KW"]))


def avgpool2d_backward(dx, dout, kernel_size, stride=None, padding=0):
    """dx written: each dout / (KH·KW) spread over its window's image values."""
    op = "avgpool2d_backward"
    _out(op, "dx", dx)
    dout = _in(op, "dout", dout, dx.dtype)
    _ndim4(op, "dx", dx)
    g = _pool_geometry(op, dx.shape, kernel_size, stride, padding)
    _pool_out(op, "dout", dout, g)
    _no_overlap(op, "dx", dx, "dout", dout, False)
    PT, PB, PL, PR = g["P"]
    dxp = np.zeros((g["N"], g["C"], g["H"] + PT + PB, g["W"] + PL + PR), dx.dtype)
    share = dout * dx.dtype.type(1 / (g["KH"] * g["KW"]))
    for _, _, (rows, cols) in _patches(g):
        dxp[:, :, rows, cols] += share
    dx[...] = dxp[:, :, PT:PT + g["H"], PL:PL + g["W"]]


def _ncl(op, x):
    if x.ndim < 2:
        raise ValueError(f"{op}: x must be (N, C) or (N, C, ...), got shape {_shape(x)}")
    return x.reshape(x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64)))


def _channels(op, name, a, C, dtype):
    """A per-channel input (C,), converted to dtype."""
    if a is None:
        raise TypeError(f"{op}: {name} must be an array, got None")
    return _channel(op, name, _in(op, name, a, dtype), C)


def _channel(op, name, a, C):
    if a.shape != (C,):
        raise ValueError(f"{op}: {name} has shape {_shape(a)}; expected ({C},)")
    return a


def batchnorm_stats(mean, var, x):
    """mean, var (C,) written: each channel's mean and biased variance over x (N, C, ...)."""
    op = "batchnorm_stats"
    _out(op, "mean", mean)
    var = _opt_out(op, "var", var, mean)
    if var is None:
        raise TypeError(f"{op}: var must be an array, got None")
    x = _ncl(op, _in(op, "x", x, mean.dtype))
    C = x.shape[1]
    _channel(op, "mean", mean, C)
    _channel(op, "var", var, C)
    for a, n in ((mean, "mean"), (var, "var")):
        _no_overlap(op, n, a, "x", x, False)
    _no_overlap(op, "mean", mean, "var", var, False)
    x64 = x.astype(np.float64)
    m = x64.mean(axis=(0, 2)) if x.size else np.zeros(C)
    mean[...] = m
    var[...] = ((x64 - m[None, :, None]) ** 2).mean(axis=(0, 2)) if x.size else 0


def batchnorm_forward(out, x, mean, var, gamma, beta, eps=1e-5):
    """out = (x − mean) / sqrt(var + eps) · gamma + beta per channel of x (N, C, ...): the
    batch's statistics in training, the running ones in eval mode."""
    op = "batchnorm_forward"
    _out(op, "out", out)
    x = _in(op, "x", x, out.dtype)
    _ncl(op, x)
    _same_shape(op, "out", out, "x", x)
    _no_overlap(op, "out", out, "x", x, True)
    C, T = x.shape[1], out.dtype.type
    mean, var, gamma, beta = (_channels(op, n, a, C, out.dtype) for n, a in
                              (("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)))
    if not eps > 0:
        raise ValueError(f"{op}: eps must be > 0, got {eps}")
    for n, a in (("mean", mean), ("var", var), ("gamma", gamma), ("beta", beta)):
        _no_overlap(op, "out", out, n, a, False)
    shape = (1, C) + (1,) * (x.ndim - 2)
    invstd = T(1) / np.sqrt(var + T(eps))
    out[...] = (x - mean.reshape(shape)) * (invstd * gamma).reshape(shape) + beta.reshape(shape)


def batchnorm_backward(dx, dgamma, dbeta, dout, x, mean, var, gamma, eps=1e-5, batch_stats=True, accumulate=True):
    """Backward of batchnorm_forward, with x̂ = (x − mean)/sqrt(var + eps) and M values per channel:
    dbeta = Σ dout, dgamma = Σ dout·x̂ (added, or written without accumulate);
    dx = gamma/sqrt(var + eps) · (dout − dbeta/M − x̂·dgamma/M) when the statistics were the
    batch's (training), gamma/sqrt(var + eps) · dout when they were constants (eval)."""
    op = "batchnorm_backward"
    _out(op, "dgamma", dgamma)
    dx = _opt_out(op, "dx", dx, dgamma)
    dbeta = _opt_out(op, "dbeta", dbeta, dgamma)
    if dbeta is None:
        raise TypeError(f"{op}: dbeta must be an array, got None")
    dt = dgamma.dtype
    x, dout = _in(op, "x", x, dt), _in(op, "dout", dout, dt)
    _ncl(op, x)
    _same_shape(op, "dout", dout, "x", x)
    C, T = x.shape[1], dt.type
    mean, var, gamma = (_channels(op, n, a, C, dt) for n, a in (("mean", mean), ("var", var), ("gamma", gamma)))
    _channel(op, "dgamma", dgamma, C)
    _channel(op, "dbeta", dbeta, C)
    _no_overlap(op, "dgamma", dgamma, "dbeta", dbeta, False)
    inputs = (("dout", dout), ("x", x), ("mean", mean), ("var", var), ("gamma", gamma))
    for n, a in inputs:
        _no_overlap(op, "dgamma", dgamma, n, a, False)
        _no_overlap(op, "dbeta", dbeta, n, a, False)
    if dx is not None:
        _same_shape(op, "dx", dx, "x", x)
        for n, a in inputs + (("dgamma", dgamma), ("dbeta", dbeta)):
            _no_overlap(op, "dx", dx, n, a, False)
    if not eps > 0:
        raise ValueError(f"{op}: eps must be > 0, got {eps}")
    shape = (1, C) + (1,) * (x.ndim - 2)
    invstd = T(1) / np.sqrt(var + T(eps))
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    axes = (0,) + tuple(range(2, x.ndim))
    sg = dout.astype(np.float64).sum(axis=axes)
    sgx = (dout.astype(np.float64) * xhat).sum(axis=axes)
    if accumulate:
        dbeta += sg.astype(dt)
        dgamma += sgx.astype(dt)
    else:
        dbeta[...] = sg
        dgamma[...] = sgx
    if dx is not None:
        k = (gamma * invstd).reshape(shape)
        M = x.size // C if C else 0
        if batch_stats and M:
            mg, mgx = (sg / M).astype(dt).reshape(shape), (sgx / M).astype(dt).reshape(shape)
            dx[...] = k * (dout - mg - xhat * mgx)
        else:
            dx[...] = dout * k


def batchnorm_update(running_mean, running_var, mean, var, count, momentum=0.1):
    """running = (1 − momentum)·running + momentum·batch, the variance made unbiased: var ×
    count/(count − 1), as PyTorch's running_var."""
    op = "batchnorm_update"
    _out(op, "running_mean", running_mean)
    running_var = _opt_out(op, "running_var", running_var, running_mean)
    if running_var is None:
        raise TypeError(f"{op}: running_var must be an array, got None")
    if count < 1:
        raise ValueError(f"{op}: count must be >= 1, got {count}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"{op}: momentum must be in [0, 1], got {momentum}")
    C = running_mean.shape[0] if running_mean.ndim == 1 else -1
    _channel(op, "running_mean", running_mean, C)
    _channel(op, "running_var", running_var, C)
    _no_overlap(op, "running_mean", running_mean, "running_var", running_var, False)
    mean, var = (_channels(op, n, a, C, running_mean.dtype) for n, a in (("mean", mean), ("var", var)))
    unbias = count / (count - 1) if count > 1 else 1.0
    running_mean[...] = (1 - momentum) * running_mean.astype(np.float64) + momentum * mean.astype(np.float64)
    running_var[...] = (1 - momentum) * running_var.astype(np.float64) + momentum * var.astype(np.float64) * unbias


# ---------------------------------------------------------------- losses
def _loss_dtype(op, gname, g, x):
    """The gradient output picks the dtype; without one, float64 stays float64, else float32."""
    if g is not None:
        return _out(op, gname, g).dtype
    return np.dtype(np.float64) if getattr(x, "dtype", None) == np.float64 else np.dtype(np.float32)


def cross_entropy_forward(dlogits, logits, targets):
    """Mean cross-entropy of softmax(logits) against class indices; dlogits in the same pass.

    dlogits: (N, C) written = (softmax(logits) − onehot(targets)) / N, or None
    logits:  (N, C)
    targets: (N,) integers in [0, C)
    Returns the loss as a Python float (0.0 for an empty batch).
    """
    op = "cross_entropy_forward"
    dt = _loss_dtype(op, "dlogits", dlogits, logits)
    x = _in(op, "logits", logits, dt)
    if x.ndim != 2:
        raise ValueError(f"{op}: logits must be 2-D (N, classes), got shape {_shape(x)}")
    N, C = x.shape
    if C == 0:
        raise ValueError(f"{op}: logits has 0 classes (shape {_shape(x)})")
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integer class indices, got {t.dtype}; use "
                        "y.astype(np.int64)")
    t = t.astype(np.int64, copy=False)
    if t.shape != (N,):
        raise ValueError(f"{op}: targets has shape {_shape(t)} but logits has {N} rows; pass one "
                         f"class index per row, shape ({N},)")
    bad = np.flatnonzero((t < 0) | (t >= C))
    if bad.size:
        raise ValueError(f"{op}: targets must be class indices in [0, {C}), got {t[bad[0]]} at "
                         f"position {bad[0]}")
    if dlogits is not None:
        _same_shape(op, "dlogits", dlogits, "logits", x)
        _no_overlap(op, "dlogits", dlogits, "logits", x, True)
    if N == 0:
        return 0.0
    rows = np.arange(N)
    m = x.max(axis=1)
    e = np.exp(x - m[:, None])
    s = e.sum(axis=1)
    # log-sum-exp minus the target logit, both shifted by the row max: finite for any logits.
    row_loss = (np.log(s) - (x[rows, t] - m)).astype(np.float64)
    if dlogits is not None:
        scale = dt.type(1) / dt.type(N)
        dlogits[...] = e * (dt.type(1) / s)[:, None] * scale
        dlogits[rows, t] -= scale
    return float(row_loss.sum() / N)


def _pointwise(op, gname, g, iname, x, t):
    dt = _loss_dtype(op, gname, g, x)
    x, t = _in(op, iname, x, dt), _in(op, "target", t, dt)
    _same_shape(op, iname, x, "target", t)
    if g is not None:
        _same_shape(op, gname, g, iname, x)
        _no_overlap(op, gname, g, iname, x, True)
        _no_overlap(op, gname, g, "target", t, True)
    return dt.type, x, t


def mse_forward(dpred, pred, target, reduction="mean"):
    """Mean (or sum) of (pred − target)²; dpred = 2(pred − target)/n (or without /n for sum).

    dpred: same shape as pred, written, or None.   pred, target: any shape, the same.
    """
    op = "mse_forward"
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'mean' or 'sum', got '{reduction}'")
    T, x, t = _pointwise(op, "dpred", dpred, "pred", pred, target)
    n = x.size
    if n == 0:
        return 0.0
    d = x - t
    if dpred is not None:
        dpred[...] = (T(2) if reduction == "sum" else T(2) / T(n)) * d
    total = float((d * d).astype(np.float64).sum())
    return total if reduction == "sum" else total / n


def bce_with_logits_forward(dlogits, logits, target):
    """Mean of max(x, 0) − x·t + log(1 + exp(−|x|)); dlogits = (sigmoid(x) − t)/n."""
    T, x, t = _pointwise("bce_with_logits_forward", "dlogits", dlogits, "logits", logits, target)
    if x.size == 0:
        return 0.0
    if dlogits is not None:
        dlogits[...] = (_sigmoid(x) - t) * (T(1) / T(x.size))
    loss = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    return float(loss.astype(np.float64).sum() / x.size)


def bce_forward(dprob, prob, target):
    """Mean of −(t·log p + (1 − t)·log(1 − p)) with logs clamped at −100 (as PyTorch);
    dprob = (p − t) / max(p(1 − p), 1e-12) / n.   prob must lie in [0, 1]."""
    op = "bce_forward"
    T, p, t = _pointwise(op, "dprob", dprob, "prob", prob, target)
    bad = np.flatnonzero(~((p >= 0) & (p <= 1)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{op}: prob must be probabilities in [0, 1], got {float(p.flat[i])} at "
                         f"flat index {i}; apply a sigmoid first, or use BCEWithLogitsLoss on logits")
    if p.size == 0:
        return 0.0
    with np.errstate(divide="ignore"):
        lp, l1p = np.maximum(np.log(p), T(-100)), np.maximum(np.log(1 - p), T(-100))
    if dprob is not None:
        dprob[...] = (p - t) / np.maximum((1 - p) * p, T(1e-12)) * (T(1) / T(p.size))
    return float((-(t * lp + (1 - t) * l1p)).astype(np.float64).sum() / p.size)


# ---------------------------------------------------------------- accuracy counts
def _pred(op, name, x):
    """Predictions as float64 if they are, else float32 (the dtype picks the kernel)."""
    a = np.asarray(x)
    return _in(op, name, a, np.float64 if a.dtype == np.float64 else np.float32)


def argmax_correct(logits, targets):
    """Rows of logits (N, C) whose first largest value is at the target class (N,); a NaN
    counts as the largest, as np.argmax has it."""
    op = "argmax_correct"
    x = _pred(op, "logits", logits)
    if x.ndim != 2:
        raise ValueError(f"{op}: logits must be 2-D (N, classes), got shape {_shape(x)}")
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integer class indices, got {t.dtype}; use "
                        "y.astype(np.int64)")
    if t.shape != (x.shape[0],):
        raise ValueError(f"{op}: targets has shape {_shape(t)} but logits has {x.shape[0]} rows")
    if x.shape[1] == 0:
        return 0
    return int(np.count_nonzero(x.argmax(axis=1) == t))


def threshold_correct(pred, target, threshold):
    """Values with (pred > threshold) == (target > 0.5): binary predictions on the target's side."""
    op = "threshold_correct"
    x = _pred(op, "pred", pred)
    t = _in(op, "target", target, x.dtype)
    _same_shape(op, "pred", x, "target", t)
    return int(np.count_nonzero((x > threshold) == (t > 0.5)))


# ---------------------------------------------------------------- optimizers
# Flat buffers, PyTorch's single-tensor update rules operation for operation (torch/optim).
def _state(op, name, a, param):
    _out(op, name, a)
    if a.dtype != param.dtype or a.size != param.size:
        raise ValueError(f"{op}: {name} has dtype {a.dtype} and {a.size} elements but param has "
                         f"{param.dtype} and {param.size}; state buffers must match the parameters")
    _no_overlap(op, name, a, "param", param, False)
    return a.reshape(-1)


def _grad(op, g, param):
    g = _in(op, "grad", g, param.dtype)
    if g.size != param.size:
        raise ValueError(f"{op}: grad has {g.size} elements (shape {_shape(g)}) but param has "
                         f"{param.size} (shape {_shape(param)})")
    _no_overlap(op, "param", param, "grad", g, False)
    return g.reshape(-1)


def sgd_step(param, grad, momentum_buf, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, first_step=False):
    """SGD as torch.optim.SGD:  g += wd·p;  buf = g (first step) or μ·buf + (1−τ)·g;
    g = g + μ·buf (Nesterov) or buf;  p −= lr·g.   All buffers flat views of n values."""
    op = "sgd_step"
    _out(op, "param", param)
    if momentum != 0 and momentum_buf is None:
        raise ValueError("sgd_step: momentum != 0 needs a momentum_buf the size of param")
    buf = None if momentum_buf is None else _state(op, "momentum_buf", momentum_buf, param)
    g, p, T = _grad(op, grad, param), param.reshape(-1), param.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    if momentum != 0:
        buf[...] = g if first_step else buf * T(momentum) + T(1.0 - dampening) * g
        g = g + T(momentum) * buf if nesterov else buf
    p += T(-lr) * g


def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False):
    """Adam (decoupled=False) / AdamW (decoupled=True) as torch.optim, step counting from 1."""
    op = "adam_step"
    _out(op, "param", param)
    m, v = _state(op, "exp_avg", exp_avg, param), _state(op, "exp_avg_sq", exp_avg_sq, param)
    _no_overlap(op, "exp_avg", exp_avg, "exp_avg_sq", exp_avg_sq, False)
    if step < 1:
        raise ValueError(f"{op}: step counts from 1, got {step}")
    g, p, T = _grad(op, grad, param), param.reshape(-1), param.dtype.type
    if weight_decay != 0:
        if decoupled:
            p *= T(1.0 - lr * weight_decay)
        else:
            g = g + T(weight_decay) * p
    bc1 = 1.0 - beta1 ** step
    bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
    m += T(1.0 - beta1) * (g - m)                 # exp_avg.lerp_(grad, 1 − β1)
    v[...] = v * T(beta2) + (T(1.0 - beta2) * g) * g
    denom = np.sqrt(v) / T(bc2_sqrt) + T(eps)
    p += (T(-(lr / bc1)) * m) / denom


def rmsprop_step(param, grad, square_avg, momentum_buf, lr=1e-2, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0):
    """RMSprop as torch.optim.RMSprop (centered=False)."""
    op = "rmsprop_step"
    _out(op, "param", param)
    sq = _state(op, "square_avg", square_avg, param)
    if momentum > 0 and momentum_buf is None:
        raise ValueError("rmsprop_step: momentum > 0 needs a momentum_buf the size of param")
    buf = None if momentum_buf is None else _state(op, "momentum_buf", momentum_buf, param)
    g, p, T = _grad(op, grad, param), param.reshape(-1), param.dtype.type
    if weight_decay != 0:
        g = g + T(weight_decay) * p
    sq[...] = sq * T(alpha) + (T(1.0 - alpha) * g) * g
    avg = np.sqrt(sq) + T(eps)
    if momentum > 0:
        buf[...] = buf * T(momentum) + g / avg
        p += T(-lr) * buf
    else:
        p += (T(-lr) * g) / avg


def first_nonfinite(x):
    """Flat (C-order) index of the first NaN or infinity in x, or -1. Any numeric dtype:
    integers and booleans are always finite, a complex value is finite when both parts are."""
    x = np.asarray(x)
    if x.dtype.kind in "iub":
        return -1
    if x.dtype.kind not in "fc":
        raise TypeError(f"first_nonfinite: x must hold numbers, got {x.dtype}")
    bad = np.flatnonzero(~np.isfinite(x))
    return int(bad[0]) if bad.size else -1
