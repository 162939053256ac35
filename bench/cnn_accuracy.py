"""Test accuracy of fastnn.cnn_models' CNN on Fashion-MNIST after each of 5 epochs (Adam 1e-3,
batch 128, inputs (x − 0.5)/0.5), for seeds 0–2, fastnn and PyTorch side by side. Needs the
dataset (`apt-get install dataset-fashion-mnist`); PyTorch is optional.

    python bench/cnn_accuracy.py [--epochs 5] [--seeds 0 1 2] [--model cnn] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import fastnn as fnn
from fastnn import cnn_models


def run_fastnn(name, seed, X, y, Xt, yt, epochs):
    fnn.manual_seed(seed)
    model = cnn_models.build(name)
    opt = fnn.Adam(model.parameters(), lr=1e-3)
    accs, t0 = [], time.perf_counter()
    for _ in range(epochs):
        model.fit(X, y, optimizer=opt, epochs=1, batch_size=128, verbose=0)
        accs.append(model.evaluate(Xt, yt)["accuracy"])
        model.train()
    return accs, (time.perf_counter() - t0) / epochs


def run_torch(torch, name, seed, X, y, Xt, yt, epochs):
    torch.manual_seed(seed)
    model = cnn_models.build_torch(name, torch)
    opt, lf = torch.optim.Adam(model.parameters(), lr=1e-3), torch.nn.CrossEntropyLoss()
    tx, ty, txt = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(Xt)
    accs, t0 = [], time.perf_counter()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(X))
        for s in range(0, len(X), 128):
            i = perm[s:s + 128]
            opt.zero_grad()
            lf(model(tx[i]), ty[i]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(txt[s:s + 1000]).argmax(1) for s in range(0, len(Xt), 1000)]).numpy()
        accs.append(float((pred == yt).mean()))
    return accs, (time.perf_counter() - t0) / epochs


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", choices=cnn_models.NAMES, default="cnn")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    fnn.set_num_threads(a.threads)
    (X, y), (Xt, yt) = fnn.datasets.load("fashion-mnist", download=False, channels=True)
    X, Xt = fnn.data.normalize(X), fnn.data.normalize(Xt)
    try:
        import torch
        torch.set_num_threads(a.threads)
    except ImportError:
        torch = None
    print(f"{a.model} on Fashion-MNIST, Adam 1e-3, batch 128, {a.threads} threads: test accuracy after each epoch")
    for seed in a.seeds:
        accs, sec = run_fastnn(a.model, seed, X, y, Xt, yt, a.epochs)
        print(f"seed {seed} fastnn  {' '.join(f'{v:.4f}' for v in accs)}   ({sec:.1f} s/epoch)", flush=True)
        if torch:
            accs, sec = run_torch(torch, a.model, seed, X, y, Xt, yt, a.epochs)
            print(f"seed {seed} PyTorch {' '.join(f'{v:.4f}' for v in accs)}   ({sec:.1f} s/epoch)", flush=True)


if __name__ == "__main__":
    main()
