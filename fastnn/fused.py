"""The fused path: a whole forward pass, or many training steps, of an MLP in one C++ call.

A Sequential made of Linear layers, each optionally followed by ReLU, LeakyReLU, Sigmoid,
Tanh or GELU, and each optionally preceded by one Dropout, with all parameters in its one flat
buffer, can run in `fastnn._core.mlp_forward` / `mlp_train_batches`. Those call the same
kernels as the layers, in the same order, so results equal the layer-by-layer path; they only
skip Python between kernels. Dropout is the identity for inference; in training, its uniforms
are drawn here, from the same generator, in the order the layers would draw them. `fit`,
`predict` and `model(x)` in eval mode use it on the "cpp" backend when they can and fall back
to the layers otherwise. The training loop supports cross-entropy, MSE and BCE losses and the
SGD, Adam, AdamW and RMSprop optimizers.
"""
from __future__ import annotations

import numpy as np

from fastnn import _core
from fastnn.backends import get_backend
from fastnn.layers import GELU, Dropout, LeakyReLU, Linear, ReLU, Sequential, Sigmoid, Tanh
from fastnn.layers.base import nonfinite_message
from fastnn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from fastnn.optim.optimizer import SGD, Adam, AdamW, RMSprop
from fastnn.random import uniform

_ACT = {ReLU: 1, Sigmoid: 2, Tanh: 3, GELU: 4, LeakyReLU: 5}


def layer_table(model, training: bool):
    """(table, store) for the C++ MLP, or None when the model is not a plain MLP.

    table is float64 (L, 7): in, out, weight offset, bias offset (−1: none), activation, slope,
    and the p of a Dropout on the layer's input (0: none; only in a training table).
    """
    if type(model) is not Sequential or get_backend() != "cpp" or not model.layers:
        return None
    cache = model.__dict__.setdefault("_fused_tables", {})
    hit = cache.get(training)
    if hit is not None:
        table, store, p0, size, drop = hit
        if p0._store is store and store.data.size == size and drop == _dropout_ps(model):
            return (table, store) if table is not None else None
    plan = _build_table(model, training)
    params = model.parameters()
    if params:
        cache[training] = (*(plan or (None, params[0]._store)), params[0], params[0]._store.data.size,
                           _dropout_ps(model))
    return plan


def _dropout_ps(model) -> tuple:
    return tuple(l.p for l in model.layers if type(l) is Dropout)


def _build_table(model, training: bool):
    layers = [l for l in model.layers if not (type(l) is Dropout and (not training or l.p == 0.0))]
    params = model.parameters()
    if not params:
        return None
    store = params[0]._store
    if any(p._store is not store for p in params) or store.data.size != sum(p.size for p in params):
        return None
    rows, i, drop = [], 0, 0.0
    while i < len(layers):
        lin = layers[i]
        if type(lin) is Dropout and not drop and i + 1 < len(layers):
            drop, i = lin.p, i + 1        # a Dropout on the next Linear's input
            continue
        if type(lin) is not Linear:
            return None
        act, slope = 0, 0.0
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if type(nxt) in _ACT:
            act, slope = _ACT[type(nxt)], getattr(nxt, "negative_slope", 0.0)
            i += 2
        else:
            i += 1
        rows.append((lin.in_features, lin.out_features, lin.weight._offset,
                     lin.bias._offset if lin.bias is not None else -1, act, slope, drop))
        drop = 0.0
    return np.array(rows, dtype=np.float64), store


class _Inference:
    """What eval-mode forward needs, cached on the model: rebuilt when its layers tuple, its
    parameter buffer or a LeakyReLU slope changes."""

    __slots__ = ("layers", "p0", "store", "size", "leaky", "table", "n_in", "n_out", "dtype")


def _leaky_slopes(model) -> tuple:
    return tuple(l.negative_slope for l in model.layers if type(l) is LeakyReLU)


def inference_plan(model):
    """The cached _Inference for a plain MLP on the "cpp" backend, else None."""
    if type(model) is not Sequential or get_backend() != "cpp":
        return None
    p = model.__dict__.get("_fused_inference")
    if (p is not None and p.layers is model.layers and p.p0._store is p.store
            and p.store.data.size == p.size and (not p.leaky or p.leaky == _leaky_slopes(model))):
        return p if p.table is not None else None
    params = model.parameters()
    if not model.layers or not params:
        return None
    plan = _build_table(model, training=False)
    p = _Inference()
    p.layers, p.p0, p.store, p.size = model.layers, params[0], params[0]._store, params[0]._store.data.size
    p.leaky, p.table = _leaky_slopes(model), None
    if plan is not None:
        p.table = plan[0]
        p.n_in, p.n_out, p.dtype = int(p.table[0, 0]), int(p.table[-1, 1]), p.store.data.dtype
    model.__dict__["_fused_inference"] = p
    return p if p.table is not None else None


def forward(model, X, who: str | None = None):
    """The model's eval-mode output for X in one C++ call, or None if it cannot run fused
    (not a plain MLP, or X not a 2-D array of the model's dtype and width: the caller converts
    or lets the layers raise). With `who`, a NaN or infinity in X raises ValueError naming it
    (checked in C++: on the first layer's output, then on X only if that has one)."""
    p = inference_plan(model)
    if p is None or type(X) is not np.ndarray or X.ndim != 2 or X.dtype != p.dtype or X.shape[1] != p.n_in:
        return None
    out = np.empty((X.shape[0], p.n_out), p.dtype)
    bad = _core.mlp_forward(out, X, p.store.data, p.table, who is not None)
    if bad >= 0:
        raise ValueError(nonfinite_message(who, X, bad))
    return out


class TrainPlan:
    """What fit() needs to run its batches in C++: the layer table, the loss and the optimizer."""

    # Most Dropout uniforms one C++ call takes (16 MB in float32); more batches are split.
    MAX_UNIFORMS = 1 << 22

    def __init__(self, table, store, loss_name, optimizer, run_state):
        self.table, self.store, self.loss_name = table, store, loss_name
        self.optimizer, self.state = optimizer, run_state
        # uniforms per sample: the widths of the inputs that have a Dropout
        self.drop_width = int(table[table[:, 6] > 0, 0].sum())

    def run(self, X, y, order, batch_size, first_batch, n_batches):
        """Train on batches [first_batch, first_batch + n_batches); returns (losses, correct)."""
        if not self.drop_width:
            return self._run(X, y, order, batch_size, first_batch, n_batches)
        per_call = max(1, self.MAX_UNIFORMS // (batch_size * self.drop_width))
        out = [self._run(X, y, order, batch_size, b, min(per_call, first_batch + n_batches - b))
               for b in range(first_batch, first_batch + n_batches, per_call)]
        return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])

    def _run(self, X, y, order, batch_size, first_batch, n_batches):
        u = None
        if self.drop_width:
            # what the Dropout layers would draw for these batches: per batch, per Dropout in
            # order, (rows, width) uniforms of the data's dtype; one call gives the same stream
            rows = min(len(X), (first_batch + n_batches) * batch_size) - first_batch * batch_size
            u = uniform(rows * self.drop_width, X.dtype)
        g, st = self.optimizer.param_groups[0], self.state
        if isinstance(self.optimizer, SGD):
            name = "sgd"
            a, b = None, None
            step = 1
            if g["momentum"] != 0:
                step = 0 if "momentum_buffer" not in st else 1
                a = st.setdefault("momentum_buffer", np.empty_like(self.store.data))
            hyper = (g["lr"], g["momentum"], g["dampening"], float(g["nesterov"]), g["weight_decay"], 0, 0, 0)
        elif isinstance(self.optimizer, RMSprop):
            name = "rmsprop"
            self.optimizer._init_state(st, self.store.data, g)
            a, b, step = st["square_avg"], st.get("momentum_buffer") if g["momentum"] > 0 else None, 0
            hyper = (g["lr"], g["momentum"], 0, 0, g["weight_decay"], g["alpha"], 0, g["eps"])
        else:
            name = "adamw" if isinstance(self.optimizer, AdamW) else "adam"
            self.optimizer._init_state(st, self.store.data, g)
            a, b, step = st["exp_avg"], st["exp_avg_sq"], st["step"]
            hyper = (g["lr"], 0, 0, 0, g["weight_decay"], g["betas"][0], g["betas"][1], g["eps"])
        losses, correct = _core.mlp_train_batches(
            self.store.data, self.store.grad, self.table, X, y, order, batch_size, first_batch, n_batches,
            self.loss_name, name, np.array(hyper, np.float64), a, b, step, u)
        if name != "sgd":
            st["step"] += n_batches
        return losses, correct


def train_plan(model, loss_fn, optimizer, X, y):
    """A TrainPlan when fit() can run fused, else None."""
    if not all(l.training for l in getattr(model, "layers", [model])):
        return None  # a layer left in eval mode (a Dropout that should not drop) runs as it is
    plan = layer_table(model, training=True)
    if plan is None:
        return None
    table, store = plan
    if type(loss_fn) is CrossEntropyLoss:
        loss_name = "cross_entropy"
    elif type(loss_fn) is MSELoss:
        loss_name = "mse_mean" if loss_fn.reduction == "mean" else "mse_sum"
    elif type(loss_fn) in (BCEWithLogitsLoss, BCELoss):
        loss_name = "bce_with_logits" if type(loss_fn) is BCEWithLogitsLoss else "bce"
    else:
        return None
    if type(optimizer) not in (SGD, Adam, AdamW, RMSprop) or len(optimizer.param_groups) != 1:
        return None
    runs, states = optimizer._runs_and_state(0)
    if len(runs) != 1 or runs[0].store is not store or runs[0].start != 0 or runs[0].stop != store.data.size:
        return None
    if X.dtype != store.data.dtype or not X.flags.c_contiguous or X.ndim != 2:
        return None
    if loss_name == "cross_entropy" and y.dtype != np.int64:
        return None
    if loss_name != "cross_entropy" and (y.dtype != X.dtype or y.ndim != 2):
        return None
    return TrainPlan(table, store, loss_name, optimizer, states[0])
