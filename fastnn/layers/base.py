"""The Layer contract every layer follows (PyTorch's Module, cut to what an MLP needs).

A layer validates its input, calls one backend kernel and caches what its backward needs.
`backward(grad_out)` returns the gradient for its input and ADDS into its parameters' `.grad`.
A layer also describes itself to a compiled plan (`lower`, fastnn/plan.py) and to model files
(`get_config`, and the registry LAYERS that fnn.load builds layers from).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from fastnn.parameter import Parameter, contiguous_runs, structure_changed

# Layer types by name, for fnn.load and gradcheck: fastnn's own, registered with @register.
LAYERS: dict[str, type] = {}


def register(cls):
    """Class decorator: make a layer type loadable from model files by its name."""
    LAYERS[cls.__name__] = cls
    return cls


def indent(text: str) -> str:
    """A nested layer's multi-line repr, indented one level (as PyTorch prints modules)."""
    return text.replace("\n", "\n  ")


def build_layer(kind, config):
    """A layer of registered type `kind` from its get_config() dict."""
    if not isinstance(kind, str) or kind not in LAYERS:
        raise ValueError(f"unknown layer type {kind!r}; fastnn knows {sorted(LAYERS)}")
    if not isinstance(config, dict):
        raise TypeError(f"the config of a {kind} must be a dict, got {type(config).__name__}")
    return LAYERS[kind].from_config(config)


def shape_str(shape) -> str:
    return str(tuple(int(s) for s in shape))


def float_input(x, who: str, dtype=None) -> np.ndarray:
    """`x` as a float array: `dtype` if given, else float64 kept and anything else float32."""
    if isinstance(x, Parameter):
        x = x.data
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if dtype is None:
        dtype = np.float64 if arr.dtype == np.float64 else np.float32
    if arr.dtype == dtype:
        return arr
    if arr.dtype.kind not in "biuf":
        if arr.dtype == object and arr.ndim == 0 and hasattr(x, "__next__"):
            raise TypeError(f"{who}: takes arrays, got a {type(x).__name__}; collect the batches first "
                            "(X = np.concatenate([xb for xb, _ in batches])), or train chunk by chunk with "
                            "model.fit(xb, yb, epochs=1) in a loop over them")
        raise TypeError(f"{who}: expected numbers, got an array of {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range: inf, reported by the caller
        return arr.astype(dtype)


def nonfinite_message(who: str, X: np.ndarray, flat_index: int, given=None) -> str:
    """The error for a NaN or infinity at X.flat[flat_index]; `given` is the array the user
    passed when X is its conversion (a finite float64 beyond float32's range became inf)."""
    pos = np.unravel_index(int(flat_index), X.shape)
    where = tuple(int(i) for i in pos)
    if isinstance(given, np.ndarray) and given.shape == X.shape and np.isfinite(given[pos]):
        return (f"{who}: X holds {given[pos]} at index {where}, beyond {X.dtype}'s range "
                f"(±{float(np.finfo(X.dtype).max):.3g}); scale the inputs down")
    step = "training" if who.startswith("fit") else f"calling {who.split()[0].split('.')[-1]}"
    return f"{who}: X contains {X[pos]} at index {where}; remove or impute non-finite values before {step}"


def state_array(value, dtype, what: str) -> np.ndarray:
    """A state_dict entry as an array of dtype (a parameter's, an optimizer buffer's). A finite
    value beyond dtype's range (1e300 into float32) would become inf, so it is refused with a
    ValueError naming `what` and the value; infinities and NaN load as they are. Raises
    TypeError when the value is not numbers."""
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            v = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{what} cannot be converted to {np.dtype(dtype)}") from None
    given = np.asarray(value)
    if v.dtype.kind == "f" and given.dtype.kind == "f" and given.dtype.itemsize > v.dtype.itemsize and v.size:
        lost = np.isinf(v) & np.isfinite(given)
        if lost.any():
            pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(lost)), v.shape))
            raise ValueError(f"{what} holds {given[pos]} at index {pos}, beyond {np.dtype(dtype)}'s range "
                             f"(±{float(np.finfo(dtype).max):.3g})")
    return v


class Layer:
    """Base class: parameters, train/eval mode, state_dict and the call protocol.

    Example:
        >>> class Double(fnn.Layer):
        ...     def forward(self, x):
        ...         return 2 * x
        ...     def backward(self, grad_out):
        ...         return 2 * grad_out
        >>> Double()(np.ones(2))
        array([2., 2.])
    """

    def forward(self, x):
        """The layer's output for x (each layer defines it)."""
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def backward(self, grad_out):
        """∂loss/∂input from ∂loss/∂output, after forward (each trainable layer defines it)."""
        raise NotImplementedError(f"{type(self).__name__} defines no backward; it can be used for inference only")

    def __init__(self):
        self.training = True
        self._parameters: OrderedDict[str, Parameter] = OrderedDict()
        # state that is not trained (BatchNorm's running statistics): in state_dict, saved and
        # loaded with the model, never seen by an optimizer
        self._buffers: OrderedDict[str, np.ndarray] = OrderedDict()
        self._saved = None
        self.metadata: dict = {}  # free-form; fnn.save stores it, fnn.load restores it

    def __setattr__(self, name, value):
        # a public attribute (a setting, the mode, a sub-layer) may change what a compiled plan
        # computes; private ones (what forward keeps for backward) cannot
        if name[0] != "_":
            structure_changed()
        object.__setattr__(self, name, value)

    # -- subclasses define forward(x) and backward(grad_out), and override these
    def get_config(self) -> dict:
        """The constructor arguments that rebuild this layer (used by fnn.save)."""
        return {}

    @classmethod
    def from_config(cls, config: dict):
        """The layer get_config() describes."""
        return cls(**config)

    def output_shape(self, input_shape: tuple) -> tuple:
        """The output shape for an input shape (None for the batch dimension)."""
        return input_shape

    def lower(self, plan, x):
        """Add this layer's ops to a compiled plan (fastnn/plan.py, Builder) and return the value
        they output, or None when the layer cannot run in a plan: the model then runs layer by
        layer. `x` is the plan value this layer reads (x.shape: one sample's shape). A layer
        without a lower (a user's own subclass, say) runs as it is, through forward/backward."""
        return None

    # -- shared behaviour
    def __call__(self, x):
        return self.forward(x)

    def _saved_or_raise(self):
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward; run "
                               "forward on a batch first (backward uses what forward cached)")
        return self._saved

    def _grad_like(self, grad_out, like: np.ndarray) -> np.ndarray:
        g = float_input(grad_out, f"{type(self).__name__}.backward", like.dtype)
        if g.shape != like.shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_out has shape {shape_str(g.shape)} "
                             f"but the forward output had shape {shape_str(like.shape)}")
        return g

    def children(self) -> list:
        """(name, layer) of the layers this one holds (Sequential's, a Residual's paths)."""
        return []

    def modules(self):
        """This layer and every layer it holds, depth first (PyTorch's Module.modules)."""
        yield self
        for _, child in self.children():
            if child is not None:
                yield from child.modules()

    def smallest_batch(self, sample_shape: tuple | None = None) -> int:
        """The fewest samples a training batch may hold, over this layer and the layers it holds,
        for samples of sample_shape (without the batch dimension) when given: a BatchNorm needs
        two values per channel, so two samples where one holds a single value per channel. fit
        checks its batches against it before the first step. (Here the shape reaching the layers
        held is not known: they are asked without it; Sequential and Residual pass it on.)"""
        return max([1] + [c.smallest_batch() for _, c in self.children() if c is not None])

    def named_parameters(self, prefix: str = ""):
        """(name, Parameter) pairs, named as PyTorch does ("weight", "0.bias", ...)."""
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, child in self.children():
            if child is not None:
                yield from child.named_parameters(f"{prefix}{name}.")

    def named_buffers(self, prefix: str = ""):
        """(name, array) pairs of the state that is not trained, named as PyTorch does."""
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, child in self.children():
            if child is not None:
                yield from child.named_buffers(f"{prefix}{name}.")

    def _named_state(self, prefix: str = ""):
        # PyTorch's state_dict order: a layer's parameters, its buffers, then its children's
        for name, p in self._parameters.items():
            yield prefix + name, p
        for name, b in self._buffers.items():
            yield prefix + name, b
        for name, child in self.children():
            if child is not None:
                yield from child._named_state(f"{prefix}{name}.")

    def buffers(self) -> list:
        return [b for _, b in self.named_buffers()]

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        """Set every parameter gradient to 0 (one fill per flat buffer)."""
        for run in contiguous_runs(self.parameters()):
            run.grad[...] = 0

    def train(self, mode: bool = True):
        self.training = bool(mode)
        for _, child in self.children():
            if child is not None:
                child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def dtype(self):
        ps = self.parameters()
        return ps[0].dtype if ps else None

    def state_dict(self) -> OrderedDict:
        """Copies of every parameter and buffer, keyed and ordered as PyTorch keys them."""
        return OrderedDict((k, (v.data if isinstance(v, Parameter) else v).copy()) for k, v in self._named_state())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy values in, after checking every key and shape (nothing changes on error)."""
        if not hasattr(state, "items"):
            raise TypeError(f"load_state_dict expects a dict of arrays, got {type(state).__name__}")
        own = OrderedDict(self._named_state())
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict does not match {type(self).__name__}: missing keys "
                           f"{missing}, unexpected keys {unexpected}; keys are {list(own)}")
        staged = []
        for k, p in own.items():
            if k not in state:
                continue
            v = state_array(state[k], p.dtype, f"state_dict[{k!r}]")
            if v.shape != p.shape:
                raise ValueError(f"state_dict[{k!r}] has shape {shape_str(v.shape)}, the model's "
                                 f"{k} has {shape_str(p.shape)}")
            staged.append((p, v))
        for p, v in staged:  # in place: compiled plans keep pointing at the same memory
            if isinstance(p, Parameter):
                p.data = v
            else:
                p[...] = v

    def summary_label(self) -> str:
        """How model.summary() names this layer."""
        return repr(self)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "dtype")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
