"""Training speed beside other work: fastnn at 1 thread and at its default thread count, on an
idle machine and beside busy processes (each a Python loop spinning on one core), in one run.

    python bench/under_load.py [--repeats 5] [--busy 1] [--workloads mlp32,mlp128,cnn]

Each measurement is a fresh model's fit of 2 epochs (an MLP on 60,000 random Fashion-MNIST-
sized rows, or the CNN of fastnn.cnn_models on 2,560 images), timed whole: what a user waits
for, the tuner's first probes included. Prints the median seconds per epoch of each
(workload, threads, load) and the ratios that matter: default threads beside the load over
1 thread beside it (goal: at most 1.3), and 1 thread over the default threads on the idle
machine (the speed-up the default threads give, which a fix for the loaded case must keep).
"untuned" columns keep every step on the default threads (fastnn before its ThreadTuner,
csrc/core/tuner.h). Conditions alternate within each repeat, so a slow moment of the shared
machine hits them all alike.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import fastnn as fnn

SPIN = "import time\nwhile True:\n    pass\n"


def workloads(names):
    rng = np.random.default_rng(0)
    out = {}
    if "mlp32" in names or "mlp128" in names:
        X = rng.random((60000, 784), dtype=np.float32)
        y = rng.integers(0, 10, len(X))
        for b in (32, 128):
            if f"mlp{b}" in names:
                out[f"mlp{b}"] = (lambda: fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), fnn.Linear(128, 64),
                                                         fnn.ReLU(), fnn.Linear(64, 10)), X, y, b)
    if "cnn" in names:
        from fastnn.cnn_models import build
        X = rng.random((2560, 1, 28, 28), dtype=np.float32)
        y = rng.integers(0, 10, len(X))
        out["cnn"] = (lambda: build("cnn"), X, y, 128)
    return out


EPOCHS = 2


def epoch_seconds(make, X, y, batch, threads, tuning):
    from fastnn import _core
    fnn.manual_seed(0)
    model = make()
    opt = fnn.SGD(model.parameters(), lr=0.01, momentum=0.9)
    fnn.set_num_threads(threads)
    _core._set_thread_tuning(tuning)
    t = time.perf_counter()
    model.fit(X, y, optimizer=opt, epochs=EPOCHS, batch_size=batch, verbose=0)
    return (time.perf_counter() - t) / EPOCHS


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--busy", type=int, default=1, help="busy processes beside fastnn under load")
    ap.add_argument("--workloads", default="mlp32,mlp128,cnn")
    ap.add_argument("--untuned-busy", action="store_true",
                    help="also time the default threads without tuning beside the load (slow: 10-25x)")
    args = ap.parse_args(argv)
    default = fnn.get_num_threads()
    print(f"fastnn {fnn.__version__}, {os.cpu_count()} cores, default threads {default}, "
          f"{args.busy} busy process(es) under load, {args.repeats} repeats", flush=True)
    loads = workloads(args.workloads.split(","))
    # (threads, tuning): 1 thread; the default threads as fastnn runs them (tuned); the default
    # threads on every step (untuned: before the ThreadTuner), idle only unless asked
    ways = {"idle": [(1, True), (default, True), (default, False)],
            "busy": [(1, True), (default, True)] + ([(default, False)] if args.untuned_busy else [])}
    times = {}
    for r in range(args.repeats):
        for load in ("idle", "busy"):
            spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy if load == "busy" else 0)]
            try:
                time.sleep(0.2 if spinners else 0)
                for name, (make, X, y, batch) in loads.items():
                    order = ways[load] if r % 2 == 0 else ways[load][::-1]
                    for threads, tuning in order:
                        times.setdefault((name, load, threads, tuning), []).append(
                            epoch_seconds(make, X, y, batch, threads, tuning))
            finally:
                for s in spinners:
                    s.kill()
                    s.wait()
    fnn.set_num_threads(default)
    med = {k: statistics.median(v) for k, v in times.items()}
    d = default
    print(f"seconds per epoch (median); {d}T = fastnn's default threads, untuned = every step on them")
    print(f"{'workload':9s} {'1T idle':>8s} {f'{d}T idle':>8s} {'untuned':>8s} {'1T busy':>8s} {f'{d}T busy':>8s}"
          f"{' untuned' if args.untuned_busy else ''} {'busy ratio':>10s} {'idle speed-up':>13s} {'untuned':>8s}")
    for name in loads:
        i1, i2, iu = (med[(name, "idle", t, u)] for t, u in ways["idle"])
        b1, b2 = med[(name, "busy", 1, True)], med[(name, "busy", d, True)]
        bu = f" {med[(name, 'busy', d, False)]:8.3f}" if args.untuned_busy else ""
        print(f"{name:9s} {i1:8.3f} {i2:8.3f} {iu:8.3f} {b1:8.3f} {b2:8.3f}{bu} {b2 / b1:10.2f} {i1 / i2:13.2f}"
              f" {i1 / iu:8.2f}")
    print(f"busy ratio = {d} threads / 1 thread, both beside the busy process(es) (goal <= 1.3); "
          f"idle speed-up = 1 thread / {d} threads on the idle machine, tuned and untuned (should match)")


if __name__ == "__main__":
    main()
