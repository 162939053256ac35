"""Pin both libraries to BENCH_THREADS threads (default 1) before NumPy is imported."""
import os

_threads = os.environ.get("BENCH_THREADS", "1")
for var in ("OPENBLAS_NUM_THREADS", "FASTNN_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[var] = _threads
