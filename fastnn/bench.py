"""`fastnn bench`: fastnn against its NumPy twin, PyTorch and scikit-learn (when installed),
measured in one run with every library pinned to the same thread count.

    fastnn bench                  # 2 threads, median of 5 repeats
    fastnn bench --threads 1 --repeats 7 --quick

The measurements run in a child process started with OPENBLAS/OMP/MKL/FASTNN thread counts
set before NumPy loads. Each row prints median times and ratios; "× torch" is how many times
faster fastnn is than PyTorch (> 1: fastnn faster). Speed is never asserted in tests.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

GEMM_SHAPES = [  # (M, K, N, trans_a, trans_b, label): C (M×N) = op(A) · op(B)
    (256, 256, 256, False, False, "sgemm 256²"),
    (512, 512, 512, False, False, "sgemm 512²"),
    (1024, 1024, 1024, False, False, "sgemm 1024²"),
    (2048, 2048, 2048, False, False, "sgemm 2048²"),
    (100, 784, 128, False, True, "X·W1ᵀ 100×784·784×128"),
    (100, 128, 64, False, True, "X·W2ᵀ 100×128·128×64"),
    (100, 64, 10, False, True, "X·W3ᵀ 100×64·64×10"),
    (100, 10, 64, False, False, "dY·W3 100×10·10×64"),
    (100, 64, 128, False, False, "dY·W2 100×64·64×128"),
    (10, 100, 64, True, False, "dYᵀ·X 10×100·100×64"),
    (64, 100, 128, True, False, "dYᵀ·X 64×100·100×128"),
    (128, 100, 784, True, False, "dYᵀ·X 128×100·100×784"),
]


def _calls_per_sample(fn, min_seconds: float, warm_seconds: float = 0.2) -> int:
    """After a pause and warm-up calls (at least one, for at least warm_seconds), how many calls
    of fn one timed sample takes to last min_seconds (doubling from 1). The warm-up is what a
    loop of calls runs at: right after the pause this machine's cores run calls of ~50–500 µs
    1.5–2× slower for tens of milliseconds (CNN predict at batch 1: 96 against 63 µs for fastnn,
    501 against 234 µs for PyTorch), which 5 samples of 2 ms would measure instead."""
    time.sleep(0.3)
    t0 = time.perf_counter()
    fn()
    while time.perf_counter() - t0 < warm_seconds:
        fn()
    inner = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        if time.perf_counter() - t0 > min_seconds or inner >= 1 << 16:
            return inner
        inner *= 2


def median(fn, repeats: int, min_seconds: float = 2e-3) -> float:
    """Median seconds per call; fast calls are batched so one sample lasts >= min_seconds.
    Starts with a pause: another library's idle worker threads spin for a while after its
    last call and would steal the cores (measured: torch.mm 256² took 7.8 ms right after
    fastnn, 0.17 ms after a pause)."""
    inner = _calls_per_sample(fn, min_seconds)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return sorted(samples)[len(samples) // 2]


def medians_alternating(fns, repeats: int, min_seconds: float = 2e-3) -> list:
    """median() of each of fns (None entries give None), their samples taken in turns — fastnn's,
    then PyTorch's, and again — so that both see the machine's slow and fast minutes alike
    (this shared machine's speed drifts by 10–40% over a run: one library timed after the
    other would carry the drift into the ratio). A pause before each turn, as in median(): for
    samples of seconds (training epochs), which the cores' waking after it does not skew."""
    inners = [0 if fn is None else _calls_per_sample(fn, min_seconds) for fn in fns]
    samples: list = [[] for _ in fns]
    for _ in range(repeats):
        for fn, inner, out in zip(fns, inners, samples):
            if fn is None:
                continue
            time.sleep(0.3)
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            out.append((time.perf_counter() - t0) / inner)
    return [sorted(x)[len(x) // 2] if x else None for x in samples]


def _fmt(seconds):
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.3f} s"


def _ratio(other, mine):
    return "—" if other is None or mine is None else f"{other / mine:.2f}×"


def _cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what the platform module says)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine() or "unknown"


def run(threads: int, repeats: int, quick: bool) -> None:
    import numpy as np

    import fastnn as fnn
    from fastnn import _core
    torch: Any
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        MLPClassifier = None
    fnn.set_num_threads(threads)
    rows = []

    def row(group, what, mine, twin=None, pt=None, sk=None, target=""):
        rows.append((group, what, mine, twin, pt, sk, target))
        print(f"| {group} | {what} | {_fmt(mine)} | {_fmt(twin)} | {_fmt(pt)} | {_fmt(sk)} | "
              f"{_ratio(twin, mine)} | {_ratio(pt, mine)} | {target} |", flush=True)

    print(f"fastnn {fnn.__version__}, simd={fnn.build_info()['simd']}, {threads} thread(s) for every "
          f"library, median of {repeats}" + (", quick (10,000 training rows)" if quick else ""))
    # The same SIMD path runs at different FMA rates on different CPUs (one 512-bit FMA per cycle
    # on AMD Zen 4, two on Intel's server cores), and fastnn's convolutions and GEMMs run near it.
    print(f"CPU: {_cpu_name()}; one core's FMA limit {_core.fma_peak_gflops(0.1):.0f} GFLOP/s")
    print("| group | what | fastnn | NumPy twin | PyTorch | scikit-learn | × twin | × torch | target × torch |")
    print("|---|---|---|---|---|---|---|---|---|")

    # ---- training: one epoch of 784-128-64-10 ReLU, SGD 0.01/0.5, cross-entropy
    try:
        (X, y), _ = fnn.datasets.load("fashion-mnist", download=False)
        source = "Fashion-MNIST"
    except (FileNotFoundError, ValueError):
        rng = np.random.default_rng(0)
        X, y = rng.random((60000, 28, 28), dtype=np.float32), rng.integers(0, 10, 60000)
        source = "random data of Fashion-MNIST's shape"
    X = fnn.data.normalize(X.reshape(len(X), -1))
    if quick:
        X, y = X[:10000], y[:10000]
    n = len(X)

    def drop(p):  # Dropout(p) after each hidden layer, or nothing
        return [fnn.Dropout(p)] if p else []

    def fastnn_epoch(batch, backend="cpp", p=0.0):
        fnn.manual_seed(0)
        m = fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), *drop(p), fnn.Linear(128, 64), fnn.ReLU(), *drop(p),
                           fnn.Linear(64, 10))
        opt = fnn.SGD(m.parameters(), lr=0.01, momentum=0.5)

        def epoch():
            with fnn.use_backend(backend):
                m.fit(X, y, optimizer=opt, epochs=1, batch_size=batch, verbose=0)
        return epoch

    def torch_epoch(batch, p=0.0):
        tdrop = [torch.nn.Dropout(p)] if p else []
        tm = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), *tdrop, torch.nn.Linear(128, 64),
                                 torch.nn.ReLU(), *tdrop, torch.nn.Linear(64, 10))
        opt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.5)
        loss_fn = torch.nn.CrossEntropyLoss()
        tx, ty = torch.from_numpy(X), torch.from_numpy(y)

        def epoch():
            perm = torch.randperm(n)
            for s in range(0, n, batch):
                i = perm[s:s + batch]
                opt.zero_grad()
                loss_fn(tm(tx[i]), ty[i]).backward()
                opt.step()
        return epoch

    def sklearn_epoch(batch):
        clf = MLPClassifier((128, 64), solver="sgd", learning_rate_init=0.01, momentum=0.5,
                            nesterovs_momentum=False, batch_size=batch, max_iter=1)
        classes = np.arange(10)
        return lambda: clf.partial_fit(X, y, classes=classes)

    targets = {32: "≥ 5", 100: "≥ 3 (and ≤ 0.55× twin)", 512: ""}
    for batch in (32, 100, 512):
        reps = max(3, repeats if batch != 32 else repeats // 2 + 1)
        mine = median(fastnn_epoch(batch), reps, 0)
        twin = median(fastnn_epoch(batch, "numpy"), max(3, reps // 2), 0)
        pt = median(torch_epoch(batch), reps, 0) if torch else None
        sk = median(sklearn_epoch(batch), 3, 0) if MLPClassifier else None
        row("train epoch", f"784-128-64-10, batch {batch}, {n} rows", mine, twin, pt, sk, targets[batch])
    # the same with Dropout(0.2) after each hidden layer (scikit-learn's MLP has no dropout)
    reps = max(3, repeats)
    mine = median(fastnn_epoch(100, p=0.2), reps, 0)
    twin = median(fastnn_epoch(100, "numpy", p=0.2), max(3, reps // 2), 0)
    pt = median(torch_epoch(100, p=0.2), reps, 0) if torch else None
    row("train epoch", f"784-128-64-10 + Dropout(0.2), batch 100, {n} rows", mine, twin, pt, None)

    # ---- inference
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), fnn.Linear(128, 64), fnn.ReLU(), fnn.Linear(64, 10)).eval()
    tmodel: Any = None
    if torch:
        tmodel = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                     torch.nn.ReLU(), torch.nn.Linear(64, 10)).eval()
    for batch, target in ((1, "≥ 10"), (1000, "≥ 1.1")):
        xb = X[:batch]
        mine = median(lambda xb=xb: model.predict(xb), repeats)

        def twin_predict(xb=xb):
            with fnn.use_backend("numpy"):
                model.predict(xb)
        twin = median(twin_predict, repeats)
        pt = None
        if torch:
            tx = torch.from_numpy(xb)
            with torch.no_grad():
                pt = median(lambda tx=tx: tmodel(tx), repeats)
        row("inference", f"predict, batch {batch}", mine, twin, pt, None, target)

    # ---- convolutional networks (the nets of fastnn/cnn_models.py), on CNN_ROWS rows of the
    # training set: a whole epoch of PyTorch takes ~25 s here; the rows scale to 60,000
    cnn_rows(row, X, y, threads, repeats, quick, torch)

    # ---- GEMM
    from fastnn.backends import numpy_ref
    rng = np.random.default_rng(0)
    for M, K, N, ta, tb, label in GEMM_SHAPES:
        if quick and M == 2048:
            continue
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        c = np.empty((M, N), np.float32)
        mine = median(lambda a=a, b=b, c=c, ta=ta, tb=tb: _core.gemm(c, a, b, ta, tb), repeats)
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        twin = median(lambda opa=opa, opb=opb, c=c: np.matmul(opa, opb, out=c), repeats)
        pt = None
        if torch:
            A, B, Ct = torch.from_numpy(opa), torch.from_numpy(opb), torch.from_numpy(c)
            pt = median(lambda A=A, B=B, Ct=Ct: torch.mm(A, B, out=Ct), repeats)
        target = "≥ 0.95 × numpy" if M == 1024 else ("≥ 1.0 × numpy" if "·" in label else "")
        row("gemm", f"{label} ({2 * M * N * K / mine / 1e9:.0f} GFLOP/s)", mine, twin, pt, None, target)

    # ---- activations and softmax on 1e6 float32
    v = rng.standard_normal(1_000_000).astype(np.float32)
    out = np.empty_like(v)
    for name, tf in (("sigmoid", "sigmoid"), ("tanh", "tanh")):
        fast, ref = getattr(_core, name + "_forward"), getattr(numpy_ref, name + "_forward")
        mine = median(lambda f=fast: f(out, v), repeats)
        twin = median(lambda f=ref: f(out, v), repeats)
        pt = None
        if torch:
            tv, to = torch.from_numpy(v), torch.from_numpy(out)
            tfn = getattr(torch, tf)
            pt = median(lambda f=tfn, tv=tv, to=to: f(tv, out=to), repeats)
        row("elementwise", f"{name}, 1e6 float32", mine, twin, pt, None, "≥ 2")
    # ReLU reads and writes the same bytes with almost no arithmetic: the memory-bound floor
    # that sigmoid and tanh cannot beat on 1e6 values (8 MB moved, beyond this CPU's L2).
    mine = median(lambda: _core.relu_forward(out, v), repeats)
    twin = median(lambda: numpy_ref.relu_forward(out, v), repeats)
    pt = None
    if torch:
        tv, to = torch.from_numpy(v), torch.from_numpy(out)
        pt = median(lambda: torch.clamp(tv, min=0, out=to), repeats)
    row("elementwise", "relu, 1e6 float32 (memory-bound floor)", mine, twin, pt, None, "")
    for C in (10, 1000):
        m2 = v.reshape(-1, C)
        o2 = np.empty_like(m2)
        mine = median(lambda o2=o2, m2=m2: _core.softmax_forward(o2, m2), repeats)
        twin = median(lambda o2=o2, m2=m2: numpy_ref.softmax_forward(o2, m2), repeats)
        pt = None
        if torch:
            tm2 = torch.from_numpy(m2)
            pt = median(lambda tm2=tm2: torch.softmax(tm2, dim=1), repeats)
        row("elementwise", f"softmax rows of {C}, 1e6 float32", mine, twin, pt, None, "≥ 2")
    print(f"(training data: {source}; scikit-learn {'installed' if MLPClassifier else 'not installed: column empty'})")


CNN_ROWS = 12_800  # 100 batches of 128: a training row times these and scales to 60,000


def cnn_rows(row, X, y, threads, repeats, quick, torch) -> None:
    """Training epochs (Adam 1e-3, batch 128) of the issue's CNN, of it with BatchNorm and
    Dropout, and of a small ResNet, then CNN inference at batch 1 and 1000: fastnn and PyTorch
    with the same layers, weights copied from PyTorch's."""
    import numpy as np

    import fastnn as fnn
    from fastnn import cnn_models
    n = 512 if quick else CNN_ROWS
    Xi, yi = X.reshape(-1, 1, 28, 28)[:n], y[:n]
    scale = 60000 / n
    reps = repeats if quick else max(3, repeats // 2 + 1)
    for name, label in (("cnn", "CNN conv32-conv64-fc128"), ("cnn-bn", "CNN + BatchNorm + Dropout(0.25)"),
                        ("resnet", "ResNet 3×2 blocks (16-32-64)")):
        fnn.manual_seed(0)
        fm = cnn_models.build(name)
        fopt = fnn.Adam(fm.parameters(), lr=1e-3)

        def epoch(fm=fm, fopt=fopt):
            fm.fit(Xi, yi, optimizer=fopt, epochs=1, batch_size=128, verbose=0)
        tepoch = None
        if torch:
            tm = cnn_models.build_torch(name, torch)
            topt, lf = torch.optim.Adam(tm.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()
            tx, ty = torch.from_numpy(Xi), torch.from_numpy(yi)

            def tepoch(tm=tm, topt=topt, lf=lf, tx=tx, ty=ty):
                perm = torch.randperm(n)
                for s in range(0, n, 128):
                    i = perm[s:s + 128]
                    topt.zero_grad()
                    lf(tm(tx[i]), ty[i]).backward()
                    topt.step()
        mine, pt = medians_alternating([epoch, tepoch], reps, 0)
        mine, pt = mine * scale, pt * scale if pt is not None else None
        target = "≥ 3" if name in ("cnn", "cnn-bn") else ""
        row("train epoch", f"{label}, batch 128, Adam, per 60000 rows (timed on {n})", mine, None, pt, None, target)
    fnn.manual_seed(0)
    fm = cnn_models.build("cnn").eval()
    tinf: Any = cnn_models.build_torch("cnn", torch).eval() if torch else None
    for batch, target in ((1, "≥ 10"), (1000, "≥ 2")):
        # one library after the other: a call of ~50–700 µs after a turn's pause runs several
        # times slower while the cores wake (measured: 54 µs in a row, 115–170 µs in turns)
        xb = np.ascontiguousarray(Xi[:batch])
        mine = median(lambda xb=xb: fm.predict(xb), repeats)
        pt = None
        if torch:
            tx = torch.from_numpy(xb)
            with torch.no_grad():
                pt = median(lambda tx=tx: tinf(tx), repeats)
        row("inference", f"CNN predict, batch {batch}", mine, None, pt, None, target)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="fastnn bench", description=" ".join(__doc__.split("\n\n")[0].split()),
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="threads for every library")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per row (the median is shown)")
    p.add_argument("--quick", action="store_true", help="10,000 training rows, no 2048² GEMM")
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        p.error("--threads and --repeats must be >= 1")
    if os.environ.get("FASTNN_BENCH_CHILD"):
        run(args.threads, args.repeats, args.quick)
        return 0
    env = dict(os.environ, FASTNN_BENCH_CHILD="1")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FASTNN_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, "-m", "fastnn.bench", "--threads", str(args.threads), "--repeats", str(args.repeats)]
    return subprocess.call(cmd + (["--quick"] if args.quick else []), env=env)


if __name__ == "__main__":
    sys.exit(main())
