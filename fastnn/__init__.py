"""fastnn: fast neural networks on CPUs, with a readable NumPy twin of every kernel.

    import fastnn as fnn
    fnn.build_info()          # version, compiler, OpenMP, SIMD path, threads, backend
"""
from fastnn import _core
from fastnn.backends import (
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from fastnn.random import manual_seed

__version__ = _core.__version__


def build_info() -> dict:
    """How this fastnn was built and what it runs: version, compiler, OpenMP on/off, the SIMD
    path in use (and those available on this CPU), the thread count and the backend."""
    info = dict(_core.build_info())
    info["simd"] = _core.simd_path()
    info["simd_available"] = list(_core.simd_available())
    info["num_threads"] = get_num_threads()
    info["backend"] = get_backend()
    return info


__all__ = [
    "__version__", "build_info", "get_backend", "set_backend", "use_backend",
    "get_num_threads", "set_num_threads", "manual_seed",
]
