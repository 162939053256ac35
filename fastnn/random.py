"""The one seeded random generator behind initialisation, shuffling and dropout.

`manual_seed(seed)` makes all of them reproducible. Code that needs randomness calls
`generator()`; nothing in fastnn uses NumPy's hidden global state. Draws that fastnn makes in
C++ (`uniform`, a compiled plan's Dropout) hold the generator's own lock while they read its
state, fill and write it back, so threads sharing it never draw the same numbers.
"""
from __future__ import annotations

import contextlib

import numpy as np

from fastnn import _core

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed fastnn's generator (as torch.manual_seed) and return it.

    Example:
        >>> a = fnn.manual_seed(0).random(); b = fnn.manual_seed(0).random(); a == b
        True
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed expects an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"manual_seed expects a non-negative seed, got {seed}")
    _generator = np.random.default_rng(int(seed))
    return _generator


@contextlib.contextmanager
def seeded(seed: int):
    """fastnn's generator is a fresh one seeded with `seed` inside the block and the caller's
    again after it (fastnn.sklearn reseeds every fit this way, leaving the user's stream alone)."""
    global _generator
    saved = _generator
    manual_seed(seed)
    try:
        yield _generator
    finally:
        _generator = saved


def generator() -> np.random.Generator:
    """fastnn's current random generator."""
    return _generator


_MASK64 = (1 << 64) - 1


def pcg64_state() -> tuple:
    """The generator's PCG64 state as fastnn._core takes it: (state_hi, state_lo, inc_hi, inc_lo,
    has_uint32, uinteger)."""
    st = _generator.bit_generator.state
    s, inc = st["state"]["state"], st["state"]["inc"]
    return (s >> 64, s & _MASK64, inc >> 64, inc & _MASK64, bool(st["has_uint32"]), st["uinteger"])


def set_pcg64_state(after: tuple) -> None:
    """Move the generator to the state _core returned: (state_hi, state_lo, has_uint32, uinteger)."""
    bg = _generator.bit_generator
    hi, lo, has, u32 = after
    inc = bg.state["state"]["inc"]
    bg.state = {"bit_generator": "PCG64", "state": {"state": (hi << 64) | lo, "inc": inc},
                "has_uint32": int(has), "uinteger": u32}


def uniform(n: int, dtype=np.float32) -> np.ndarray:
    """generator().random(n, dtype=dtype), bit for bit and leaving the generator in the same
    state, filled by fastnn._core on every thread when the generator is NumPy's PCG64 (the
    default_rng that manual_seed makes) and n is large enough to repay reading its state."""
    g = _generator
    dtype = np.dtype(dtype)
    if n < 1 << 15 or type(g.bit_generator) is not np.random.PCG64 or dtype not in (np.float32, np.float64):
        return g.random(n, dtype=dtype)
    out = np.empty(n, dtype)
    with g.bit_generator.lock:  # NumPy's own lock: no other draw comes between reading and writing back
        set_pcg64_state(_core.pcg64_uniform(out, *pcg64_state()))
    return out


def lock():
    """The lock of fastnn's generator, to hold around a draw made outside NumPy (a plan's run)."""
    return _generator.bit_generator.lock
