"""Learning-rate schedules, as torch.optim.lr_scheduler (the same recursive formulas, so the
rates match PyTorch's to the last bit). Call `scheduler.step()` once per epoch, after the
optimizer's steps."""
from __future__ import annotations

import math

from fastnn.optim.optimizer import Optimizer


class _State:
    """What every schedule shares: the last rates it set, and its state as a dict."""

    optimizer: Optimizer
    _last_lr: list

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict) -> None:
        self.__dict__.update(state)


class LRScheduler(_State):
    """Base class: remembers each group's initial lr and sets new ones on step()."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__} expects a fastnn optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self.step()

    def get_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def step(self) -> None:
        self._step_count += 1
        self.last_epoch += 1
        for g, lr in zip(self.optimizer.param_groups, self.get_lr()):
            g["lr"] = lr
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """Multiply the learning rate by `gamma` every `step_size` epochs.

    Example:
        >>> opt = fnn.SGD(model.parameters(), lr=0.1)
        >>> s = fnn.StepLR(opt, step_size=2, gamma=0.5)
        >>> for _ in range(4):
        ...     s.step()
        >>> s.get_last_lr()
        [0.025]
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        if not isinstance(gamma, (int, float)) or not gamma > 0:
            raise ValueError(f"StepLR: gamma must be a positive number, got {gamma!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in groups]
        return [g["lr"] * self.gamma for g in groups]


class CosineAnnealingLR(LRScheduler):
    """Anneal from the initial lr to `eta_min` along half a cosine over `T_max` epochs:
    lr_t = eta_min + (lr_0 − eta_min)·(1 + cos(π·t/T_max))/2.

    Example:
        >>> opt = fnn.SGD(model.parameters(), lr=0.1)
        >>> s = fnn.CosineAnnealingLR(opt, T_max=2)
        >>> s.step(); round(s.get_last_lr()[0], 6)
        0.05
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, t, T, lo = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if t == 0:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and t > 0:
            return [lo + (base - lo) * (1 + math.cos(t * math.pi / T)) / 2 for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (base - lo) * (1 - math.cos(math.pi / T)) / 2
                    for base, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (g["lr"] - lo) + lo for g in groups]


class LinearLR(LRScheduler):
    """Scale the initial lr linearly from start_factor to end_factor over `total_iters` epochs,
    then keep it: a warm-up with the defaults (a third of the rate, rising over 5 epochs).

    Example:
        >>> opt = fnn.SGD(model.parameters(), lr=0.1)
        >>> s = fnn.LinearLR(opt, start_factor=0.5, total_iters=2)
        >>> round(s.get_last_lr()[0], 6)
        0.05
        >>> s.step(); s.step(); round(s.get_last_lr()[0], 6)
        0.1
    """

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise ValueError(f"LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1], got "
                             f"{start_factor!r} and {end_factor!r}")
        if isinstance(total_iters, bool) or not isinstance(total_iters, int) or total_iters < 1:
            raise ValueError(f"LinearLR: total_iters must be a positive int, got {total_iters!r}")
        self.start_factor, self.end_factor, self.total_iters = float(start_factor), float(end_factor), total_iters
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, t, a, b, n = self.optimizer.param_groups, self.last_epoch, self.start_factor, self.end_factor, \
            self.total_iters
        if t == 0:
            return [g["lr"] * a for g in groups]
        if t > n:
            return [g["lr"] for g in groups]
        return [g["lr"] * (1.0 + (b - a) / (n * a + (t - 1) * (b - a))) for g in groups]


class ReduceLROnPlateau(_State):
    """Multiply the learning rate by `factor` when a metric has not improved for `patience`
    epochs, as torch.optim.lr_scheduler.ReduceLROnPlateau: call step(metric) once per epoch
    (fit does it through LearningRateScheduler, reading `monitor` from the epoch's logs).

    Args:
        mode: "min" (a loss) or "max" (an accuracy).
        threshold, threshold_mode: what counts as better — "rel": beyond best·(1 ∓ threshold),
            "abs": beyond best ∓ threshold.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: a floor (one per group, or one for all); eps: smaller changes are skipped.

    Example:
        >>> opt = fnn.SGD(model.parameters(), lr=0.1)
        >>> s = fnn.ReduceLROnPlateau(opt, patience=1, factor=0.5)
        >>> for val_loss in (1.0, 1.0, 1.0):
        ...     s.step(val_loss)
        >>> s.get_last_lr()
        [0.05]
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0.0,
                 eps: float = 1e-8):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"ReduceLROnPlateau expects a fastnn optimizer, got {type(optimizer).__name__}")
        if not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1), got {factor!r}")
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max' and threshold_mode 'rel' or 'abs', got "
                             f"{mode!r} and {threshold_mode!r}")
        n = len(optimizer.param_groups)
        lows = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n
        if len(lows) != n:
            raise ValueError(f"ReduceLROnPlateau: min_lr has {len(lows)} values for {n} parameter groups")
        self.optimizer, self.mode, self.factor, self.patience = optimizer, mode, float(factor), int(patience)
        self.threshold, self.threshold_mode, self.cooldown, self.eps = float(threshold), threshold_mode, \
            int(cooldown), float(eps)
        self.min_lrs = [float(v) for v in lows]
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs, self.cooldown_counter, self.last_epoch = 0, 0, 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]

    def _better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics) -> None:
        current = float(metrics)
        self.last_epoch += 1
        if self._better(current, self.best):
            self.best, self.num_bad_epochs = current, 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for g, low in zip(self.optimizer.param_groups, self.min_lrs):
                new = max(g["lr"] * self.factor, low)
                if g["lr"] - new > self.eps:
                    g["lr"] = new
            self.cooldown_counter, self.num_bad_epochs = self.cooldown, 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]
