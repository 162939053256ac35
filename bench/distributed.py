"""Data-parallel training speed: 1 rank against 2 ranks (one thread each) on one machine, in
one run, with the share of a step spent exchanging gradients and the price of the fixed-order
combination (fastnn/distributed.py) against a plain MPI Allreduce.

    python bench/distributed.py [--ranks 1,2] [--epochs 3] [--workloads cnn,mlp]

cnn: fastnn.cnn_models' CNN (conv 32-64, 421,642 parameters) on 12,800 Fashion-MNIST images at
batch 128 (compute-bound). mlp: 784-128-64-10 (109,386 parameters) on 60,000 rows at batch 128
(a small model: its steps are short, so the exchange weighs more). Each (workload, ranks) is
an `mpiexec -n K` job timing every epoch after the first (which compiles the plan and warms
the caches); prints the median seconds per epoch, samples per second, the speed-up of K ranks
over 1 rank of distributed fit and over plain single-process fit (1 thread), and the exchange's
share. Needs the [mpi] extra.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def data(workload):
    import fastnn as fnn
    try:
        (X, y), _ = fnn.datasets.load("fashion-mnist")
    except FileNotFoundError:  # same shapes, random values: the speed does not depend on them
        g = np.random.default_rng(0)
        X, y = g.integers(0, 256, (60000, 28, 28)).astype(np.uint8), g.integers(0, 10, 60000)
    X = (X.astype(np.float32) / 255.0 - 0.5) / 0.5
    if workload == "cnn":
        return np.ascontiguousarray(X[:12800, None]), y[:12800].astype(np.int64)
    return X.reshape(len(X), -1), y.astype(np.int64)


def model(workload):
    import fastnn as fnn
    from fastnn import cnn_models
    if workload == "cnn":
        return cnn_models.build("cnn")
    return fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), fnn.Linear(128, 64), fnn.ReLU(), fnn.Linear(64, 10))


def worker(workload, epochs, distributed):
    """One rank: train, print a JSON line of epoch times (rank 0)."""
    import fastnn as fnn
    from fastnn import distributed as dist
    X, y = data(workload)
    fnn.manual_seed(0)
    m = model(workload)
    times = []

    class Clock(fnn.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0, self.x0 = time.perf_counter(), dist.exchange_seconds

        def on_epoch_end(self, epoch, logs=None):
            times.append((time.perf_counter() - self.t0, dist.exchange_seconds - self.x0))
    m.fit(X, y, optimizer="adam", epochs=epochs, batch_size=128, verbose=0, callbacks=[Clock()],
          distributed=distributed)
    out = {"epoch_s": [t for t, _ in times[1:]], "exchange_s": [x for _, x in times[1:]], "rows": len(X)}
    if distributed:
        # one exchange of this model's gradient, fixed order against a plain Allreduce
        from mpi4py import MPI
        comm, P = dist.comm(), m.num_parameters()
        c = dist.Combiner(dist.DEFAULT_SHARDS, 128, 128, False)
        c.use(np.zeros(P, np.float32))
        buf, res = np.ones(P, np.float32), np.empty(P, np.float32)

        def timed(f, n=200):
            ts = []
            for _ in range(n):
                comm.Barrier()
                t = time.perf_counter()
                f()
                ts.append(time.perf_counter() - t)
            return statistics.median(ts)
        out["combine_s"] = timed(lambda: c(0))
        out["allreduce_s"] = timed(lambda: comm.Allreduce(buf, res, op=MPI.SUM))
        if dist.rank() != 0:
            return
    print("RESULT " + json.dumps(out), flush=True)


def launch(workload, k, epochs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FASTNN_NUM_THREADS": "1",
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    me = os.path.abspath(__file__)
    if k == 0:  # plain fit, no MPI
        cmd = [sys.executable, me, "--worker", workload, "--epochs", str(epochs), "--plain"]
    else:
        here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [here if os.path.exists(here) else "mpiexec", "--oversubscribe", "-n", str(k), sys.executable,
               "-m", "mpi4py", me, "--worker", workload, "--epochs", str(epochs)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][0]
    return json.loads(line[len("RESULT "):])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workloads", default="cnn,mlp")
    ap.add_argument("--worker")
    ap.add_argument("--plain", action="store_true")
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.epochs, not a.plain)
    ranks = [int(k) for k in a.ranks.split(",")]
    print(f"| workload | ranks × threads | s/epoch (median) | samples/s | vs 1 rank | vs plain fit | "
          f"exchange share | fixed-order exchange | Allreduce |")
    print("|---|---|---|---|---|---|---|---|---|")
    for w in a.workloads.split(","):
        plain = launch(w, 0, a.epochs)
        base = statistics.median(plain["epoch_s"])
        print(f"| {w} | plain fit, 1 thread | {base:.3f} | {plain['rows'] / base:,.0f} | | 1.00 | | | |", flush=True)
        one = None
        for k in ranks:
            r = launch(w, k, a.epochs)
            t = statistics.median(r["epoch_s"])
            one = one or t
            share = statistics.median(x / e for x, e in zip(r["exchange_s"], r["epoch_s"]))
            print(f"| {w} | {k} × 1 | {t:.3f} | {r['rows'] / t:,.0f} | {one / t:.2f} | {base / t:.2f} | {share:.1%} | "
                  f"{r['combine_s'] * 1e3:.3f} ms | {r['allreduce_s'] * 1e3:.3f} ms |", flush=True)


if __name__ == "__main__":
    main()
