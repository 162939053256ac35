"""Parameters, and the flat buffers they live in.

Every `Parameter` is a view into a `FlatStore`: one 1-D data array and one 1-D gradient array.
A lone parameter has a store of its own; `Sequential` moves all of its parameters into one
store, so `zero_grad` and an optimizer step are one kernel call over the whole model
(`contiguous_runs` finds the spans that can be handled in one call).
"""
from __future__ import annotations

import numpy as np

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Bumped whenever a model's structure may have changed: a layer attribute set (a LeakyReLU's
# slope, a Dropout's p, train/eval) or a parameter moved to another buffer. Compiled plans
# (fastnn/plan.py) remember the count they were built at and are rebuilt when it moved; one
# global count keeps that check to a single read on the batch-1 predict path.
STRUCTURE = [0]


def structure_changed() -> None:
    STRUCTURE[0] += 1


def check_dtype(dtype, who: str) -> np.dtype:
    """float32 (the default compute type) or float64 (for gradient checks)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{who}: dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in DTYPES:
        raise TypeError(f"{who}: dtype must be np.float32 or np.float64, got {dt}")
    return dt


def aligned_zeros(size: int, dtype, align: int = 64) -> np.ndarray:
    """np.zeros(size, dtype) starting on an `align`-byte boundary (a cache line).

    NumPy only promises 16 bytes. The GEMMs write whole 64-byte vectors: a weight gradient
    that starts mid-line makes every row store straddle two lines (measured: 8-20% slower
    GEMMs on 2 threads)."""
    itemsize = np.dtype(dtype).itemsize
    buf = np.zeros(size + align // itemsize, dtype=dtype)
    start = (-buf.ctypes.data % align) // itemsize
    return buf[start:start + size]


class FlatStore:
    """One flat data buffer and one flat gradient buffer of the same size and dtype."""

    __slots__ = ("data", "grad", "__weakref__")

    def __init__(self, size: int, dtype):
        self.data = aligned_zeros(size, dtype)
        self.grad = aligned_zeros(size, dtype)

    # pickle and copy.deepcopy: the copy gets buffers of its own, cache-line aligned again
    def __getstate__(self):
        return {"data": self.data, "grad": self.grad}

    def __setstate__(self, state):
        self.data = aligned_zeros(state["data"].size, state["data"].dtype)
        self.grad = aligned_zeros(state["grad"].size, state["grad"].dtype)
        self.data[...] = state["data"]
        self.grad[...] = state["grad"]


class Parameter:
    """A trainable array: `.data` and `.grad` are NumPy arrays of the same shape.

    Both are views into flat buffers shared with the rest of the model, so assigning to
    `p.data` or `p.grad` copies into them (the shape must match); it never rebinds.

    Args:
        data: initial values; float64 stays float64, anything else becomes float32.
        dtype: force np.float32 or np.float64.

    Example:
        >>> p = Parameter([3.0], dtype=np.float64)
        >>> p.grad[...] = 4.0
        >>> p.data - 0.5 * p.grad
        array([1.])
    """

    __slots__ = ("_store", "_offset", "_shape", "_data", "_grad", "__weakref__")

    def __init__(self, data, dtype=None):
        arr = np.asarray(data)
        if dtype is None:
            dtype = np.float64 if arr.dtype == np.float64 else np.float32
        dt = check_dtype(dtype, "Parameter")
        try:
            arr = np.asarray(arr, dtype=dt)
        except (TypeError, ValueError):
            raise TypeError(f"Parameter: cannot convert {type(data).__name__} to {dt}") from None
        store = FlatStore(arr.size, dt)
        if arr.any():  # the store starts as zeros whose pages are not yet touched: keep it so
            store.data[...] = arr.reshape(-1)
        self._shape = arr.shape
        self._bind(store, 0)

    def _bind(self, store: FlatStore, offset: int) -> None:
        n = self.size
        self._store, self._offset = store, offset
        self._data = store.data[offset:offset + n].reshape(self._shape)
        self._grad = store.grad[offset:offset + n].reshape(self._shape)
        structure_changed()

    # pickle and copy.deepcopy copy the store (once per model: pickle's memo shares it between
    # the parameters) and bind the copy to it, so a copied model owns one flat buffer too
    def __getstate__(self):
        return {"store": self._store, "offset": self._offset, "shape": self._shape}

    def __setstate__(self, state):
        self._shape = tuple(state["shape"])
        self._bind(state["store"], state["offset"])

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data[...] = self._checked(value, "data")

    @property
    def grad(self) -> np.ndarray:
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        self._grad[...] = 0 if value is None else self._checked(value, "grad")

    def _checked(self, value, what):
        value = np.asarray(value)
        if value.shape != self._shape:
            raise ValueError(f"Parameter.{what}: expected shape {self._shape}, got {value.shape}; "
                             "parameters keep their shape (build a new layer to change it)")
        return value

    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def size(self) -> int:
        return int(np.prod(self._shape, dtype=np.int64))

    @property
    def dtype(self) -> np.dtype:
        return self._store.data.dtype

    def zero_grad(self) -> None:
        self._grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={self._shape}, dtype={self.dtype})"


def flatten_into_one_store(params: list[Parameter]) -> FlatStore | None:
    """Move `params` (in order) into one new FlatStore, keeping their values and gradients."""
    if not params:
        return None
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise ValueError(f"all parameters of a model must share one dtype, got {sorted(map(str, dtypes))}; "
                         "build every layer with the same dtype=")
    store = FlatStore(sum(p.size for p in params), dtypes.pop())
    offset = 0
    for p in params:  # one at a time: each old store is freed as its parameter moves
        n = p.size
        store.data[offset:offset + n] = p.data.reshape(-1)
        if p.grad.any():  # zero gradients stay untouched zero pages (measured: 3× -> 2× peak)
            store.grad[offset:offset + n] = p.grad.reshape(-1)
        p._bind(store, offset)
        offset += n
    return store


def unique_parameters(params, who: str) -> list[Parameter]:
    """A list of Parameters from any iterable, rejecting other objects and duplicates."""
    if isinstance(params, Parameter):
        params = [params]
    out, seen = [], set()
    for p in params:
        if not isinstance(p, Parameter):
            raise TypeError(f"{who}: expected fastnn Parameters (e.g. model.parameters()), got "
                            f"{type(p).__name__}")
        if id(p) in seen:
            raise ValueError(f"{who}: a parameter appears more than once ({p!r}); pass each once")
        seen.add(id(p))
        out.append(p)
    return out


class Run:
    """A span [start, stop) of one FlatStore covering consecutive parameters."""

    __slots__ = ("store", "start", "stop", "params")

    def __init__(self, store, start, stop, params):
        self.store, self.start, self.stop, self.params = store, start, stop, params

    @property
    def data(self) -> np.ndarray:
        return self.store.data[self.start:self.stop]

    @property
    def grad(self) -> np.ndarray:
        return self.store.grad[self.start:self.stop]


def contiguous_runs(params: list[Parameter]) -> list[Run]:
    """Group consecutive parameters that sit back to back in one store into single spans."""
    runs: list[Run] = []
    for p in params:
        last = runs[-1] if runs else None
        if last is not None and last.store is p._store and last.stop == p._offset:
            last.stop += p.size
            last.params.append(p)
        else:
            runs.append(Run(p._store, p._offset, p._offset + p.size, [p]))
    return runs


def layout_key(params: list[Parameter]) -> tuple:
    """Changes when any parameter is moved to another store (e.g. into a new Sequential)."""
    return tuple((id(p._store), p._offset) for p in params)
