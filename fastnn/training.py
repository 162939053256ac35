"""The Keras-style loop: fit / evaluate / predict for any model (fastnn.Model's methods call
these), and History.

Every batch is the manual training step — forward, loss, zero_grad, backward, step — so fit()
and a hand-written loop give the same weights. One loop drives both ways a batch can run: the
model's compiled plan (fastnn/plan.py: many batches per C++ call) or its layers one by one;
callbacks, the progress bar and the metrics see the same thing either way. All inputs are
checked before the first update: a bad width, label or NaN raises and the model stays
unchanged. Ctrl-C ends fit between batches, with the weights and the optimizer in step.
"""
from __future__ import annotations

import contextlib
import signal
import threading

import numpy as np

from fastnn import plan
from fastnn.backends import ops
from fastnn.callbacks import Callback, LearningRateScheduler
from fastnn.layers.base import float_input, nonfinite_message, shape_str
from fastnn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, class_labels, get_loss
from fastnn.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from fastnn.optim.optimizer import OPTIMIZERS, Optimizer
from fastnn.progbar import Progbar
from fastnn.random import generator


class History(Callback):
    """What fit() returns: `history` maps "loss", "accuracy", "val_loss", "val_accuracy" (those
    that apply) to one value per epoch; `epoch` lists the epochs run.

    Example:
        >>> h = model.fit(X, y, epochs=2, verbose=0)
        >>> h.epoch, sorted(h.history)
        ([0, 1], ['accuracy', 'loss'])
    """

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"


def _positive_int(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return int(v)


def _features(model, X, who) -> np.ndarray:
    given = X
    X = float_input(X, who, model.dtype or np.float32)
    if X.ndim == 0:
        raise ValueError(f"{who}: X must be a batch of samples (N, features), got a scalar")
    bad = ops().first_nonfinite(X)  # one pass, no temporary (np.isfinite made a 47 MB one)
    if bad >= 0:
        raise ValueError(nonfinite_message(who, X, bad, given if X is not given else None))
    return X


def _check_lengths(X, y, who):
    shape = np.shape(y)
    if not shape or shape[0] != len(X):
        raise ValueError(f"{who}: X has {len(X)} samples but y has shape {shape_str(shape)}; "
                         "they must have the same length")


def _targets(loss: Loss, y, out_shape: tuple, n: int, who: str, dtype) -> np.ndarray:
    """Check every target once, up front, against the model's output shape."""
    if isinstance(loss, CrossEntropyLoss):
        y = class_labels(y, who)
        if y.shape != (n,):
            raise ValueError(f"{who}: y has shape {shape_str(y.shape)}; CrossEntropyLoss needs one "
                             f"label per sample, shape ({n},)")
        C = out_shape[-1]
        bad = np.flatnonzero((y < 0) | (y >= C))
        if bad.size:
            raise ValueError(f"{who}: label {y[bad[0]]} at index {bad[0]} is outside [0, {C}); the "
                             f"model has {C} outputs (one per class)")
        return y.astype(np.int64, copy=False)
    y = float_input(y, who, dtype)
    want = (n, *out_shape[1:])
    if want[1:] == (1,) and y.shape == (n,):
        y = y.reshape(want)  # one target per sample for a one-output model, as Keras takes it
    if y.shape != want:
        hint = f"; use y.reshape{shape_str(want)}" if y.size == int(np.prod(want)) else ""
        raise ValueError(f"{who}: y has shape {shape_str(y.shape)} but the model outputs "
                         f"{shape_str(want)}{hint}")
    if not np.isfinite(y).all():
        raise ValueError(f"{who}: y contains NaN or inf; remove those samples before training")
    return y


def _output_shape(model, X, who: str) -> tuple:
    """The output shape for X: from the inference plan when the model has one (its layers
    checked X's shape as they lowered), else by running one sample through the model in eval
    mode, which checks the input width and changes nothing."""
    c = plan.inference(model, X) if X.ndim >= 1 and X.flags.c_contiguous and X.flags.aligned else None
    if c is not None:
        return (len(X), *c.out_shape)
    was = model.training
    model.eval()
    try:
        out = model.forward(X[:1])
    except ValueError as e:
        # the probe ran one sample: say what the layer would have said of the whole X
        msg = str(e).replace("got shape (1, ", f"got shape ({len(X)}, ")
        msg = msg.replace("got shape (1,)", f"got shape ({len(X)},)")
        raise ValueError(f"{who}: X has shape {shape_str(X.shape)}, which the model cannot take: {msg}") from None
    finally:
        model.train(was)
    return (len(X), *out.shape[1:])


def _correct(loss: Loss, out: np.ndarray, y: np.ndarray):
    """Correct predictions in a batch, or None when accuracy does not apply (regression):
    argmax hits for cross-entropy, outputs on the target's side of the threshold for binary
    cross-entropy (the same kernels the compiled plan counts with)."""
    if isinstance(loss, CrossEntropyLoss):
        return int(ops().argmax_correct(out, y))
    if isinstance(loss, (BCEWithLogitsLoss, BCELoss)):
        return int(ops().threshold_correct(out, y, 0.0 if isinstance(loss, BCEWithLogitsLoss) else 0.5))
    return None


def _optimizer(optimizer, model) -> Optimizer:
    if isinstance(optimizer, str):
        cls = OPTIMIZERS.get(optimizer.lower())
        if cls is None:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)} "
                             "or pass an optimizer such as fnn.SGD(model.parameters(), lr=0.01)")
        return cls(model.parameters(), lr=0.01) if cls is OPTIMIZERS["sgd"] else cls(model.parameters())
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastnn optimizer or a name, got {type(optimizer).__name__}")
    mine = {id(p) for p in model.parameters()}
    if not any(id(p) in mine for g in optimizer.param_groups for p in g["params"]):
        raise ValueError("the optimizer updates none of this model's parameters; create it with "
                         "model.parameters()")
    return optimizer


def _batch_rows(b: int, batch_size: int, order):
    start = b * batch_size
    return order[start:start + batch_size] if order is not None else slice(start, start + batch_size)


def _layer_runner(model, loss_fn, opt, X, y):
    """fit's batches layer by layer, with run(order, batch_size, b0, nb) -> (losses, correct,
    error) like the plan's TrainRunner: each batch is the manual training step of the docs."""
    def run(order, batch_size, b0, nb):
        losses, correct = [], []
        for b in range(b0, b0 + nb):
            rows = _batch_rows(b, batch_size, order)
            xb, yb = X[rows], y[rows]
            out = model.forward(xb)
            losses.append(loss_fn(out, yb))
            model.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
            correct.append(_correct(loss_fn, out, yb) or 0)
        return losses, correct, None
    return run


@contextlib.contextmanager
def _interrupts_between_batches():
    """Ctrl-C during fit ends it after the batch in progress, with KeyboardInterrupt raised
    there: weights and optimizer state then agree (the step counter equals the steps applied).
    Yields the flag the handler sets (the plan's C++ loop reads it too). A second Ctrl-C
    interrupts at once. Only the main thread can take the signal over."""
    flag = np.zeros(1, np.uint8)
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag
        return

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = 1
    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def fit(model, X, y, loss="cross_entropy", optimizer="sgd", epochs: int = 1, batch_size: int = 32,
        shuffle: bool = True, validation_data=None, validation_split: float = 0.0, callbacks=None,
        verbose: int = 1, use_plan: bool = True, distributed: bool = False, shards: int | None = None) -> History:
    """Train `model` on (X, y) with mini-batches.

    Args:
        loss: a Loss or its name ("cross_entropy", "mse", "bce_with_logits", "bce").
        optimizer: an Optimizer over model.parameters(), or a name ("sgd", "adam", ...).
        epochs, batch_size, shuffle: as Keras (shuffling uses fnn.manual_seed's generator).
        validation_data: (X_val, y_val), evaluated after each epoch.
        validation_split: fraction of the (unshuffled) tail of X held out instead.
        callbacks: e.g. [fnn.EarlyStopping(patience=2), fnn.ModelCheckpoint("best.fnn")].
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        use_plan: on the "cpp" backend, run the batches through the model's compiled plan
            (fastnn/plan.py) when the model, loss and optimizer have one: the same arithmetic
            as the layers, many batches per C++ call. False forces the layer-by-layer steps.
        distributed: train on every rank of an MPI job (`mpiexec -n K ...`), each computing
            its shards of every batch (fastnn/distributed.py); batch_size is the global batch.
            Every rank must be given the same X, y and settings; rank 0 prints and writes.
        shards: the pieces each batch is cut into in distributed training (default 4; at
            least the number of ranks). The weights depend on it, not on the number of ranks.
    Returns:
        History with per-epoch "loss", "accuracy" (classifiers) and their "val_" versions.
    """
    who = "fit"
    if distributed:
        from fastnn import distributed as dist
        dist.comm()  # ImportError with the install line when mpi4py is missing
    # Every input is checked before the first update. In distributed training every rank
    # checks, then all learn whether any failed, so none waits for a rank that raised.
    error = None
    try:
        loss_fn = get_loss(loss)
        epochs = int(epochs) if epochs == 0 else _positive_int(epochs, "fit: epochs")
        batch_size = _positive_int(batch_size, "fit: batch_size")
        if verbose not in (0, 1, 2):
            raise ValueError(f"fit: verbose must be 0, 1 or 2, got {verbose!r}")
        X = _features(model, X, who)
        _check_lengths(X, y, who)
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if validation_split and validation_data is not None:
            raise ValueError("fit: pass validation_data or validation_split, not both")
        if len(X) == 0:
            raise ValueError("fit: X has no samples")
        out_shape = _output_shape(model, X, who)
        y = _targets(loss_fn, y, out_shape, len(X), who, X.dtype)
        if validation_split:
            cut = len(X) - round(len(X) * validation_split)
            if cut < 1 or cut == len(X):
                raise ValueError(f"fit: validation_split={validation_split} leaves no training or no "
                                 f"validation samples out of {len(X)}")
            validation_data = (X[cut:], y[cut:])
            X, y = X[:cut], y[:cut]
        if validation_data is not None:
            try:
                Xv, yv = validation_data
            except (TypeError, ValueError):
                raise ValueError("fit: validation_data must be a pair (X_val, y_val)") from None
            Xv = _features(model, Xv, "fit (validation_data)")
            _check_lengths(Xv, yv, "fit (validation_data)")
            if len(Xv) == 0:
                raise ValueError("fit: validation_data has no samples")
            who_v = "fit (validation_data)"
            yv = _targets(loss_fn, yv, _output_shape(model, Xv, who_v), len(Xv), who_v, X.dtype)
            validation_data = (Xv, yv)
        opt = _optimizer(optimizer, model)
        if distributed:
            combiner_args = _distributed_checks(model, loss_fn, opt, X, y, batch_size, shards)
    except Exception as e:
        if not distributed:
            raise
        error = e
    if distributed:
        dist.share_failure(who, error)
        combiner = _distributed_start(model, opt, X, y, validation_data, loss_fn, batch_size, epochs, shuffle,
                                      combiner_args)
        verbose = verbose if dist.is_main() else 0

    classify = isinstance(loss_fn, (CrossEntropyLoss, BCEWithLogitsLoss, BCELoss))
    # binary cross-entropy scores each output: a sample's accuracy is its fraction of right ones
    per_sample = int(np.prod(y.shape[1:], dtype=np.int64)) if not isinstance(loss_fn, CrossEntropyLoss) else 1
    metrics = ["loss"] + (["accuracy"] if classify else [])
    if validation_data is not None:
        metrics += ["val_" + m for m in metrics]
    history = History()
    cbs = [history] + [LearningRateScheduler(cb) if isinstance(cb, (LRScheduler, ReduceLROnPlateau)) else cb
                       for cb in (callbacks or [])]
    for cb in cbs:
        if not isinstance(cb, Callback):
            raise TypeError(f"fit: callbacks must be fastnn callbacks, got {type(cb).__name__}")
        cb.set_model(model)
        cb.set_params({"epochs": epochs, "batch_size": batch_size, "metrics": metrics, "optimizer": opt,
                       "rank": dist.rank() if distributed else 0})

    n = len(X)
    steps = -(-n // batch_size)
    model.train()
    smallest = min(batch_size, n - (steps - 1) * batch_size)
    need = model.smallest_batch(X.shape[1:])
    if smallest < need:
        raise ValueError(f"fit: the last batch of {n} samples at batch_size={batch_size} holds {smallest}, and the "
                         f"model needs at least {need} per training batch (a BatchNorm needs more than one value "
                         "per channel); choose a batch_size that leaves more over, or drop samples")
    watches_batches = any(type(cb).on_batch_end is not Callback.on_batch_end for cb in cbs)
    model.stop_training = False
    runner = None
    with _interrupts_between_batches() as interrupted:
        try:
            for cb in cbs:
                cb.on_train_begin()
            for epoch in range(epochs):
                for cb in cbs:
                    cb.on_epoch_begin(epoch)
                if verbose == 1:
                    print(f"Epoch {epoch + 1}/{epochs}", flush=True)
                bar = Progbar(steps, verbose)
                order = generator().permutation(n) if shuffle else None
                # the compiled plan when model, loss and optimizer have one (checked every
                # epoch: a callback may change a setting), else the layers; many batches per
                # plan call unless a callback watches each batch
                runner = plan.training(model, loss_fn, opt, X, y, interrupted) if use_plan or distributed else None
                if distributed:
                    if runner is None:  # a callback changed the model, loss or optimizer
                        raise ValueError("fit: distributed training runs the compiled plan, and the model, loss "
                                         "or optimizer no longer has one")
                    runner.shards = combiner.use(runner.compiled.store.grad, runner.compiled.core.stats_width)
                if runner is not None:
                    run, group = runner.run, 1 if watches_batches else max(1, min(steps, 64))
                    order = np.arange(n, dtype=np.int64) if order is None else order.astype(np.int64, copy=False)
                else:
                    run, group = _layer_runner(model, loss_fn, opt, X, y), 1
                seen, loss_sum, correct = 0, 0.0, 0.0
                for b0 in range(0, steps, group):
                    losses, hits, error = run(order, batch_size, b0, min(group, steps - b0))
                    for j in range(len(losses)):
                        b = b0 + j
                        k = min(n, (b + 1) * batch_size) - b * batch_size
                        seen += k
                        loss_sum += float(losses[j]) * k
                        logs = {"loss": loss_sum / seen}
                        if classify:
                            correct += int(hits[j]) if per_sample == 1 else int(hits[j]) / per_sample
                            logs["accuracy"] = correct / seen
                        for cb in cbs:
                            cb.on_batch_end(b, {"loss": float(losses[j]), "size": k})
                    if error is not None:
                        raise error
                    bar.update(b0 + len(losses), logs)
                    if interrupted[0]:
                        raise KeyboardInterrupt
                    if model.stop_training:
                        break
                if validation_data is not None:
                    Xv, yv = validation_data
                    if distributed:
                        val = _evaluate_sharded(model, Xv, yv, loss_fn, combiner.shards)
                    else:
                        val = evaluate(model, Xv, yv, loss=loss_fn)
                    logs.update({"val_" + k: v for k, v in val.items()})
                    if interrupted[0]:
                        raise KeyboardInterrupt
                bar.finish(logs, prefix=f"Epoch {epoch + 1}/{epochs}")
                for cb in cbs:
                    cb.on_epoch_end(epoch, dict(logs))
                if model.stop_training:
                    break
        except BaseException as e:
            if distributed and dist.size() > 1:
                dist.abort(who, e)  # the other ranks would wait for this one forever
            raise
        finally:
            if runner is not None:
                runner.release()  # the workspace is the data's; it goes with the call
    for cb in cbs:
        cb.on_train_end()
    model._last_loss = loss_fn
    return history


def _distributed_checks(model, loss_fn, opt, X, y, batch_size, shards):
    """What distributed fit needs beyond plain fit; returns the Combiner's arguments."""
    from fastnn import distributed as dist
    shards = dist.DEFAULT_SHARDS if shards is None else _positive_int(shards, "fit: shards")
    if shards < dist.size():
        raise ValueError(f"fit: shards={shards} is fewer than the {dist.size()} ranks; every rank needs a shard of "
                         f"each batch: pass shards={dist.size()} or more (the same number on every run)")
    need = model.smallest_batch(X.shape[1:])
    for rows, which in ((min(batch_size, len(X)), "a batch"), (len(X) % batch_size, "the last batch")):
        sizes = [b - a for a, b in (dist.shard_rows(rows, shards, s) for s in range(shards))]
        smallest = min([n for n in sizes if n > 0] or [need])
        if smallest < need:
            fix = (f"use a batch_size of at least {need * shards}" if which == "a batch" else
                   f"choose a batch_size that leaves at least {need * shards} samples in the last batch, or drop "
                   "samples")
            raise ValueError(f"fit: {which} of {rows} samples cut into shards={shards} leaves shards of {smallest}, "
                             f"and the model needs at least {need} per shard (a BatchNorm needs more than one value "
                             f"per channel); {fix}, or use fewer shards")
    if plan.training(model, loss_fn, opt, X, y, None) is None:
        raise ValueError("fit: distributed training runs the compiled plan (the 'cpp' backend, fastnn's own layers, "
                         "losses and optimizers, C-contiguous data); this model, loss or optimizer has none")
    return shards, len(X), batch_size, getattr(loss_fn, "reduction", "mean") == "sum"


def _distributed_start(model, opt, X, y, validation_data, loss_fn, batch_size, epochs, shuffle, combiner_args):
    """Check that every rank holds the same data, model and settings, then give every rank
    rank 0's weights, optimizer state and generator. Returns the gradient Combiner."""
    from fastnn import distributed as dist
    settings = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    dist.same_everywhere(
        "fit", samples=len(X), sample_shape=X.shape[1:], dtype=str(X.dtype), targets=(y.shape, str(y.dtype)),
        validation=None if validation_data is None else (validation_data[0].shape, validation_data[1].shape),
        model=repr(model), parameters=model.num_parameters(), loss=repr(loss_fn),
        optimizer=(type(opt).__name__, repr(settings)), batch_size=batch_size, epochs=epochs, shuffle=bool(shuffle),
        shards=combiner_args[0])
    dist.broadcast_parameters(model)
    dist.broadcast_optimizer_state(opt)
    dist.broadcast_generator()
    return dist.Combiner(*combiner_args)


def _evaluate_sharded(model, X, y, loss_fn, shards: int) -> dict:
    """evaluate() in distributed fit: the data cut into `shards` fixed pieces, each rank scoring
    its own, the sums combined in shard order, so every rank (and every rank count) gets the
    same numbers."""
    from fastnn import distributed as dist
    lo, hi = dist.owned_shards(shards, dist.rank(), dist.size())
    mine = []
    for s in range(lo, hi):
        a, b = dist.shard_rows(len(X), shards, s)
        total, correct = 0.0, 0
        if b > a:
            out = predict(model, X[a:b])
            per_sample = getattr(loss_fn, "reduction", "mean") == "mean"
            for r in range(a, b, LAYER_BATCH):
                ob, yb = out[r - a:min(b, r + LAYER_BATCH) - a], y[r:min(b, r + LAYER_BATCH)]
                value = loss_fn.forward(ob, yb, need_grad=False)
                total += value * len(ob) if per_sample else value
                correct += _correct(loss_fn, ob, yb) or 0
        mine.append((total, correct))
    every = [pair for part in dist.comm().allgather(mine) for pair in part]
    total = sum(t for t, _ in every)
    per_sample = getattr(loss_fn, "reduction", "mean") == "mean"
    logs = {"loss": total / len(X) if per_sample else total}
    if isinstance(loss_fn, (CrossEntropyLoss, BCEWithLogitsLoss, BCELoss)):
        outputs = 1 if isinstance(loss_fn, CrossEntropyLoss) else int(np.prod(y.shape[1:], dtype=np.int64))
        logs["accuracy"] = sum(c for _, c in every) / outputs / len(X)
    return logs


# Rows at a time when predict runs layer by layer and batch_size is None.
LAYER_BATCH = 1024


def predict(model, X, batch_size: int | None = None) -> np.ndarray:
    """The model's outputs for X in eval mode (dropout off), computed `batch_size` rows at a
    time: the memory it works in is that many rows of every layer's output. None: the compiled
    plan takes as many rows as fit in 8 MiB of workspace (5,000 of a 784-128-64-10 MLP, ~36
    images through fastnn.cnn_models' CNN); layer by layer, 1024."""
    if batch_size is not None and (type(batch_size) is not int or batch_size < 1):  # common case first
        batch_size = _positive_int(batch_size, "predict: batch_size")
    # An array of the model's dtype goes straight to the compiled plan, which also checks it for
    # NaN/inf (the batch-1 latency path: every test here costs tens of nanoseconds of a ~5 µs
    # call); anything else is converted and checked here first.
    if type(X) is np.ndarray and X.ndim >= 1 and X.flags.c_contiguous and X.flags.aligned:
        c = plan.inference(model, X)
        if c is not None:
            return c.predict(X, batch_size or 0, "predict")
    X = _features(model, X, "predict")
    X = np.require(X, requirements=["C", "A"])  # C order, aligned items: what the plan reads in place
    c = plan.inference(model, X) if X.ndim >= 1 else None
    if c is not None:
        return c.predict(X, batch_size or 0)
    batch_size = batch_size or LAYER_BATCH
    was = model.training
    model.eval()
    try:
        if len(X) <= batch_size:
            return model.forward(X)
        return np.concatenate([model.forward(X[_batch_rows(b, batch_size, None)])
                               for b in range(-(-len(X) // batch_size))])
    finally:
        model.train(was)


def _fitted_loss(model, loss, who: str) -> Loss:
    """`loss` as a Loss, or (None) the one the model was last fitted with (fnn.load restores it)."""
    if loss is None:
        loss = getattr(model, "_last_loss", None)
        if loss is None:
            raise ValueError(f"{who}: pass loss= (e.g. fnn.CrossEntropyLoss()); this model has not been fitted, so "
                             "there is no loss to reuse")
    return get_loss(loss)


def predict_proba(model, X, batch_size: int | None = None, loss=None) -> np.ndarray:
    """Probabilities from predict's outputs, by the loss the model is trained with (`loss`,
    else the one of its last fit): CrossEntropyLoss → softmax over the last axis (one row of
    class probabilities per sample), BCEWithLogitsLoss → sigmoid of each output, BCELoss → the
    outputs (already probabilities). A regression loss has no probabilities: ValueError."""
    loss_fn = _fitted_loss(model, loss, "predict_proba")
    if not isinstance(loss_fn, (CrossEntropyLoss, BCEWithLogitsLoss, BCELoss)):
        raise ValueError(f"predict_proba: a model trained with {type(loss_fn).__name__} outputs values, not "
                         "probabilities; use predict")
    out = predict(model, X, batch_size)
    if isinstance(loss_fn, BCELoss):
        return out
    res = np.empty_like(out)
    if isinstance(loss_fn, CrossEntropyLoss):
        ops().softmax_forward(res, out)  # over the last axis, as the loss reads the logits
    else:
        ops().sigmoid_forward(res, out)
    return res


def evaluate(model, X, y, loss=None, batch_size: int | None = None, distributed: bool = False) -> dict:
    """{"loss": ..., "accuracy": ...} on (X, y) in eval mode. `loss` defaults to the one the
    model was last fitted with. The outputs are predict's (batch_size as there); the loss and
    the accuracy are summed over batches of batch_size rows (1024 for None). With distributed
    (under mpiexec, every rank given the same X, y), each rank scores its part of fixed shards
    of the data and every rank returns the same numbers, whatever the number of ranks."""
    loss_fn = _fitted_loss(model, loss, "evaluate")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "evaluate: batch_size")
    X = _features(model, X, "evaluate")
    _check_lengths(X, y, "evaluate")
    if len(X) == 0:
        raise ValueError("evaluate: X has no samples")
    y = _targets(loss_fn, y, _output_shape(model, X, "evaluate"), len(X), "evaluate", X.dtype)
    if distributed:
        from fastnn import distributed as dist
        dist.same_everywhere("evaluate", samples=len(X), sample_shape=X.shape[1:], model=repr(model))
        return _evaluate_sharded(model, X, y, loss_fn, dist.DEFAULT_SHARDS)
    out = predict(model, X, batch_size)
    batch_size = batch_size or LAYER_BATCH
    per_sample = getattr(loss_fn, "reduction", "mean") == "mean"  # else batch losses are sums
    # binary cross-entropy scores each output: a sample's accuracy is its fraction of right ones
    outputs = 1 if isinstance(loss_fn, CrossEntropyLoss) else int(np.prod(out.shape[1:], dtype=np.int64))
    total = 0.0
    correct: int | None = 0
    for b in range(-(-len(X) // batch_size)):
        rows = _batch_rows(b, batch_size, None)
        ob, yb = out[rows], y[rows]
        value = loss_fn.forward(ob, yb, need_grad=False)
        total += value * len(ob) if per_sample else value
        c = _correct(loss_fn, ob, yb)
        correct = None if c is None or correct is None else correct + c
    logs = {"loss": total / len(X) if per_sample else total}
    if correct is not None:
        logs["accuracy"] = correct / outputs / len(X)
    return logs
