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
    np.savez(os.path.join(outdir, f"rank{r}.npz"), weights=w,
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
    finish(model, h, state_step=np.array(opt.state_dict()["state"][0]["step"]))
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
