"""Compiled plans: a model described once as C++ ops (fastnn._core.Plan), then run many batches
per call with the GIL released.

How a model becomes a plan: `Builder.input(shape)` gives the value the model reads, and
`model.lower(builder, x)` asks each layer to add its ops (`Layer.lower` in fastnn/layers/) and
returns the value they output. Each op calls the kernels its layer calls, in the same order, so
the plan computes the same bits as the layer-by-layer path (and, like every kernel, whatever the
thread count). A layer that cannot lower (a user's own Layer subclass) makes the whole model run
layer by layer, as does a loss or an optimizer without a plan form.

Two plans are cached on a model: inference (`predict`, `evaluate`, eval-mode `model(x)`) and
training (`fit`: gather the shuffled batch, forward, loss, backward, optimizer step, for many
batches per call). Each is rebuilt when anything it depends on may have changed — a layer
setting or mode, a parameter moved to another buffer (fastnn.parameter.STRUCTURE counts
those), the input's shape or dtype — and sizes its workspace for a batch, never for more rows
than the data has, freeing a large one when the call ends.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from fastnn import _core
from fastnn.backends import get_backend
from fastnn.layers.base import nonfinite_message
from fastnn.parameter import STRUCTURE
from fastnn.random import lock, pcg64_state, set_pcg64_state


class Value:
    """A value in a plan: a slot of its C++ buffers, and the shape of one sample of it."""

    __slots__ = ("slot", "shape")

    def __init__(self, slot: int, shape: tuple):
        self.slot, self.shape = slot, tuple(int(s) for s in shape)

    def __repr__(self) -> str:
        return f"Value(slot={self.slot}, shape={self.shape})"


class CannotLower(Exception):
    """Raised inside a lowering when the model cannot run as a plan (it runs layer by layer)."""


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


class Builder:
    """What a layer's `lower(plan, x)` calls to add its ops. Every method takes plan Values and
    returns the Value its op outputs; `training` says which plan is being built (Dropout, say,
    adds an op only there)."""

    def __init__(self, store, training: bool):
        self.training = training
        self._store = store
        self._used: set[int] = set()
        self.core = _core.Plan(store.data, store.grad, training)

    def input(self, shape) -> Value:
        self.core.set_input(_size(shape))
        return Value(0, shape)

    def _offset(self, p) -> int:
        # parameters must live in the plan's flat buffer, each read by one op (its gradient is
        # written there, not added)
        if p._store is not self._store or p._offset in self._used:
            raise CannotLower
        self._used.add(p._offset)
        return p._offset

    def linear(self, x: Value, weight, bias) -> Value:
        """y = x·Wᵀ + b over the last axis of x: weight (OC, C), bias (OC,) or None."""
        OC, C = weight.shape
        w_off = self._offset(weight)
        b_off = -1 if bias is None else self._offset(bias)
        slot = self.core.linear(x.slot, w_off, b_off, C, OC, _size(x.shape[:-1]))
        return Value(slot, (*x.shape[:-1], OC))

    def activation(self, x: Value, name: str, param: float = 0.0) -> Value:
        """An elementwise activation of the kernels' list ("relu", "leaky_relu", ...)."""
        return Value(self.core.activation(x.slot, name, param), x.shape)

    def softmax(self, x: Value) -> Value:
        """Softmax over the last axis of each sample."""
        return Value(self.core.softmax(x.slot, x.shape[-1]), x.shape)

    def dropout(self, x: Value, p: float) -> Value:
        """Inverted dropout, its uniforms drawn from fastnn's generator in the layers' order."""
        return Value(self.core.dropout(x.slot, p), x.shape)

    def branch(self, x: Value) -> Value:
        """x's values, read by one path of a residual block: its gradient is the path's, handed
        to x in one piece, so x's gradient sums the paths as the layers do."""
        return Value(self.core.branch(x.slot), x.shape)

    def add(self, a: Value, b: Value) -> Value:
        """a + b (a residual block's sum)."""
        if a.shape != b.shape:
            raise CannotLower
        return Value(self.core.add(a.slot, b.slot), a.shape)

    def conv2d(self, x: Value, weight, bias, stride, padding, dilation, groups, out_shape) -> Value:
        """A 2-D convolution of x (C, H, W): weight (OC, C/groups, KH, KW), bias (OC,) or None,
        padding (top, bottom, left, right)."""
        C, H, W = x.shape
        OC, _, KH, KW = weight.shape
        slot = self.core.conv2d(x.slot, self._offset(weight), -1 if bias is None else self._offset(bias), C, H, W,
                                OC, KH, KW, stride, padding, dilation, groups)
        return self._checked(slot, out_shape)

    def pool2d(self, x: Value, kind: str, kernel_size, stride, padding, out_shape) -> Value:
        """Max ("max") or average ("avg") pooling of x (C, H, W)."""
        C, H, W = x.shape
        return self._checked(self.core.pool2d(x.slot, kind, C, H, W, kernel_size, stride, padding), out_shape)

    def batchnorm(self, x: Value, weight, bias, running_mean, running_var, num_batches_tracked, eps, momentum,
                  layer_training) -> Value:
        """Batch normalization of x (C, ...) per channel: the batch's statistics in a training
        plan (updating the running ones, which the layer owns), else the running ones."""
        C, L = x.shape[0], _size(x.shape[1:])
        slot = self.core.batchnorm(x.slot, self._offset(weight), self._offset(bias), C, L, eps, momentum,
                                   running_mean, running_var, num_batches_tracked, self.training and layer_training)
        return Value(slot, x.shape)

    def _checked(self, slot: int, shape) -> Value:
        # the layer's idea of its output shape and the plan's must agree
        if self.core.width(slot) != _size(shape):
            raise CannotLower
        return Value(slot, shape)

    def reshape(self, x: Value, shape) -> Value:
        """The same values seen with another per-sample shape (no op: the slot is shared)."""
        if _size(shape) != _size(x.shape):
            raise CannotLower
        return Value(x.slot, shape)


class Compiled:
    """A built plan and what it was built for."""

    __slots__ = ("core", "store", "version", "dtype", "in_shape", "out_shape")
    core: Any  # a _core.Plan, or None when the model cannot be lowered
    store: Any
    version: int
    dtype: Any
    in_shape: tuple
    out_shape: Any

    def predict(self, X: np.ndarray, batch_size: int, who: str | None = None) -> np.ndarray:
        """The plan's outputs for X (its dtype, C-contiguous), in batches of batch_size rows.
        With `who`, a NaN or infinity in X raises ValueError naming it."""
        out = np.empty((len(X), *self.out_shape), self.dtype)
        bad = self.core.predict(out, X, batch_size, who is not None)
        if bad >= 0:
            raise ValueError(nonfinite_message(who or "predict", X, bad))
        return out


def _compile(model, in_shape: tuple, dtype, training: bool) -> Compiled:
    """The model lowered into a new plan (core None when it cannot be)."""
    c = Compiled()
    c.version, c.dtype, c.in_shape, c.core, c.store, c.out_shape = STRUCTURE[0], dtype, in_shape, None, None, None
    params = model.parameters()
    if not params or get_backend() != "cpp":
        return c
    store = params[0]._store
    if store.data.dtype != dtype:
        return c
    b = Builder(store, training)
    try:
        y = model.lower(b, b.input(in_shape))
    except CannotLower:
        y = None
    if y is not None and y.slot != 0:
        b.core.set_output(y.slot)
        c.core, c.store, c.out_shape = b.core, store, y.shape
    return c


def _cached(model, key: str, in_shape: tuple, dtype, training: bool) -> Compiled | None:
    c = model.__dict__.get(key)
    if (c is None or c.version != STRUCTURE[0] or c.in_shape != in_shape
            or not (c.dtype is dtype or c.dtype == dtype)):
        c = _compile(model, in_shape, dtype, training)
        model.__dict__[key] = c
    return c if c.core is not None else None


def inference(model, X: np.ndarray) -> Compiled | None:
    """The model's inference plan for inputs like X (a C-contiguous array of the model's dtype),
    or None when it runs layer by layer. Called on every predict: the common case is a few
    comparisons."""
    if get_backend() != "cpp":
        return None
    return _cached(model, "_plan_eval", X.shape[1:], X.dtype, False)


class TrainRunner:
    """fit's batches through the model's training plan: `run` trains batches [b0, b0 + nb) of
    an epoch in one C++ call and returns (losses, correct, error) for the batches completed."""

    def __init__(self, compiled: Compiled, loss_name: str, optimizer, X, y, stop):
        self.compiled, self.loss_name, self.optimizer = compiled, loss_name, optimizer
        self.X, self.y, self.stop = X, y, stop
        self.shards = None  # distributed fit: Plan.train's shards argument (fastnn/distributed.py)

    def run(self, order, batch_size: int, b0: int, nb: int):
        # the optimizer's settings are read at every call (a callback may change the rate)
        steps, commit = self.optimizer._plan_steps(self.compiled.store)
        with lock():  # Dropout draws from a copy of the generator's state: no other draw in between
            losses, correct, rng, error = self.compiled.core.train(
                self.X, self.y, order, batch_size, b0, nb, self.loss_name, steps, pcg64_state(), self.stop, self.shards)
            set_pcg64_state(rng)
        commit(len(losses))  # step counts and new buffers: what the completed batches applied
        return losses, correct, error

    def release(self) -> None:
        self.compiled.core.release()


def training(model, loss_fn, optimizer, X: np.ndarray, y: np.ndarray, stop) -> TrainRunner | None:
    """A TrainRunner when fit can run (model, loss, optimizer) as a plan, else None."""
    if get_backend() != "cpp" or not (X.flags.c_contiguous and X.flags.aligned) \
            or not (y.flags.c_contiguous and y.flags.aligned):
        return None  # the plan reads the data in place; the layer path copies each batch
    loss_name = loss_fn.plan_loss()
    if loss_name is None:
        return None
    c = _cached(model, "_plan_train", X.shape[1:], X.dtype, True)
    if c is None:
        return None
    if loss_name == "cross_entropy":
        if y.dtype != np.int64 or len(c.out_shape) != 1:
            return None
    elif y.dtype != X.dtype or y.shape[1:] != c.out_shape:
        return None
    if optimizer._plan_steps(c.store) is None:
        return None
    return TrainRunner(c, loss_name, optimizer, X, y, stop)
