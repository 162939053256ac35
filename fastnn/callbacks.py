"""Callbacks for fit(), as Keras's: EarlyStopping, ModelCheckpoint, TerminateOnNaN.

fit() calls on_train_begin / on_epoch_begin / on_batch_end / on_epoch_end / on_train_end.
A callback stops training by setting `model.stop_training = True`.
"""
from __future__ import annotations

import math
import sys

import numpy as np

from fastnn.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from fastnn.serialization import save


class Callback:
    """Base class; every hook does nothing. `self.model` and `self.params` are set by fit().

    Example:
        >>> class Losses(fnn.Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         print(epoch, round(logs["loss"], 1))
        >>> h = model.fit(X, y, epochs=1, verbose=0, callbacks=[Losses()])
        0 2.3
    """

    model = None
    params: dict = {}  # noqa: RUF012  (replaced per instance by set_params before fit uses it)

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...


def _mode(monitor: str, mode: str, who: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def _check_monitor(monitor: str, params: dict, who: str) -> None:
    names = params.get("metrics")
    if names is not None and monitor not in names:
        hint = " (pass validation_data= to fit)" if monitor.startswith("val_") else ""
        raise ValueError(f"{who} monitors {monitor!r}, which this fit() does not report{hint}; "
                         f"it reports {names}")


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs.

    Args:
        monitor: "val_loss" (default), "val_accuracy", "loss" or "accuracy".
        patience: epochs without improvement to wait.
        restore_best_weights: put back the weights of the best epoch when training ends.

    Example:
        >>> stop = fnn.EarlyStopping(monitor="val_loss", patience=0)
        >>> h = model.fit(X, y, epochs=50, verbose=0, validation_split=0.25, callbacks=[stop])
        >>> len(h.epoch) < 50
        True
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0,
                 mode: str = "auto", restore_best_weights: bool = False):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.monitor, self.patience, self.min_delta = monitor, patience, abs(float(min_delta))
        self.mode = _mode(monitor, mode, "EarlyStopping")
        self.restore_best_weights = restore_best_weights
        self.stopped_epoch = None

    def _better(self, value, best) -> bool:
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta

    def on_train_begin(self, logs=None):
        _check_monitor(self.monitor, self.params, "EarlyStopping")
        self.wait, self.best, self.best_epoch, self.best_weights = 0, None, None, None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(value):
            return
        if self.best is None or self._better(value, self.best):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model with fnn.save after every epoch (or only when `monitor` improves).

    Args:
        path: file name; may contain "{epoch}" and log keys, e.g. "model-{epoch:02d}.fnn".
        monitor, mode: what "improves" means with save_best_only.
        save_best_only: write only when `monitor` is better than every earlier epoch.
        save_optimizer: include the optimizer's state, so training can resume.

    Example:
        >>> h = model.fit(X, y, epochs=2, verbose=0, callbacks=[fnn.ModelCheckpoint("epoch{epoch}.fnn")])
        >>> fnn.load("epoch2.fnn").predict(X[:1]).shape
        (1, 10)
    """

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", save_optimizer: bool = False):
        self.path, self.monitor, self.save_best_only = str(path), monitor, save_best_only
        self.mode = _mode(monitor, mode, "ModelCheckpoint")
        self.save_optimizer = save_optimizer
        self.best = None
        self.saved: list[str] = []

    def on_train_begin(self, logs=None):
        if self.save_best_only:
            _check_monitor(self.monitor, self.params, "ModelCheckpoint")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None or not math.isfinite(value):
                return
            if self.best is not None and not (value < self.best if self.mode == "min" else value > self.best):
                return
            self.best = value
        path = self.path.format(epoch=epoch + 1, **logs)
        if self.params.get("rank", 0) == 0:  # in distributed fit, rank 0 alone writes files
            save(self.model, path, optimizer=self.params.get("optimizer") if self.save_optimizer else None)
        self.saved.append(path)


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch loss is NaN or infinite.

    Example:
        >>> bad = fnn.SGD(model.parameters(), lr=1e30)      # (prints the batch to stderr)
        >>> h = model.fit(X * 1e20, y, optimizer=bad, epochs=3, verbose=0, callbacks=[fnn.TerminateOnNaN()])
        >>> len(h.epoch), h.history["loss"]
        (1, [nan])
    """

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            print(f"\nBatch {batch}: the loss is {loss}; stopping training (try a lower learning "
                  "rate)", file=sys.stderr)
            self.model.stop_training = True


class LearningRateScheduler(Callback):
    """Step a learning-rate scheduler at the end of every epoch of fit, as a PyTorch loop steps
    it after the epoch's optimizer steps: StepLR, CosineAnnealingLR, LinearLR (a warm-up) take
    step(); ReduceLROnPlateau takes step(logs[monitor]). fit also accepts a scheduler itself in
    `callbacks` and wraps it in this.

    Example:
        >>> opt = fnn.SGD(model.parameters(), lr=0.1)
        >>> h = model.fit(X, y, optimizer=opt, epochs=2, verbose=0, callbacks=[fnn.StepLR(opt, step_size=1, gamma=0.5)])
        >>> opt.param_groups[0]["lr"]
        0.025
        >>> plateau = fnn.ReduceLROnPlateau(opt, patience=2)   # watches val_loss
        >>> h = model.fit(X, y, optimizer=opt, validation_split=0.1, verbose=0, callbacks=[plateau])
    """

    def __init__(self, scheduler, monitor: str = "val_loss"):
        if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
            raise TypeError(f"LearningRateScheduler expects a fastnn scheduler (StepLR, ReduceLROnPlateau, ...), "
                            f"got {type(scheduler).__name__}")
        self.scheduler, self.monitor = scheduler, monitor
        self.plateau = isinstance(scheduler, ReduceLROnPlateau)

    def on_train_begin(self, logs=None):
        if self.params.get("optimizer") is not None and self.scheduler.optimizer is not self.params["optimizer"]:
            raise ValueError("LearningRateScheduler: the scheduler drives another optimizer than the one fit uses; "
                             "create it with fit's optimizer")
        if self.plateau:
            _check_monitor(self.monitor, self.params, "LearningRateScheduler")

    def on_epoch_end(self, epoch, logs=None):
        if not self.plateau:
            self.scheduler.step()
            return
        value = (logs or {}).get(self.monitor)
        if value is not None and math.isfinite(value):
            self.scheduler.step(value)
