"""How much a second thread speeds up fastnn's GEMM, per shape (the data behind the
kMinMacsPerThread threshold in csrc/gemm/gemm_blocked.cpp).

    python bench/gemm_threads.py              # medians of 400 calls, each shape measured twice

The kernel still applies its own threshold, so shapes below it run one thread either way and
report ~1.0; to see their two-thread time, rebuild with a lower kMinMacsPerThread. Ratios to
NumPy are in bench/gemm_table.py.
"""
import time

import numpy as np

import fastnn
from fastnn.backends import cpp

SHAPES = [  # (M, K, N, trans_a, trans_b)
    (100, 784, 128, False, True), (100, 128, 64, False, True), (100, 64, 128, False, False),
    (100, 128, 784, False, False), (64, 100, 128, True, False), (128, 100, 784, True, False),
    (256, 256, 256, False, False), (200, 784, 128, False, False), (100, 256, 128, False, False),
]


def median_us(fn, n=400):
    fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[n // 2] * 1e6


def main():
    rng = np.random.default_rng(0)
    print("shape                      MACs     1 thread   2 threads   speedup (two repeats)")
    for m, k, n, ta, tb in SHAPES:
        a = rng.random((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.random((n, k) if tb else (k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        times = []
        for _ in range(2):
            for threads in (1, 2):
                fastnn.set_num_threads(threads)
                times.append(median_us(lambda: cpp.gemm(c, a, b, ta, tb)))
        print(f"{m}x{k}x{n} ta={int(ta)} tb={int(tb)}  {m * n * k / 1e6:6.1f}M  {times[0]:8.1f}us "
              f"{times[1]:8.1f}us   {times[0] / times[1]:.2f} {times[2] / times[3]:.2f}")


if __name__ == "__main__":
    main()
