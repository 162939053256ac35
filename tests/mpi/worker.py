"""One rank of the distributed-training tests (tests/test_distributed.py), launched as
`mpiexec -n K python -m mpi4py tests/mpi/worker.py SCENARIO OUTDIR`. Each rank writes what
it ends with to OUTDIR/rank{r}.npz (weights, history) for the test to compare."""
import os
import sys

import numpy as np

import fastnn as fnn
from fastnn import distributed as dist

scenario, outdir = sys.argv[1], sys.argv[2]
r = dist.rank()


def data(n=403, d=12, classes=3, seed=1):
    g = np.random.default_rng(seed)
    X = g.normal(size=(n, d)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64) + (X[:, 3] > 0.5)
    return X, y % classes


def mlp(dropout):
    layers = [fnn.Linear(12, 24), fnn.ReLU()] + ([fnn.Dropout(0.3)] if dropout else []) + \
             [fnn.Linear(24, 16), fnn.Tanh(), fnn.Linear(16, 3)]
    return fnn.Sequential(*layers)


def cnn():
    return fnn.Sequential(fnn.Conv2d(1, 4, 3, padding=1), fnn.ReLU(), fnn.MaxPool2d(2),
                          fnn.Conv2d(4, 6, 3), fnn.ReLU(), fnn.Flatten(), fnn.Dropout(0.2),
                          fnn.Linear(6 * 2 * 2, 3))


def finish(model, history, **extra):
    w = np.concatenate([p.data.ravel() for p in model.parameters()])
    b = np.concatenate([np.ravel(b).astype(np.float64) for b in model.buffers()] or [np.zeros(0)])
    np.savez(os.path.join(outdir, f"rank{r}.npz"), weights=w, buffers=b,
             loss=np.array(history.history["loss"]), **{k: np.array(v) for k, v in history.history.items()
                                                      if k != "loss"}, **extra)


# a different seed on every rank: rank 0's initial weights and generator must win
fnn.manual_seed(100 + r if scenario != "plain" else 0)
if scenario in ("mlp", "plain"):
    X, y = data()
    if scenario == "plain":  # the same training on one process, without MPI, to compare with
        model = mlp(dropout=False)
        model.fit(X, y, optimizer=fnn.Adam(model.parameters(), lr=0.01), epochs=4, batch_size=37, verbose=0)
        plain = np.concatenate([p.data.ravel() for p in model.parameters()])
        np.save(os.path.join(outdir, f"plain{r}.npy"), plain)
        fnn.manual_seed(0)
    model = mlp(dropout=scenario == "mlp")
    opt = fnn.Adam(model.parameters(), lr=0.01)
    cbs = [fnn.ModelCheckpoint(os.path.join(outdir, "best.fnn"), save_best_only=True),
           fnn.EarlyStopping(monitor="val_loss", patience=1)] if scenario == "mlp" else []
    h = model.fit(X, y, optimizer=opt, epochs=4, batch_size=37, distributed=True, verbose=2,
                  validation_split=0.2 if scenario == "mlp" else 0.0, callbacks=cbs)
    ev = model.evaluate(X, y, distributed=True) if scenario == "mlp" else {}
    finish(model, h, state_step=np.array(opt.state_dict()["state"][0]["step"]),
           **{"evaluate_" + k: np.array(v) for k, v in ev.items()})
elif scenario == "regression":
    X, _ = data()
    y = np.stack([X[:, 0] * 2 - X[:, 1], X[:, 2]], 1).astype(np.float32)
    model = fnn.Sequential(fnn.Linear(12, 16), fnn.Sigmoid(), fnn.Linear(16, 2))
    h = model.fit(X, y, loss=fnn.MSELoss(reduction="sum"), optimizer=fnn.SGD(model.parameters(), lr=1e-3, momentum=0.9),
                  epochs=3, batch_size=64, distributed=True, verbose=0, shards=8)
    finish(model, h)
elif scenario == "cnn":
    g = np.random.default_rng(2)
    X = g.normal(size=(90, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].sum((1, 2)) > X[:, 0, 4:].sum((1, 2))).astype(np.int64) + (X[:, 0, 0, 0] > 1)
    model = cnn()
    h = model.fit(X, y, optimizer="adam", epochs=2, batch_size=16, distributed=True, verbose=0)
    finish(model, h)
elif scenario == "batchnorm":
    # BatchNorm2d in a residual block and BatchNorm1d: statistics per shard, running averages
    # moved by every shard in order on every rank
    g = np.random.default_rng(3)
    X = g.normal(size=(70, 2, 6, 6)).astype(np.float32)
    y = (X[:, 0].mean((1, 2)) > X[:, 1].mean((1, 2))).astype(np.int64)

    def build():
        block = fnn.Sequential(fnn.Conv2d(4, 4, 3, padding=1, bias=False), fnn.BatchNorm2d(4), fnn.ReLU())
        return fnn.Sequential(fnn.Conv2d(2, 4, 3, padding=1), fnn.BatchNorm2d(4), fnn.ReLU(), fnn.Residual(block),
                              fnn.AdaptiveAvgPool2d(1), fnn.Flatten(), fnn.Linear(4, 8), fnn.BatchNorm1d(8),
                              fnn.ReLU(), fnn.Linear(8, 2))
    extra = {}
    if dist.size() == 1:
        # what the shards mean, layer by layer on one process: each shard's forward in training
        # mode (BatchNorm moving its running averages, shard after shard), its gradient scaled
        # by its share of the batch, the shards' gradients summed as the tree, one Adam step
        fnn.manual_seed(100)
        ref = build()
        opt = fnn.Adam(ref.parameters())
        loss_fn, Xt, yt = fnn.CrossEntropyLoss(), X[:56], y[:56]
        for epoch in range(2):
            order = fnn.random.generator().permutation(56)
            for b0 in range(0, 56, 24):
                rows = order[b0:b0 + 24]
                leaves = {}
                for s in range(4):
                    a, z = dist.shard_rows(len(rows), 4, s)
                    ref.train()
                    loss_fn(ref(Xt[rows[a:z]]), yt[rows[a:z]])
                    ref.zero_grad()
                    ref.backward(loss_fn.backward() * np.float32((z - a) / len(rows)))
                    leaves[(s, s + 1)] = np.concatenate([p.grad.ravel() for p in ref.parameters()])
                total = dist.tree_sum((0, 4), leaves)
                at = 0
                for p in ref.parameters():
                    p.grad[...] = total[at:at + p.grad.size].reshape(p.grad.shape)
                    at += p.grad.size
                opt.step()
        extra["reference_weights"] = np.concatenate([p.data.ravel() for p in ref.parameters()])
        extra["reference_buffers"] = np.concatenate([np.ravel(b).astype(np.float64) for b in ref.buffers()])
        fnn.manual_seed(100)
    model = build()
    h = model.fit(X, y, optimizer="adam", epochs=2, batch_size=24, distributed=True, verbose=0,
                  validation_split=0.2)
    finish(model, h, **extra)
elif scenario == "manual":
    # a hand-written loop with the helpers: rank 0's start, each rank its rows, mean gradients
    X, y = data(n=400)
    model = mlp(dropout=False)
    opt = fnn.SGD(model.parameters(), lr=0.1)
    dist.broadcast_parameters(model)
    loss_fn = fnn.CrossEntropyLoss()
    for b in range(0, 400, 40):
        a, z = dist.shard_rows(40, dist.size(), r)
        xb, yb = X[b + a:b + z], y[b + a:b + z]
        loss_fn(model(xb), yb)
        opt.zero_grad()
        model.backward(loss_fn.backward())
        dist.average_gradients(model)
        opt.step()
    np.savez(os.path.join(outdir, f"rank{r}.npz"), weights=np.concatenate([p.data.ravel() for p in model.parameters()]))
elif scenario == "mismatch":
    X, y = data(n=403 if r == 0 else 401)
    mlp(False).fit(X, y, epochs=1, distributed=True, verbose=0)
elif scenario == "one_shard":
    X, y = data()
    mlp(False).fit(X, y, epochs=1, distributed=True, shards=1, verbose=0)
elif scenario == "bad_data_on_one_rank":
    X, y = data()
    if r == 1:
        X[5, 2] = np.nan
    mlp(False).fit(X, y, epochs=1, distributed=True, verbose=0)
elif scenario in ("raise", "kill"):
    class Fail(fnn.Callback):
        def on_batch_end(self, batch, logs=None):
            if r == 1 and batch == 3:
                if scenario == "kill":
                    os.kill(os.getpid(), 9)
                raise RuntimeError("this rank broke on purpose")
    X, y = data()
    mlp(False).fit(X, y, epochs=2, batch_size=16, distributed=True, verbose=0, callbacks=[Fail()])
else:
    raise SystemExit(f"unknown scenario {scenario}")
