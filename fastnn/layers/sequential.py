"""Sequential: layers applied in order, with one flat buffer for all their parameters and the
Keras-style loop (fit / evaluate / predict, in fastnn/training.py) on top."""
from __future__ import annotations

import numpy as np

from fastnn.layers.base import Layer, float_input
from fastnn.parameter import flatten_into_one_store


class _Late:
    """fastnn.fused and fastnn.training, which import this module, bound on first use (an
    import statement in every predict call cost ~1 µs of a ~8 µs batch-1 prediction)."""

    fused = training = None


def _late():
    if _Late.training is None:
        from fastnn import fused, training
        _Late.fused, _Late.training = fused, training
    return _Late


class Summary(str):
    """The text of model.summary(); shows as a table (not a quoted string) in a REPL."""

    def __repr__(self) -> str:
        return str(self)


class Sequential(Layer):
    """A stack of layers: forward runs them first to last, backward last to first.

    All parameters move into one flat data buffer and one flat gradient buffer, so
    `zero_grad()` and an optimizer step are one kernel call for the whole model.

    Args:
        *layers: the layers, in order (or one list of them).

    Example:
        >>> model = Sequential(Linear(784, 128), ReLU(), Linear(128, 10))
        >>> model(np.zeros((2, 784))).shape
        (2, 10)
        >>> list(model.state_dict())
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential: item {i} is {type(layer).__name__}, not a fastnn layer; "
                                "pass layers such as fnn.Linear(784, 128), fnn.ReLU()")
            if any(layer is other for other in layers[:i]):
                raise ValueError(f"Sequential: item {i} ({layer!r}) is the same object as an earlier "
                                 "item; a layer keeps what its backward needs, so each position "
                                 "needs its own instance")
        # A tuple: the structure is fixed once the parameters share one flat buffer.
        self.layers = tuple(layers)
        self.stop_training = False
        flatten_into_one_store(self.parameters())

    def named_parameters(self, prefix: str = ""):
        for i, layer in enumerate(self.layers):
            yield from layer.named_parameters(f"{prefix}{i}.")

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def __call__(self, x):
        """forward(x); in eval mode a plain MLP runs as one C++ call (fastnn/fused.py), which
        keeps nothing for backward."""
        if not self.training:
            fused = _late().fused
            out = fused.forward(self, x)
            if out is None and not (type(x) is np.ndarray and x.dtype == self.dtype):
                out = fused.forward(self, float_input(x, "Sequential", self.dtype or np.float32))
            if out is not None:
                self._fused_output = True
                return out
        return self.forward(x)

    def forward(self, x):
        self._fused_output = False
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        """Backpropagate ∂loss/∂output through every layer; returns ∂loss/∂input and adds
        into every parameter's .grad."""
        if getattr(self, "_fused_output", False):
            raise RuntimeError("model(x) in eval mode ran the fused inference path, which keeps "
                               "nothing for backward; call model.train() before model(x), or use "
                               "model.forward(x)")
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def __getitem__(self, i):
        return Sequential(self.layers[i]) if isinstance(i, slice) else self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def get_config(self) -> dict:
        return {"layers": [{"type": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    def output_shape(self, input_shape):
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def _input_shape(self):
        """(None, in_features) of the first Linear, when only shape-keeping layers precede it."""
        for layer in self.layers:
            if hasattr(layer, "in_features"):
                return (None, layer.in_features)
            if type(layer).output_shape is not Layer.output_shape:
                return None
        return None

    def summary(self, input_shape=None) -> Summary:
        """A table of layers, output shapes and parameter counts, with the total.

        Args:
            input_shape: the shape of one batch, e.g. (None, 28, 28); inferred from the
                first Linear layer when omitted.
        """
        shape = tuple(input_shape) if input_shape is not None else self._input_shape()
        rows = []
        for i, layer in enumerate(self.layers):
            if shape is not None:
                shape = layer.output_shape(shape)
            rows.append((f"{i}", layer.summary_label(), "?" if shape is None else
                         "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")",
                         f"{layer.num_parameters():,}"))
        w_layer = max([len("Layer")] + [len(r[1]) for r in rows])
        w_shape = max([len("Output shape")] + [len(r[2]) for r in rows])
        w_params = max([len("Params")] + [len(r[3]) for r in rows])
        width = 4 + w_layer + 2 + w_shape + 2 + w_params
        line = lambda a, b, c, d: f"{a:>2}  {b:<{w_layer}}  {c:<{w_shape}}  {d:>{w_params}}"  # noqa: E731
        total = self.num_parameters()
        dtype = self.dtype or np.dtype(np.float32)
        out = ["Sequential", "-" * width, line("#", "Layer", "Output shape", "Params"), "=" * width]
        out += [line(*r) for r in rows]
        out += ["=" * width, f"Total params: {total:,} ({total * dtype.itemsize / 1024:,.1f} KiB as {dtype})"]
        return Summary("\n".join(out))

    # -- the Keras-style loop; see fastnn/training.py
    def fit(self, X, y, **kwargs):
        """Train on (X, y); see fastnn.training.fit for every argument. Returns a History."""
        from fastnn.training import fit
        return fit(self, X, y, **kwargs)

    def evaluate(self, X, y, **kwargs) -> dict:
        """Loss (and accuracy for classifiers) on (X, y) in eval mode; see fastnn.training.evaluate."""
        from fastnn.training import evaluate
        return evaluate(self, X, y, **kwargs)

    def predict(self, X, batch_size: int = 256) -> np.ndarray:
        """Outputs for X in eval mode (dropout off), batch by batch."""
        return _late().training.predict(self, X, batch_size=batch_size)

    def extra_repr(self) -> str:
        return "\n" + "".join(f"  ({i}): {l!r}\n" for i, l in enumerate(self.layers))
