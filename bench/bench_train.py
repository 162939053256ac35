"""pytest-benchmark suite: a training pass and inference of the 784-128-64-10 MLP, fastnn (fused
and layer-by-layer), its NumPy twin and PyTorch (when installed), in the same run.

    BENCH_THREADS=2 pytest bench/bench_train.py --benchmark-group-by=param:what
"""
import numpy as np
import pytest

import fastnn as fnn

ROWS = 6000  # a tenth of Fashion-MNIST's training set, random data of its shape
rng = np.random.default_rng(0)
X = rng.random((ROWS, 784), dtype=np.float32)
y = rng.integers(0, 10, ROWS)


def mlp():
    fnn.manual_seed(0)
    return fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), fnn.Linear(128, 64), fnn.ReLU(), fnn.Linear(64, 10))


def torch_mlp():
    torch = pytest.importorskip("torch")
    return torch, torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                      torch.nn.ReLU(), torch.nn.Linear(64, 10))


@pytest.mark.parametrize("impl", ["fastnn-plan", "fastnn-layers", "numpy-twin", "pytorch"])
@pytest.mark.parametrize("what", ["epoch-batch-32", "epoch-batch-100"])
def test_training(benchmark, what, impl):
    batch = int(what.rsplit("-", 1)[1])
    if impl == "pytorch":
        torch, tm = torch_mlp()
        opt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.5)
        lf = torch.nn.CrossEntropyLoss()
        tx, ty = torch.from_numpy(X), torch.from_numpy(y)

        def epoch():
            perm = torch.randperm(ROWS)
            for s in range(0, ROWS, batch):
                i = perm[s:s + batch]
                opt.zero_grad()
                lf(tm(tx[i]), ty[i]).backward()
                opt.step()
        benchmark(epoch)
        return
    model = mlp()
    opt = fnn.SGD(model.parameters(), lr=0.01, momentum=0.5)
    backend = "numpy" if impl == "numpy-twin" else "cpp"

    def epoch():
        with fnn.use_backend(backend):
            model.fit(X, y, optimizer=opt, epochs=1, batch_size=batch, verbose=0,
                      use_plan=impl == "fastnn-plan")
    benchmark(epoch)


@pytest.mark.parametrize("impl", ["fastnn", "numpy-twin", "pytorch"])
@pytest.mark.parametrize("what", ["predict-batch-1", "predict-batch-1000"])
def test_inference(benchmark, what, impl):
    xb = X[:int(what.rsplit("-", 1)[1])]
    if impl == "pytorch":
        torch, tm = torch_mlp()
        tm.eval()
        tx = torch.from_numpy(xb)
        with torch.no_grad():
            benchmark(tm, tx)
        return
    model = mlp().eval()
    if impl == "numpy-twin":
        def run():
            with fnn.use_backend("numpy"):
                model.predict(xb)
        benchmark(run)
    else:
        benchmark(model.predict, xb)
