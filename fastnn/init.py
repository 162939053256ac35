"""Weight initialisation schemes, all drawn from fastnn's seeded generator (`fnn.manual_seed`).

Each function fills an array (or a Parameter's data) in place. fan_in / fan_out are the
second / first dimension of a (out_features, in_features) weight, as in PyTorch.
"""
from __future__ import annotations

import math

import numpy as np

from fastnn.random import generator

SCHEMES = ("default", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "zeros")


def _array(p) -> np.ndarray:
    return p.data if hasattr(p, "data") and not isinstance(p, np.ndarray) else p


def _fans(a: np.ndarray) -> tuple[int, int]:
    if a.ndim < 2:
        raise ValueError(f"fan in/out need a weight with at least 2 dimensions, got shape {a.shape}")
    receptive = int(np.prod(a.shape[2:], dtype=np.int64))
    return a.shape[1] * receptive, a.shape[0] * receptive


# Values are drawn this many at a time: the same stream as one draw of the whole array (a
# Generator draws value after value), without a float64 temporary the size of the weights
# (which made initialisation peak at ~3× the weights: 400 MB of float32 weights took 1.2 GB).
_CHUNK = 1 << 20


def _fill(a: np.ndarray, draw) -> None:
    flat = a.reshape(-1)  # a view: parameters are contiguous
    for i in range(0, flat.size, _CHUNK):
        flat[i:i + _CHUNK] = draw(min(_CHUNK, flat.size - i))


def uniform_(p, low: float, high: float) -> None:
    _fill(_array(p), lambda n: generator().uniform(low, high, size=n))


def normal_(p, std: float) -> None:
    _fill(_array(p), lambda n: generator().normal(0.0, std, size=n))


def zeros_(p) -> None:
    _array(p)[...] = 0


def xavier_uniform_(p, gain: float = 1.0) -> None:
    """U(−b, b), b = gain·√(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fan_in, fan_out = _fans(_array(p))
    b = gain * math.sqrt(6.0 / (fan_in + fan_out))
    uniform_(p, -b, b)


def xavier_normal_(p, gain: float = 1.0) -> None:
    """N(0, σ²), σ = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(_array(p))
    normal_(p, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform_(p) -> None:
    """U(−b, b), b = √(6 / fan_in) (He et al. 2015, for ReLU)."""
    fan_in, _ = _fans(_array(p))
    b = math.sqrt(6.0 / fan_in) if fan_in else 0.0
    uniform_(p, -b, b)


def he_normal_(p) -> None:
    """N(0, σ²), σ = √(2 / fan_in)."""
    fan_in, _ = _fans(_array(p))
    normal_(p, math.sqrt(2.0 / fan_in) if fan_in else 0.0)


def init_linear(weight, bias, scheme: str) -> None:
    """Initialise a Linear layer. "default" is PyTorch's: weight and bias U(±1/√fan_in);
    the named schemes set the weight and zero the bias."""
    if scheme == "default":
        fan_in, _ = _fans(_array(weight))
        b = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
        uniform_(weight, -b, b)
        if bias is not None:
            uniform_(bias, -b, b)
        return
    fill = {"xavier_uniform": xavier_uniform_, "xavier_normal": xavier_normal_,
            "he_uniform": he_uniform_, "he_normal": he_normal_, "zeros": zeros_}.get(scheme)
    if fill is None:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(SCHEMES)}")
    fill(weight)
    if bias is not None:
        zeros_(bias)
