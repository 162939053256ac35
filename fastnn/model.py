"""Models: layers that train. `Model` owns fit / evaluate / predict / save on top of a layer's
forward and backward (the loop is fastnn/training.py, files fastnn/serialization.py, the
compiled plan that runs a model fastnn/plan.py); `Sequential` is the model made of layers in
order, with one flat buffer for all their parameters."""
from __future__ import annotations

import numpy as np

from fastnn import plan, serialization, training
from fastnn.layers.base import Layer, build_layer, float_input, indent, register
from fastnn.layers.shape import Flatten
from fastnn.parameter import flatten_into_one_store


class Summary(str):
    """The text of model.summary(); shows as a table (not a quoted string) in a REPL."""

    def __repr__(self) -> str:
        return str(self)


class Model(Layer):
    """A layer with the Keras-style loop: fit, evaluate, predict, save.

    In eval mode `model(x)` runs the compiled inference plan (one C++ call, nothing kept for
    backward) when the model has one; `model.forward(x)` always runs layer by layer.

    Example:
        >>> isinstance(fnn.Sequential(fnn.Linear(2, 1)), fnn.Model)
        True
    """

    # attributes fit and fnn.load set that a compiled plan does not depend on
    _plan_free_attributes = ("stop_training", "metadata")

    def __setattr__(self, name, value):
        if name in self._plan_free_attributes:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __call__(self, x):
        if not self.training:
            X = x
            if type(X) is not np.ndarray or not (X.flags.c_contiguous and X.flags.aligned) or X.ndim < 1:
                X = np.require(float_input(x, type(self).__name__, self.dtype or np.float32), requirements="CA")
            c = plan.inference(self, X) if X.ndim >= 1 else None  # None for another dtype
            if c is None and X.dtype != (self.dtype or X.dtype):
                X = float_input(X, type(self).__name__, self.dtype)
                c = plan.inference(self, X)
            if c is not None:
                out = c.predict(X, max(len(X), 1))
                self._plan_output = True
                return out
        return self.forward(x)

    def _check_backward(self):
        if self.__dict__.get("_plan_output"):
            raise RuntimeError("model(x) in eval mode ran the compiled inference plan, which keeps "
                               "nothing for backward; call model.train() before model(x), or use "
                               "model.forward(x)")

    def fit(self, X, y, **kwargs):
        """Train on (X, y); see fastnn.training.fit for every argument. Returns a History."""
        return training.fit(self, X, y, **kwargs)

    def evaluate(self, X, y, **kwargs) -> dict:
        """Loss (and accuracy for classifiers) on (X, y) in eval mode; see fastnn.training.evaluate."""
        return training.evaluate(self, X, y, **kwargs)

    def predict(self, X, batch_size: int | None = None) -> np.ndarray:
        """The model's outputs for X in eval mode (dropout off) — for a classifier trained with
        CrossEntropyLoss or BCEWithLogitsLoss these are logits; predict_proba turns them into
        probabilities. `batch_size` rows at a time (None: as many as keep the working memory
        near 8 MiB); see fastnn.training.predict."""
        return training.predict(self, X, batch_size=batch_size)

    def predict_proba(self, X, batch_size: int | None = None, loss=None) -> np.ndarray:
        """Class probabilities for X: softmax of the outputs for a model trained with
        CrossEntropyLoss, sigmoid for BCEWithLogitsLoss, the outputs themselves for BCELoss.
        `loss` defaults to the one the model was last fitted with; see
        fastnn.training.predict_proba."""
        return training.predict_proba(self, X, batch_size=batch_size, loss=loss)

    def save(self, path, optimizer=None, metadata: dict | None = None) -> None:
        """fnn.save(self, path, optimizer, metadata): architecture, weights and optionally the
        optimizer's state, written atomically."""
        serialization.save(self, path, optimizer=optimizer, metadata=metadata)

    # pickle and copy.deepcopy: compiled plans hold C++ objects and pointers into this model's
    # buffers; the copy compiles its own
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_plan")}

    def __setstate__(self, state):
        self.__dict__.update(state)


@register
class Sequential(Model):
    """A stack of layers: forward runs them first to last, backward last to first.

    All parameters move into one flat data buffer and one flat gradient buffer, so
    `zero_grad()` and an optimizer step are one kernel call for the whole model. Slicing
    (`model[:2]`) returns a Sequential of the same layers sharing those parameters, as
    PyTorch's does.

    Args:
        *layers: the layers, in order (or one list of them).

    Example:
        >>> model = fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), fnn.Linear(128, 10))
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

    @classmethod
    def _view(cls, layers: tuple) -> Sequential:
        """A Sequential of `layers` that leaves their parameters where they are (slicing)."""
        view = cls.__new__(cls)
        Model.__init__(view)
        view.layers = layers
        view.stop_training = False
        view.training = all(layer.training for layer in layers) if layers else True
        return view

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        specs = config.get("layers") if isinstance(config, dict) else None
        if not isinstance(specs, list):
            raise ValueError("a Sequential config needs a list of layers")
        layers = []
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise ValueError(f"layer {i} is not described by a dict")
            try:
                layers.append(build_layer(spec.get("type"), spec.get("config", {})))
            except (TypeError, ValueError) as e:
                raise ValueError(f"cannot build layer {i} ({spec.get('type')}) from {spec.get('config', {})}: "
                                 f"{e}") from None
        return cls(layers)

    def children(self) -> list:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def smallest_batch(self, sample_shape: tuple | None = None) -> int:
        need = 1
        for layer in self.layers:  # each layer asked with the shape reaching it
            need = max(need, layer.smallest_batch(sample_shape))
            try:
                sample_shape = None if sample_shape is None else tuple(layer.output_shape((None, *sample_shape))[1:])
            except ValueError:  # (a shape the layer refuses: fit says so when it runs it)
                sample_shape = None
        return need

    def forward(self, x):
        self._plan_output = False
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad_out):
        """Backpropagate ∂loss/∂output through every layer; returns ∂loss/∂input and adds
        into every parameter's .grad."""
        self._check_backward()
        for layer in reversed(self.layers):
            grad_out = layer.backward(grad_out)
        return grad_out

    def lower(self, plan, x):
        for layer in self.layers:
            x = layer.lower(plan, x)
            if x is None:
                return None
        return x

    def __getitem__(self, i):
        return Sequential._view(self.layers[i]) if isinstance(i, slice) else self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def get_config(self) -> dict:
        return {"layers": [{"type": type(layer).__name__, "config": layer.get_config()} for layer in self.layers]}

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
            if shape is None and hasattr(layer, "in_features"):
                shape = (None, layer.in_features)  # a Linear's input width is known
            if shape is not None:
                shape = layer.output_shape(shape)
            elif isinstance(layer, Flatten) and i + 1 < len(self.layers) and hasattr(self.layers[i + 1], "in_features"):
                shape = (None, self.layers[i + 1].in_features)  # what the Linear after it takes
            rows.append((f"{i}", layer.summary_label(), "?" if shape is None else
                         "(" + ", ".join("None" if s is None else str(s) for s in shape) + ")",
                         f"{layer.num_parameters():,}"))
        w_layer = max([len("Layer")] + [len(r[1]) for r in rows])
        w_shape = max([len("Output shape")] + [len(r[2]) for r in rows])
        w_params = max([len("Params")] + [len(r[3]) for r in rows])
        width = 4 + w_layer + 2 + w_shape + 2 + w_params
        line = lambda a, b, c, d: f"{a:>2}  {b:<{w_layer}}  {c:<{w_shape}}  {d:>{w_params}}"
        total = self.num_parameters()
        dtype = self.dtype or np.dtype(np.float32)
        out = ["Sequential", "-" * width, line("#", "Layer", "Output shape", "Params"), "=" * width]
        out += [line(*r) for r in rows]
        out += ["=" * width, f"Total params: {total:,} ({total * dtype.itemsize / 1024:,.1f} KiB as {dtype})"]
        return Summary("\n".join(out))

    def extra_repr(self) -> str:
        return "\n" + "".join(f"  ({i}): {indent(repr(layer))}\n" for i, layer in enumerate(self.layers))
