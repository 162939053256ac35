"""Residual connections: y = block(x) + shortcut(x) (ResNet's skip connection), and Identity."""
from __future__ import annotations

import numpy as np

from fastnn.backends import ops
from fastnn.layers.base import Layer, build_layer, float_input, indent, register, shape_str


@register
class Identity(Layer):
    """y = x; the default shortcut of a Residual block.

    Example:
        >>> Identity()(np.ones(2))
        array([1., 1.])
    """

    def forward(self, x):
        return float_input(x, "Identity")

    def backward(self, grad_out):
        return float_input(grad_out, "Identity.backward")

    def lower(self, plan, x):
        return x


def _spec(layer):
    return None if layer is None else {"type": type(layer).__name__, "config": layer.get_config()}


@register
class Residual(Layer):
    """y = block(x) + shortcut(x): the residual (skip) connection of ResNets. The gradient
    reaches x through both paths and is their sum.

    Args:
        block: a layer (usually a Sequential) whose output has the input's shape, or the
            shortcut's.
        shortcut: a layer applied to x instead of x itself (e.g. a Linear that changes the
            width), or None for the identity.

    Shape:
        x (N, ...)  ->  y (N, ...) as block(x)

    Example:
        >>> block = fnn.Residual(fnn.Sequential(fnn.Linear(8, 8), fnn.ReLU(), fnn.Linear(8, 8)))
        >>> block(np.ones((2, 8))).shape
        (2, 8)
        >>> list(fnn.Sequential(block).state_dict())[:2]
        ['0.block.0.weight', '0.block.0.bias']
    """

    def __init__(self, block: Layer, shortcut: Layer | None = None):
        super().__init__()
        for name, layer in (("block", block), ("shortcut", shortcut)):
            if layer is not None and not isinstance(layer, Layer):
                raise TypeError(f"Residual: {name} must be a fastnn layer, got {type(layer).__name__}")
        if shortcut is block:
            raise ValueError("Residual: block and shortcut must be different layers (each keeps what its "
                             "backward needs); pass shortcut=None for the identity")
        self.block, self.shortcut = block, shortcut

    def children(self) -> list:
        return [("block", self.block), ("shortcut", self.shortcut)]

    def smallest_batch(self, sample_shape: tuple | None = None) -> int:
        # (both branches read the block's input)
        return max(self.block.smallest_batch(sample_shape),
                   self.shortcut.smallest_batch(sample_shape) if self.shortcut is not None else 1)

    def forward(self, x):
        x = float_input(x, "Residual")
        a = self.block.forward(x)
        b = self.shortcut.forward(x) if self.shortcut is not None else x
        if np.shape(a) != np.shape(b):
            raise ValueError(f"Residual: the block outputs shape {shape_str(np.shape(a))} but the shortcut "
                             f"gives {shape_str(np.shape(b))}; they are added, so they must match (give "
                             "the shortcut a layer that changes the shape, e.g. a Linear)")
        out = np.empty(np.shape(a), a.dtype)
        ops().add_forward(out, a, b)
        self._saved = out.shape
        return out

    def backward(self, grad_out):
        shape = self._saved_or_raise()
        g = float_input(grad_out, "Residual.backward")
        if g.shape != shape:
            raise ValueError(f"Residual.backward: grad_out has shape {shape_str(g.shape)} but the forward "
                             f"output had shape {shape_str(shape)}")
        ga = self.block.backward(g)
        gb = self.shortcut.backward(g) if self.shortcut is not None else g
        dx = np.empty(np.shape(ga), ga.dtype)
        ops().add_forward(dx, ga, gb)
        return dx

    def lower(self, plan, x):
        # each path reads x through a branch of its own, so x has two consumers whatever the
        # paths hold, and its gradient is block's + shortcut's, as backward() sums them
        a = self.block.lower(plan, plan.branch(x))
        b = self.shortcut.lower(plan, plan.branch(x)) if self.shortcut is not None else x
        return None if a is None or b is None else plan.add(a, b)

    def output_shape(self, input_shape):
        return self.block.output_shape(input_shape)

    def get_config(self) -> dict:
        return {"block": _spec(self.block), "shortcut": _spec(self.shortcut)}

    @classmethod
    def from_config(cls, config: dict):
        def layer(spec, what):
            if spec is None and what == "shortcut":
                return None
            if not isinstance(spec, dict):
                raise ValueError(f"a Residual's {what} must be described by a dict, got {spec!r}")
            return build_layer(spec.get("type"), spec.get("config", {}))
        return cls(layer(config.get("block"), "block"), layer(config.get("shortcut"), "shortcut"))

    def summary_label(self) -> str:
        return "Residual" + ("" if self.shortcut is None else f" (shortcut {self.shortcut.summary_label()})")

    def extra_repr(self) -> str:
        return f"\n  block={indent(repr(self.block))}\n  shortcut={indent(repr(self.shortcut))}\n"
