"""Fashion-MNIST accuracy: fastnn against PyTorch with the same recipes, in one run.

The MNIST classifier's recipe (examples/mnist_classifier.py; 784-128-64-10 ReLU, cross-entropy, SGD lr 0.01 momentum 0.5, batch 100,
10 epochs, inputs (x − 0.5)/0.5) and the Adam recipe (lr 1e-3, batch 128, 10 epochs), each for
a few seeds, on both libraries with the same thread count. Prints test accuracy per seed, the
means, and seconds per epoch.

Run: python bench/fashion_mnist_parity.py [--seeds 3] [--threads 2]
"""
import argparse
import time

import numpy as np

import fastnn as fnn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--epochs", type=int, default=10)
args = parser.parse_args()

(X, y), (Xt, yt) = fnn.datasets.load("fashion-mnist")
X = fnn.data.normalize(X.reshape(len(X), -1))
Xt = fnn.data.normalize(Xt.reshape(len(Xt), -1))
RECIPES = {"sgd": (100, dict(lr=0.01, momentum=0.5)), "adam": (128, dict(lr=1e-3))}
fnn.set_num_threads(args.threads)


def run_fastnn(recipe, seed):
    batch, kw = RECIPES[recipe]
    fnn.manual_seed(seed)
    model = fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), fnn.Linear(128, 64), fnn.ReLU(), fnn.Linear(64, 10))
    opt = (fnn.SGD if recipe == "sgd" else fnn.Adam)(model.parameters(), **kw)
    t = time.perf_counter()
    model.fit(X, y, loss=fnn.CrossEntropyLoss(), optimizer=opt, epochs=args.epochs, batch_size=batch, verbose=0)
    return model.evaluate(Xt, yt)["accuracy"], (time.perf_counter() - t) / args.epochs


def run_torch(recipe, seed):
    import torch
    torch.set_num_threads(args.threads)
    batch, kw = RECIPES[recipe]
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = (torch.optim.SGD if recipe == "sgd" else torch.optim.Adam)(model.parameters(), **kw)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xtr, ytr = torch.from_numpy(X), torch.from_numpy(y)
    t = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(len(Xtr))
        for s in range(0, len(Xtr), batch):
            idx = perm[s:s + batch]
            opt.zero_grad()
            loss_fn(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
    seconds = (time.perf_counter() - t) / args.epochs
    with torch.no_grad():
        acc = (model(torch.from_numpy(Xt)).argmax(1).numpy() == yt).mean()
    return float(acc), seconds


try:
    import torch  # noqa: F401
    libraries = {"fastnn": run_fastnn, "pytorch": run_torch}
except ImportError:
    libraries = {"fastnn": run_fastnn}
    print("(PyTorch not installed: fastnn only; pip install torch==2.13.0 to compare)")

print(f"Fashion-MNIST 784-128-64-10, {args.epochs} epochs, {args.threads} threads, seeds 0..{args.seeds - 1}")
for recipe in RECIPES:
    for lib, fn in libraries.items():
        results = [fn(recipe, s) for s in range(args.seeds)]
        accs = [a for a, _ in results]
        print(f"{recipe:5s} {lib:8s} test accuracy {' '.join(f'{a:.4f}' for a in accs)}  mean {np.mean(accs):.4f}"
              f"  median {np.median([s for _, s in results]):.3f} s/epoch", flush=True)
