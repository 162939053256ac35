"""GEMM throughput, fastnn vs numpy.matmul (OpenBLAS) in the same run, at pinned thread counts.

    python bench/gemm_table.py                 # 1 and 2 threads, median of 15 repeats
    python bench/gemm_table.py --threads 2 --repeats 25

Each thread count runs in a fresh subprocess with OPENBLAS_NUM_THREADS and FASTNN_NUM_THREADS
set before NumPy loads, so both libraries use the same number of cores. Prints GFLOP/s and the
ratio fastnn/numpy (> 1 means fastnn is faster).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

# (M, K, N, trans_a, trans_b, label): C (M×N) = op(A) (M×K) · op(B) (K×N)
SHAPES = [
    (64, 64, 64, False, False, "square 64"),
    (128, 128, 128, False, False, "square 128"),
    (256, 256, 256, False, False, "square 256"),
    (512, 512, 512, False, False, "square 512"),
    (1024, 1024, 1024, False, False, "square 1024"),
    (100, 784, 128, False, True, "fwd X·W1ᵀ 100×784·784×128"),
    (100, 128, 64, False, True, "fwd X·W2ᵀ 100×128·128×64"),
    (100, 64, 10, False, True, "fwd X·W3ᵀ 100×64·64×10"),
    (100, 10, 64, False, False, "bwd dY·W3 100×10·10×64"),
    (100, 64, 128, False, False, "bwd dY·W2 100×64·64×128"),
    (100, 128, 784, False, False, "bwd dY·W1 100×128·128×784"),
    (10, 100, 64, True, False, "bwd dYᵀ·X 10×100·100×64"),
    (64, 100, 128, True, False, "bwd dYᵀ·X 64×100·100×128"),
    (128, 100, 784, True, False, "bwd dYᵀ·X 128×100·100×784"),
]


def median_time(fn, repeats):
    from fastnn.bench import median  # the one timing helper (pauses, batches fast calls)
    return median(fn, repeats)


def worker(threads, repeats):
    import numpy as np

    import fastnn
    from fastnn.backends import cpp

    assert fastnn.get_num_threads() == threads
    rng = np.random.default_rng(0)
    for m, k, n, ta, tb, label in SHAPES:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        # Pause before each timing: a library's idle threads spin for a while after its last
        # call and would steal the other library's cores.
        time.sleep(0.2)
        t_np = median_time(lambda: np.matmul(opa, opb, out=c), repeats)
        time.sleep(0.2)
        t_fn = median_time(lambda: cpp.gemm(c, a, b, ta, tb), repeats)
        flop = 2 * m * n * k
        print(f"{threads}\t{label}\t{flop / t_np / 1e9:.1f}\t{flop / t_fn / 1e9:.1f}\t{t_np / t_fn:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.threads[0], args.repeats)
    import fastnn
    info = fastnn.build_info()
    print(f"fastnn {info['version']}  simd={info['simd']}  openmp={info['openmp']}  "
          f"median of {args.repeats}")
    print(f"| threads | shape | numpy GFLOP/s | fastnn GFLOP/s | fastnn/numpy |")
    print(f"|---|---|---|---|---|")
    for t in args.threads:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(t), "FASTNN_NUM_THREADS": str(t),
               "OMP_NUM_THREADS": str(t)}
        out = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(t),
                              "--repeats", str(args.repeats)], env=env, check=True,
                             capture_output=True, text=True).stdout
        for line in out.strip().splitlines():
            print("| " + " | ".join(line.split("\t")) + " |")


if __name__ == "__main__":
    main()
