"""Backend selection and thread count.

Two backends expose the same kernel functions with the same signatures: "cpp" (fastnn._core,
the default) and "numpy" (numpy_ref.py, the readable reference). FASTNN_BACKEND picks the
default; set_backend / use_backend switch at run time. Layers call `fastnn.backends.ops()`.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from types import ModuleType

from fastnn import _core
from fastnn.backends import cpp, numpy_ref

KERNELS = (
    "gemm", "linear_forward", "linear_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "gelu_forward", "gelu_backward", "softmax_forward", "softmax_backward", "step_forward",
    "dropout_apply", "add_forward",
    "conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "batchnorm_stats", "batchnorm_forward", "batchnorm_backward", "batchnorm_update",
    "cross_entropy_forward", "mse_forward", "bce_with_logits_forward", "bce_forward",
    "argmax_correct", "threshold_correct",
    "sgd_step", "adam_step", "rmsprop_step",
)

_MODULES: dict[str, ModuleType] = {"cpp": cpp, "numpy": numpy_ref}


def _check_name(name) -> str:
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose 'cpp' or 'numpy'")
    return name


def _default_backend() -> str:
    name = os.environ.get("FASTNN_BACKEND", "cpp").strip().lower() or "cpp"
    if name not in _MODULES:
        raise ValueError(f"FASTNN_BACKEND={name!r} is not a backend; set it to 'cpp' or 'numpy'")
    return name


_current = _default_backend()


def get_backend() -> str:
    """The name of the backend in use: "cpp" or "numpy".

    Example:
        >>> fnn.get_backend()
        'cpp'
    """
    return _current


def set_backend(name: str) -> None:
    """Select the backend for all later kernel calls: "cpp" or "numpy".

    Example:
        >>> fnn.set_backend("numpy"); fnn.get_backend()
        'numpy'
        >>> fnn.set_backend("cpp")
    """
    global _current
    _current = _check_name(name)


@contextlib.contextmanager
def use_backend(name: str):
    """Temporarily select a backend: `with fnn.use_backend("numpy"): ...`.

    Example:
        >>> with fnn.use_backend("numpy"):
        ...     fnn.get_backend()
        'numpy'
    """
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def ops(name: str | None = None) -> ModuleType:
    """The kernel module of the backend in use (or of `name`)."""
    return _MODULES[_current if name is None else _check_name(name)]


def _default_threads() -> int:
    """FASTNN_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may use; a value
    that is not a whole number >= 1 is reported with a warning and skipped (import never fails)."""
    for var in ("FASTNN_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                n = 0
            if n >= 1:
                return n
            warnings.warn(f"{var}={value!r} is not a whole number of threads >= 1; ignoring it", RuntimeWarning,
                          stacklevel=2)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_num_threads(n: int) -> None:
    """Threads the C++ kernels may use. Results do not depend on it (bitwise).

    A process forked from one that had loaded fastnn (multiprocessing's default "fork" start
    method on Linux) runs on one thread: OpenMP's thread pool does not survive a fork. Use the
    "spawn" or "forkserver" start method for workers that should use several threads.

    Example:
        >>> n = fnn.get_num_threads(); fnn.set_num_threads(1); fnn.get_num_threads()
        1
        >>> fnn.set_num_threads(n)
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads expects an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if n > 1 and _core.forked_child():
        warnings.warn(f"set_num_threads({n}): this process was forked after fastnn loaded, so its kernels run on "
                      "one thread (OpenMP's threads do not survive a fork); start workers with "
                      "multiprocessing.get_context('spawn') to use more", RuntimeWarning, stacklevel=2)
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the C++ kernels use.

    Example:
        >>> fnn.get_num_threads() >= 1
        True
    """
    return _core.get_num_threads()


def _check_simd_env() -> None:
    """FASTNN_SIMD names a path (portable, avx2, avx512) this CPU can run, or a warning says
    which path runs instead."""
    want = os.environ.get("FASTNN_SIMD", "").strip()
    if want and want != _core.simd_path():
        known = ("portable", "avx2", "avx512")
        why = "is not a SIMD path" if want not in known else "asks for a path this CPU or build cannot run"
        warnings.warn(f"FASTNN_SIMD={want!r} {why} (choose one of {', '.join(_core.simd_available())}); using "
                      f"{_core.simd_path()}", RuntimeWarning, stacklevel=2)


set_num_threads(_default_threads())
_check_simd_env()
