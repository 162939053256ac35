"""Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_."""
from __future__ import annotations

import math

import numpy as np

from fastnn.parameter import contiguous_runs, unique_parameters


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so their joint norm is at most `max_norm`.

    The norm is taken over every gradient as if concatenated into one vector; when it
    exceeds max_norm, each gradient is multiplied by max_norm / (norm + 1e-6).
    Returns the norm before clipping.

    Example:
        >>> p = fnn.Parameter([3.0, 4.0]); p.grad[...] = [3.0, 4.0]
        >>> float(fnn.clip_grad_norm_([p], max_norm=1.0)), np.round(p.grad, 4)
        (5.0, array([0.6, 0.8]))
    """
    if hasattr(parameters, "parameters") and callable(parameters.parameters):
        parameters = parameters.parameters()
    params = unique_parameters(parameters, "clip_grad_norm_")
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm >= 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    if not (norm_type == math.inf or norm_type > 0):
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    runs = contiguous_runs(params)
    if not runs:
        return 0.0
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(r.grad))) if r.grad.size else 0.0 for r in runs)
    else:
        total = float(sum(float(np.sum(np.abs(r.grad.astype(np.float64)) ** norm_type)) for r in runs)
                      ) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}; the gradients "
                           "contain NaN or inf (lower the learning rate or check the data)")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for r in runs:
            g = r.grad  # a view into the flat gradient buffer
            g *= g.dtype.type(coef)
    return total
