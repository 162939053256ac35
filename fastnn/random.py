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
