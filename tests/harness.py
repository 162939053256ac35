"""One harness for every kernel pair (C++ in fastnn._core, NumPy twin in numpy_ref.py).

A Case says how to build a kernel's arguments for a shape and dtype, which arguments are
outputs (written or updated in place), and what tolerance applies. `run_case` then calls the
kernel on both backends (and on every SIMD path of the C++ one), with contiguous or strided
inputs, and compares C++ against the twin and both against the twin run in float64.
Adding a kernel = adding one Case to CASES.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import numpy as np

from fastnn import _core
from fastnn.backends import cpp, numpy_ref

SIMD_PATHS = tuple(_core.simd_available())


@dataclasses.dataclass
class Case:
    kernel: str
    make: Callable  # make(rng, shape, dtype) -> (args: list, kwargs: dict)
    shapes: tuple
    outputs: tuple  # positions of output / in-place arguments in args
    label: str = ""
    # tolerance scale: how many rounding errors an output element may carry, from the shape
    depth: Callable = lambda shape: 1

    @property
    def id(self):
        return self.kernel + (f"[{self.label}]" if self.label else "")


def tolerance(dtype, depth):
    """(rtol, atol) for results carrying about `depth` accumulated rounding errors."""
    eps = np.finfo(dtype).eps
    return 16 * eps * (1 + depth) ** 0.5, 2 * eps * (1 + depth)


def U(rng, shape, dtype, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, shape).astype(dtype)


def nans(shape, dtype):
    """An output buffer full of NaN: a kernel that fails to write an element is caught."""
    return np.full(shape, np.nan, dtype)


def strided(a):
    """The same values as `a`, in a non-contiguous view (every other element of a bigger array)."""
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return a
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    view = big[..., ::2]
    view[...] = a
    assert not view.flags.c_contiguous or a.size <= 1
    return view


def unaligned(a):
    """The same values as `a`, C-contiguous but starting one byte past an aligned address (as
    np.frombuffer(buf, offset=1) makes): its items are not aligned to their size."""
    if not isinstance(a, np.ndarray) or a.itemsize == 1 or a.size == 0:
        return a
    buf = np.empty(a.nbytes + 1, np.uint8)
    view = buf[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert not view.flags.aligned
    return view


def call(ops, case, args, kwargs):
    """Calls the kernel with copies of the outputs; returns (return value, [outputs])."""
    args = [a.copy() if (i in case.outputs and a is not None) else a for i, a in enumerate(args)]
    ret = getattr(ops, case.kernel)(*args, **kwargs)
    return ret, [args[i] for i in case.outputs if args[i] is not None]


def _to(dtype, x):
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return x.astype(dtype)
    return x


def build(case, shape, dtype, seed=0):
    rng = np.random.default_rng([seed, abs(hash(case.id)) % 2**31, *shape])
    return case.make(rng, shape, dtype)


GEMM_KERNELS = ("gemm", "linear_forward", "linear_backward", "conv2d_forward", "conv2d_backward")
SUP_MAX_MACS_DEFAULT = _core._set_gemm_sup_max_macs(-1)  # reads the default (and keeps it)


def gemm_is_unpacked(shape, case):
    """Whether the default limit sends this case's (largest) GEMM down the unpacked path."""
    return int(np.prod(shape)) <= SUP_MAX_MACS_DEFAULT


@contextlib.contextmanager
def gemm_packing(mode):
    """Forces every float GEMM through packing ("all") or none of them ("none")."""
    old = _core._set_gemm_sup_max_macs(0 if mode == "all" else 2**62)
    try:
        yield
    finally:
        _core._set_gemm_sup_max_macs(old)


def run_case(case, shape, dtype, noncontig=False, simd_paths=SIMD_PATHS, misaligned=False, seed=0):
    args, kwargs = build(case, shape, dtype, seed)
    # float64 reference: the twin on the same values, every float array in float64
    ref_ret, ref_outs = call(numpy_ref, case, [_to(np.float64, a) for a in args],
                             {k: _to(np.float64, v) for k, v in kwargs.items()})
    if noncontig:  # strided views of every read-only input; outputs must stay contiguous
        args = [a if i in case.outputs else strided(a) for i, a in enumerate(args)]
        kwargs = {k: strided(v) for k, v in kwargs.items()}
    if misaligned:  # unaligned copies of every read-only input (the kernels get aligned copies)
        args = [a if i in case.outputs else unaligned(a) for i, a in enumerate(args)]
        kwargs = {k: unaligned(v) for k, v in kwargs.items()}
    rtol, atol = tolerance(dtype, case.depth(shape))
    twin_ret, twin_outs = call(numpy_ref, case, args, kwargs)
    results = {"numpy": (twin_ret, twin_outs)}
    previous = _core.simd_path()
    try:
        for path in simd_paths:
            _core.set_simd_path(path)
            results[f"cpp/{path}"] = call(cpp, case, args, kwargs)
            if case.kernel in GEMM_KERNELS and path != "portable":
                # The same shape through the other GEMM loop nest (packed vs unpacked "sup"); a
                # convolution's GEMMs are small, so its other nest is the packed one.
                other = "all" if case.kernel.startswith("conv") or gemm_is_unpacked(shape, case) else "none"
                with gemm_packing(other):
                    results[f"cpp/{path}/other-gemm-loops"] = call(cpp, case, args, kwargs)
    finally:
        _core.set_simd_path(previous)
    for name, (ret, outs) in results.items():
        where = f"{case.id} shape={shape} dtype={np.dtype(dtype).name} noncontig={noncontig} {name}"
        for got, want, twin in zip(outs, ref_outs, twin_outs):
            if got.dtype.kind in "iu":  # indices (maxpool's argmax): exact
                np.testing.assert_array_equal(got, want, err_msg=where + " vs float64")
                np.testing.assert_array_equal(got, twin, err_msg=where + " vs twin")
                continue
            assert got.dtype == dtype, where
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=where + " vs float64")
            np.testing.assert_allclose(got, twin, rtol=rtol, atol=atol, err_msg=where + " vs twin")
        if isinstance(ref_ret, int):  # a count: exact
            assert type(ret) is int and ret == ref_ret == twin_ret, (where, ret, ref_ret, twin_ret)
        elif ref_ret is not None:
            assert isinstance(ret, float), where
            np.testing.assert_allclose(ret, ref_ret, rtol=rtol, atol=atol, err_msg=where)
    return results


# ------------------------------------------------------------------------------- cases
GEMM_SHAPES = ((1, 1, 1), (2, 7, 63), (63, 64, 65), (65, 257, 7), (257, 65, 64), (64, 1, 257),
               (1, 257, 64), (3, 19, 45), (13, 100, 300), (37, 70, 600), (0, 7, 5), (7, 0, 5), (7, 5, 0))  # (M, N, K)
LINEAR_SHAPES = ((1, 1, 1), (2, 7, 63), (63, 64, 65), (257, 65, 7), (65, 257, 2), (0, 7, 5),
                 (100, 784, 10))  # (N, C, OC)
ELEMENT_SHAPES = ((1,), (7,), (63,), (64, 65), (257, 65), (0,), (0, 5), (3, 4, 5))
ROW_SHAPES = ((1, 1), (2, 7), (63, 64), (65, 257), (257, 10), (0, 10))  # (N, C)
FLAT_SIZES = ((1,), (7,), (63,), (64,), (65,), (257 * 65,), (0,))


def gemm_case(ta, tb, bias=False, act="none", alpha=1.0, beta=0.0):
    def make(rng, s, dt):
        M, N, K = s
        a = U(rng, (K, M) if ta else (M, K), dt)
        b = U(rng, (N, K) if tb else (K, N), dt)
        # beta == 0 must overwrite c without reading it: start from NaN to prove it.
        c = U(rng, (M, N), dt) if beta else np.full((M, N), np.nan, dt)
        return [c, a, b], dict(trans_a=ta, trans_b=tb, alpha=alpha, beta=beta,
                               bias=U(rng, (N,), dt) if bias else None, activation=act)
    label = f"ta={int(ta)},tb={int(tb)}" + (f",bias,{act},a={alpha},b={beta}" if bias else "")
    return Case("gemm", make, GEMM_SHAPES, (0,), label, depth=lambda s: s[2])


def linear_forward_case(bias):
    def make(rng, s, dt):
        N, C, OC = s
        return [nans((N, OC), dt), U(rng, (N, C), dt), U(rng, (OC, C), dt),
                U(rng, (OC,), dt) if bias else None], {}
    return Case("linear_forward", make, LINEAR_SHAPES, (0,), "bias" if bias else "nobias",
                depth=lambda s: s[1])


def linear_backward_case(dx, dbias, accumulate=True):
    def make(rng, s, dt):
        N, C, OC = s
        # written gradients (accumulate=False) start as NaN: every element must be set
        grad = U if accumulate else (lambda rng, shape, dt: nans(shape, dt))
        return [nans((N, C), dt) if dx else None, grad(rng, (OC, C), dt),
                grad(rng, (OC,), dt) if dbias else None,
                U(rng, (N, OC), dt), U(rng, (N, C), dt), U(rng, (OC, C), dt)], dict(accumulate=accumulate)
    return Case("linear_backward", make, LINEAR_SHAPES, (0, 1, 2),
                f"dx={int(dx)},dbias={int(dbias)},accumulate={int(accumulate)}", depth=lambda s: s[0] + s[2])


def unary_case(kernel, lo=-3.0, hi=3.0, **kw):
    def make(rng, s, dt):
        return [nans(s, dt), U(rng, s, dt, lo, hi)], dict(kw)
    return Case(kernel, make, ELEMENT_SHAPES, (0,), depth=lambda s: 4)


def unary_backward_case(kernel, lo=-3.0, hi=3.0, **kw):
    def make(rng, s, dt):
        return [nans(s, dt), U(rng, s, dt), U(rng, s, dt, lo, hi)], dict(kw)
    return Case(kernel, make, ELEMENT_SHAPES, (0,), depth=lambda s: 4)


def dropout_case(p):
    def make(rng, s, dt):
        return [nans(s, dt), U(rng, s, dt, -3, 3), U(rng, s, dt, 0.0, 1.0)], dict(p=p)
    return Case("dropout_apply", make, ELEMENT_SHAPES, (0,), f"p={p}", depth=lambda s: 1)


def add_case():
    def make(rng, s, dt):
        return [nans(s, dt), U(rng, s, dt, -3, 3), U(rng, s, dt, -3, 3)], {}
    return Case("add_forward", make, ELEMENT_SHAPES, (0,), depth=lambda s: 1)


def argmax_correct_case(nan):
    def make(rng, s, dt):
        N, C = s
        # few distinct values, so rows hold ties (the first maximum counts), and maybe NaNs
        x = rng.integers(-2, 3, s).astype(dt)
        if nan and x.size:
            x.flat[rng.integers(0, x.size, max(1, x.size // 7))] = np.nan
        return [x, rng.integers(0, C, N)], {}
    return Case("argmax_correct", make, ROW_SHAPES, (), "nan" if nan else "ties")


def threshold_correct_case(threshold):
    def make(rng, s, dt):
        # values on the threshold itself and on 0.5 are in the draw
        pred = rng.choice(np.array([-1, 0, 0.25, 0.5, 0.75, 1], dt), s)
        return [pred, rng.choice(np.array([0, 0.5, 1], dt), s)], dict(threshold=threshold)
    return Case("threshold_correct", make, ELEMENT_SHAPES, (), f"threshold={threshold}")


# ---- images. Shapes are (N, C, H, W[, OC]); each geometry keeps the shapes it fits.
def _conv_out(s, g):
    N, C, H, W, OC = s
    KH, KW = g["k"]
    SH, SW = (g.get("stride", 1),) * 2 if isinstance(g.get("stride", 1), int) else g["stride"]
    DH, DW = (g.get("dilation", 1),) * 2
    pad = g.get("padding", 0)
    PT, PB, PL, PR = (pad,) * 4 if isinstance(pad, int) else (pad[0], pad[0], pad[1], pad[1]) if len(pad) == 2 else pad
    OH = (H + PT + PB - DH * (KH - 1) - 1) // SH + 1
    OW = (W + PL + PR - DW * (KW - 1) - 1) // SW + 1
    G = g.get("groups", 1)
    ok = OH >= 1 and OW >= 1 and C % G == 0 and OC % G == 0
    return ok, (N, OC, OH, OW), (OC, C // G, KH, KW)


# (N, C, H, W, OC). (2, 14, 9, 11, 20) to (5, 6, 5, 7, 28) reach the AVX-512 tile kernel's
# 12-row tiles and row remainders (20 or 14 output or input channels), whole 32-column tiles
# inside one wide row (W = 40), tiles across rows, and (N >= 4) the weight packed in panels.
CONV_SHAPES = ((1, 1, 1, 1, 1), (2, 3, 7, 6, 4), (3, 4, 9, 8, 6), (0, 2, 5, 5, 4), (2, 6, 1, 1, 6),
               (1, 6, 12, 10, 6), (2, 2, 28, 28, 8), (2, 14, 9, 11, 20), (1, 3, 4, 40, 13), (1, 12, 6, 7, 24),
               (5, 6, 5, 7, 28),
               # output (input) channels in 16s reach the kernel with vectors over them: tiles of 7
               # or 14 pixels, whole and cut (widths 1, 5, 10, 15, 28), 16, 32, 48 and 64
               # channels (one to four vectors), groups of 16, an empty batch
               (2, 16, 5, 5, 16), (1, 32, 10, 15, 32), (2, 16, 14, 14, 64), (1, 32, 7, 28, 48), (0, 16, 4, 4, 32),
               (3, 1, 9, 30, 32), (1, 64, 3, 1, 64))
CONV_GEOMETRIES = {
    "3x3-same": dict(k=(3, 3), padding=1),
    "1x1": dict(k=(1, 1)),
    "3x2-stride2-pad(1,0)": dict(k=(3, 2), stride=2, padding=(1, 0)),
    "2x2-stride3": dict(k=(2, 2), stride=3),  # (on the vector paths: 2 of 3 phases read, Phase)
    "3x3-stride2-pad1": dict(k=(3, 3), stride=2, padding=1),  # (a ResNet's downsampling)
    "3x3-stride2-dilation2": dict(k=(3, 3), stride=2, dilation=2, padding=2),  # (every tap in one phase)
    "3x3-dilation2": dict(k=(3, 3), dilation=2, padding=2),
    "3x3-groups2": dict(k=(3, 3), padding=1, groups=2),
    "3x3-depthwise": dict(k=(3, 3), padding=1, groups=6),
    "2x2-asymmetric-pad": dict(k=(2, 2), padding=(0, 1, 0, 1)),
}


def conv_case(name, backward, bias=True, accumulate=True, relu=False):
    g = CONV_GEOMETRIES[name]
    kw = {k: v for k, v in g.items() if k != "k"}
    if relu:
        kw["activation"] = "relu"
    shapes = tuple(s for s in CONV_SHAPES if _conv_out(s, g)[0])

    def make(rng, s, dt):
        _, oshape, wshape = _conv_out(s, g)
        x, w = U(rng, s[:4], dt), U(rng, wshape, dt)
        if not backward:
            return [nans(oshape, dt), x, w, U(rng, (s[4],), dt) if bias else None], dict(kw)
        grad = U if accumulate else (lambda rng, shape, dt: nans(shape, dt))
        # y, the forward output a fused ReLU masks by: zeros (and a NaN) among positives
        extra = dict(y=np.maximum(U(rng, oshape, dt), 0)) if relu else {}
        return [nans(s[:4], dt), grad(rng, wshape, dt), grad(rng, (s[4],), dt) if bias else None,
                U(rng, oshape, dt), x, w], dict(kw, accumulate=accumulate, **extra)
    label = f"{name},bias={int(bias)}" + ("" if accumulate else ",accumulate=0") + (",relu" if relu else "")
    kh, kw_ = g["k"]
    depth = (lambda s: s[0] * s[2] * s[3] + s[4] * kh * kw_) if backward else (lambda s: s[1] * kh * kw_)
    return Case("conv2d_backward" if backward else "conv2d_forward", make, shapes, (0, 1, 2) if backward else (0,),
                label, depth=depth)


POOL_SHAPES = ((1, 1, 1, 1), (2, 3, 7, 6), (0, 2, 4, 4), (3, 2, 28, 28), (1, 4, 5, 9), (2, 2, 5, 71))
POOL_GEOMETRIES = {
    "2x2": dict(kernel_size=2),
    "3x3-stride2-pad1": dict(kernel_size=3, stride=2, padding=1),
    "2x3-stride(1,2)-pad(1,1)": dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
    "1x1": dict(kernel_size=1),
}


def _pool_out(s, g):
    N, C, H, W = s
    KH, KW = (g["kernel_size"],) * 2 if isinstance(g["kernel_size"], int) else g["kernel_size"]
    st = g.get("stride", (KH, KW))
    SH, SW = (st,) * 2 if isinstance(st, int) else st
    p = g.get("padding", 0)
    PH, PW = (p,) * 2 if isinstance(p, int) else p
    OH, OW = (H + 2 * PH - KH) // SH + 1, (W + 2 * PW - KW) // SW + 1
    return OH >= 1 and OW >= 1, (N, C, OH, OW)


def pool_case(kernel, name, ties=False):
    g = POOL_GEOMETRIES[name]
    shapes = tuple(s for s in POOL_SHAPES if _pool_out(s, g)[0])

    def make(rng, s, dt):
        o = _pool_out(s, g)[1]
        # few distinct values (and a NaN) make ties and NaNs the argmax must settle as PyTorch does
        x = rng.integers(-2, 3, s).astype(dt) if ties else U(rng, s, dt)
        if ties and x.size > 3:
            x.flat[rng.integers(0, x.size)] = np.nan
        if kernel == "maxpool2d_forward":
            return [nans(o, dt), np.full(o, -7, np.int32), x], dict(g)
        if kernel == "avgpool2d_forward":
            return [nans(o, dt), x], dict(g)
        if kernel == "avgpool2d_backward":
            return [nans(s, dt), U(rng, o, dt)], dict(g)
        out, am = np.empty(o, dt), np.empty(o, np.int32)      # maxpool2d_backward: a real argmax
        numpy_ref.maxpool2d_forward(out, am, x, **g)
        return [nans(s, dt), U(rng, o, dt), am], dict(g)
    outputs = (0, 1) if kernel == "maxpool2d_forward" else (0,)
    return Case(kernel, make, shapes, outputs, name + (",ties+nan" if ties else ""), depth=lambda s: 9)


BN_SHAPES = ((1, 1), (5, 3), (0, 4), (4, 3, 7), (3, 5, 6, 7), (64, 2, 2, 2))


def batchnorm_case(kernel, **kw):
    def make(rng, s, dt):
        C = s[1]
        x = U(rng, s, dt, -2, 3)
        stats = [U(rng, (C,), dt, -0.5, 0.5), U(rng, (C,), dt, 0.5, 2.0)]
        if kernel == "batchnorm_stats":
            return [nans((C,), dt), nans((C,), dt), x], {}
        if kernel == "batchnorm_forward":
            return [nans(s, dt), x, *stats, U(rng, (C,), dt), U(rng, (C,), dt)], dict(eps=1e-3)
        if kernel == "batchnorm_backward":
            acc = kw.get("accumulate", True)
            grad = U if acc else (lambda rng, shape, dt: nans(shape, dt))
            return [nans(s, dt), grad(rng, (C,), dt), grad(rng, (C,), dt), U(rng, s, dt), x, *stats,
                    U(rng, (C,), dt)], dict(kw, eps=1e-3)
        return [U(rng, (C,), dt), U(rng, (C,), dt, 0.5, 2), *stats], dict(count=max(1, s[0]), momentum=0.25)
    outputs = {"batchnorm_stats": (0, 1), "batchnorm_forward": (0,), "batchnorm_backward": (0, 1, 2),
               "batchnorm_update": (0, 1)}[kernel]
    return Case(kernel, make, BN_SHAPES, outputs, ",".join(f"{k}={v}" for k, v in kw.items()),
                depth=lambda s: 4 + int(np.prod(s)))


def softmax_case(backward):
    def make(rng, s, dt):
        x = U(rng, s, dt, -5, 5)
        if not backward:
            return [nans(s, dt), x], {}
        e = np.exp(x - x.max(-1, keepdims=True)) if x.size else x
        y = (e / e.sum(-1, keepdims=True)).astype(dt) if x.size else x
        return [nans(s, dt), U(rng, s, dt), y], {}
    return Case("softmax_backward" if backward else "softmax_forward", make, ROW_SHAPES, (0,),
                depth=lambda s: s[1])


def cross_entropy_case(with_grad, scale=3.0):
    def make(rng, s, dt):
        N, C = s
        return [nans(s, dt) if with_grad else None, U(rng, s, dt, -scale, scale),
                rng.integers(0, C, N)], {}
    return Case("cross_entropy_forward", make, ROW_SHAPES, (0,),
                f"grad={int(with_grad)},scale={scale:g}", depth=lambda s: s[1] + s[0])


def pointwise_loss_case(kernel, lo, hi, tlo, thi, **kw):
    def make(rng, s, dt):
        return [nans(s, dt), U(rng, s, dt, lo, hi), U(rng, s, dt, tlo, thi)], dict(kw)
    label = ",".join(f"{k}={v}" for k, v in kw.items())
    return Case(kernel, make, ELEMENT_SHAPES, (0,), label, depth=lambda s: int(np.prod(s)))


def sgd_case(**kw):
    def make(rng, s, dt):
        buf = U(rng, s, dt) if kw.get("momentum", 0) else None
        return [U(rng, s, dt), U(rng, s, dt), buf], dict(lr=0.1, **kw)
    return Case("sgd_step", make, FLAT_SIZES, (0, 2), ",".join(f"{k}={v}" for k, v in kw.items()),
                depth=lambda s: 4)


def adam_case(step, **kw):
    def make(rng, s, dt):
        return [U(rng, s, dt), U(rng, s, dt), U(rng, s, dt, -0.1, 0.1), U(rng, s, dt, 0.0, 0.01)], \
            dict(step=step, lr=1e-2, **kw)
    return Case("adam_step", make, FLAT_SIZES, (0, 2, 3),
                ",".join([f"step={step}"] + [f"{k}={v}" for k, v in kw.items()]), depth=lambda s: 8)


def rmsprop_case(**kw):
    def make(rng, s, dt):
        buf = U(rng, s, dt) if kw.get("momentum", 0) else None
        return [U(rng, s, dt), U(rng, s, dt), U(rng, s, dt, 0.0, 0.01), buf], dict(lr=1e-2, **kw)
    return Case("rmsprop_step", make, FLAT_SIZES, (0, 2, 3),
                ",".join(f"{k}={v}" for k, v in kw.items()), depth=lambda s: 8)


CASES = [
    *(gemm_case(ta, tb) for ta in (False, True) for tb in (False, True)),
    *(gemm_case(False, tb, True, act, 0.5, 0.3) for tb in (False, True)
      for act in ("none", "relu", "sigmoid", "tanh", "gelu")),
    linear_forward_case(True), linear_forward_case(False),
    *(linear_backward_case(dx, db) for dx in (True, False) for db in (True, False)),
    linear_backward_case(True, True, accumulate=False), linear_backward_case(False, True, accumulate=False),
    unary_case("relu_forward"), unary_backward_case("relu_backward"),
    unary_case("leaky_relu_forward", negative_slope=0.2),
    unary_backward_case("leaky_relu_backward", negative_slope=0.2),
    unary_case("sigmoid_forward", -20, 20), unary_backward_case("sigmoid_backward", 0.0, 1.0),
    unary_case("tanh_forward"), unary_backward_case("tanh_backward", -1.0, 1.0),
    unary_case("gelu_forward"), unary_backward_case("gelu_backward"),
    unary_case("step_forward", threshold=0.5),
    dropout_case(0.5), dropout_case(0.0), dropout_case(0.875),  # p exact in float32: the same masks
    add_case(),
    softmax_case(False), softmax_case(True),
    cross_entropy_case(True), cross_entropy_case(False), cross_entropy_case(True, 1e4),
    pointwise_loss_case("mse_forward", -2, 2, -2, 2, reduction="mean"),
    pointwise_loss_case("mse_forward", -2, 2, -2, 2, reduction="sum"),
    pointwise_loss_case("bce_with_logits_forward", -30, 30, 0, 1),
    pointwise_loss_case("bce_forward", 0.001, 0.999, 0, 1),
    argmax_correct_case(False), argmax_correct_case(True),
    *(conv_case(name, backward) for name in CONV_GEOMETRIES for backward in (False, True)),
    conv_case("3x3-same", False, bias=False), conv_case("3x3-same", True, bias=False),
    conv_case("3x3-groups2", True, accumulate=False), conv_case("1x1", True, accumulate=False),
    *(conv_case(name, backward, relu=True) for name in ("3x3-same", "3x2-stride2-pad(1,0)", "1x1")
      for backward in (False, True)),
    *(pool_case(k, name) for k in ("maxpool2d_forward", "maxpool2d_backward", "avgpool2d_forward",
                                   "avgpool2d_backward") for name in POOL_GEOMETRIES),
    pool_case("maxpool2d_forward", "2x2", ties=True), pool_case("maxpool2d_forward", "3x3-stride2-pad1", ties=True),
    batchnorm_case("batchnorm_stats"), batchnorm_case("batchnorm_forward"),
    batchnorm_case("batchnorm_backward", batch_stats=True), batchnorm_case("batchnorm_backward", batch_stats=False),
    batchnorm_case("batchnorm_backward", batch_stats=True, accumulate=False), batchnorm_case("batchnorm_update"),
    threshold_correct_case(0.0), threshold_correct_case(0.5),
    sgd_case(), sgd_case(momentum=0.9, dampening=0.1, weight_decay=0.01),
    sgd_case(momentum=0.9, nesterov=True), sgd_case(momentum=0.5, first_step=True),
    adam_case(1), adam_case(7, weight_decay=0.01), adam_case(3, weight_decay=0.1, decoupled=True),
    rmsprop_case(), rmsprop_case(momentum=0.9, weight_decay=0.01),
]

CASE_SHAPES = [(c, s) for c in CASES for s in c.shapes]
