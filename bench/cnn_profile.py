"""Where a CNN training step spends its time: per-op forward and backward times of the
compiled plan (fastnn/plan.py), with GFLOP/s for the convolutions and Linear layers against
the FMA limit of the cores, for a net of fastnn.cnn_models ("cnn", "cnn-bn" or "resnet"; the
GFLOP/s for the first two) on Fashion-MNIST (random data of its shape when the dataset is not
installed).

    python bench/cnn_profile.py [--model cnn] [--batches 40] [--batch-size 128] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastnn as fnn
from fastnn import _core, cnn_models, plan


def flops(model, batch: int) -> dict:
    """Forward multiply-adds × 2 of each conv and Linear layer, in order."""
    out, shape = [], (batch, 1, 28, 28)
    for layer in model.layers:
        nxt = layer.output_shape(shape)
        if isinstance(layer, fnn.Conv2d):
            kh, kw = layer.kernel_size
            out.append(2 * np.prod(nxt) * layer.in_channels // layer.groups * kh * kw)
        elif isinstance(layer, fnn.Linear):
            out.append(2 * batch * layer.in_features * layer.out_features)
        shape = nxt
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", choices=cnn_models.NAMES, default="cnn")
    p.add_argument("--batchnorm", action="store_true", help="the same as --model cnn-bn")
    p.add_argument("--fma-gflops", type=float, default=None,
                   help="one core's FMA limit in GFLOP/s (default: measured, fastnn._core.fma_peak_gflops: "
                        "12 independent FMA chains; ~212 on the Intel cores and ~118 on the AMD Zen 4 cores seen "
                        "here, which run one 512-bit FMA per cycle where Intel's run two)")
    a = p.parse_args(argv)
    fnn.set_num_threads(a.threads)
    try:
        (X, y), _ = fnn.datasets.load("fashion-mnist", download=False)
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        X, y = rng.random((60000, 28, 28), dtype=np.float32), rng.integers(0, 10, 60000)
    n = a.batches * a.batch_size
    X, y = fnn.data.normalize(X.reshape(-1, 1, 28, 28)[:n]), y[:n].astype(np.int64)
    fnn.manual_seed(0)
    name = "cnn-bn" if a.batchnorm else a.model
    model = cnn_models.build(name).train()
    runner = plan.training(model, fnn.CrossEntropyLoss(), fnn.Adam(model.parameters()), X, y, None)
    order = np.arange(n, dtype=np.int64)
    runner.run(order, a.batch_size, 0, 2)                      # warm up: workspace, caches
    core = runner.compiled.core
    core.set_profiling(True)
    t0 = time.perf_counter()
    runner.run(order, a.batch_size, 0, a.batches)
    wall = (time.perf_counter() - t0) / a.batches
    rows, work = core.op_times(), iter(flops(model, a.batch_size) if name != "resnet" else [])
    peak = (a.fma_gflops or _core.fma_peak_gflops(0.1)) * a.threads
    print(f"{a.batches} batches of {a.batch_size}, {a.threads} thread(s); per batch, in ms:")
    print(f"{'op':22s} {'forward':>8s} {'backward':>9s}   GFLOP/s fwd / bwd (FMA limit {peak:.0f})")
    total = 0.0
    for i, (name, f, b, batches) in enumerate(rows):
        f, b = f / batches * 1e3, b / batches * 1e3
        total += f + b
        rate = ""
        fl = next(work, None) if name.startswith("conv2d") or name == "linear" else None
        if fl is not None:
            bw_fl = fl if i == 0 else 2 * fl  # the first op computes no input gradient
            rate = f"   {fl / f / 1e6:6.0f} / {bw_fl / b / 1e6 if b else 0:6.0f}"
        print(f"{name:22s} {f:8.2f} {b:9.2f}{rate}")
    print(f"ops {total:.1f} ms, whole step {wall * 1e3:.1f} ms (gather, loss, optimizer: the rest); "
          f"a 60,000-sample epoch ≈ {wall * 60000 / a.batch_size:.1f} s")


if __name__ == "__main__":
    main()
