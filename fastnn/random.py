"""The one seeded random generator behind initialisation, shuffling and dropout.

`manual_seed(seed)` makes all of them reproducible. Code that needs randomness calls
`generator()`; nothing in fastnn uses NumPy's hidden global state.
"""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed fastnn's generator (as torch.manual_seed) and return it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed expects a non-negative seed, got {seed}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    """fastnn's current random generator."""
    return _generator


_MASK64 = (1 << 64) - 1


def uniform(n: int, dtype=np.float32) -> np.ndarray:
    """generator().random(n, dtype=dtype), bit for bit and leaving the generator in the same
    state, filled by fastnn._core on every thread when the generator is NumPy's PCG64 (the
    default_rng that manual_seed makes) and n is large enough to repay reading its state."""
    g = _generator
    dtype = np.dtype(dtype)
    if n < 1 << 15 or type(g.bit_generator) is not np.random.PCG64 or dtype not in (np.float32, np.float64):
        return g.random(n, dtype=dtype)
    from fastnn import _core  # imported here: this module loads before the extension's users

    bg = g.bit_generator
    st = bg.state
    s, inc = st["state"]["state"], st["state"]["inc"]
    out = np.empty(n, dtype)
    hi, lo, has, u32 = _core.pcg64_uniform(out, s >> 64, s & _MASK64, inc >> 64, inc & _MASK64,
                                           bool(st["has_uint32"]), st["uinteger"])
    bg.state = {"bit_generator": "PCG64", "state": {"state": (hi << 64) | lo, "inc": inc},
                "has_uint32": int(has), "uinteger": u32}
    return out
