"""Loss functions: `loss = loss_fn(pred, target)` returns a float, `loss_fn.backward()` returns
∂loss/∂pred. Each loss is one fused backend kernel that computes the value and the gradient
in the same pass, so backward only hands back what forward already computed."""
from __future__ import annotations

import numpy as np

from fastnn.backends import ops
from fastnn.layers.base import float_input, shape_str


class Loss:
    """Base class. Subclasses set `kernel` (a backend op returning the loss and writing the
    gradient) and may override `_targets` to validate and convert the targets.

    Example:
        >>> loss_fn = fnn.MSELoss()
        >>> loss_fn(np.array([[1.0]]), np.array([[3.0]])), loss_fn.backward()
        (4.0, array([[-4.]]))
    """

    kernel = ""

    def __init__(self):
        self._grad = None

    def _targets(self, target, pred: np.ndarray):
        t = float_input(target, type(self).__name__, pred.dtype)
        if t.shape != pred.shape:
            hint = (f"; reshape the target with target.reshape({shape_str(pred.shape)})"
                    if t.size == pred.size else "")
            raise ValueError(f"{type(self).__name__}: prediction has shape {shape_str(pred.shape)} "
                             f"but target has shape {shape_str(t.shape)}{hint}")
        return t

    def _args(self) -> tuple:
        return ()

    def forward(self, pred, target, need_grad: bool = True) -> float:
        pred = float_input(pred, type(self).__name__)
        t = self._targets(target, pred)
        grad = np.empty(pred.shape, pred.dtype) if need_grad else None
        value = getattr(ops(), self.kernel)(grad, pred, t, *self._args())
        self._grad = grad
        return float(value)

    def __call__(self, pred, target) -> float:
        return self.forward(pred, target)

    def backward(self) -> np.ndarray:
        """∂loss/∂pred for the last call."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before the loss was "
                               "computed; call loss_fn(pred, target) first")
        return self._grad

    def plan_loss(self) -> str | None:
        """The name a compiled plan (fastnn/plan.py) knows this loss by, or None: fit then runs
        layer by layer. Only fastnn's own classes have one (a subclass may compute otherwise)."""
        return None

    def get_config(self) -> dict:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class MSELoss(Loss):
    """Mean (or sum) of squared errors (pred − target)², as torch.nn.MSELoss.

    Args:
        reduction: "mean" (default) or "sum".

    Example:
        >>> MSELoss()(np.array([1.0, 3.0]), np.array([1.0, 1.0]))
        2.0
    """
    kernel = "mse_forward"

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"MSELoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def _args(self):
        return (self.reduction,)

    def plan_loss(self):
        return "mse_" + self.reduction if type(self) is MSELoss else None

    def get_config(self):
        return {"reduction": self.reduction}


def class_labels(y, who: str) -> np.ndarray:
    """Class labels as int64: integers, or floats holding whole numbers (what pandas gives),
    one per sample — shape (N,) or a column (N, 1). Anything else raises TypeError/ValueError."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise TypeError(f"{who}: y must hold integer class labels, got {float(y[bad[0]])!r} at index {bad[0]}; "
                            "CrossEntropyLoss takes one whole-number class per sample")
        return y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{who}: y must hold integer class labels for CrossEntropyLoss, got {y.dtype}; "
                        "use y.astype(np.int64)")
    return y


class CrossEntropyLoss(Loss):
    """Mean cross-entropy of softmax(logits) against integer class labels, computed as one
    stable log-softmax (finite for any logits), as torch.nn.CrossEntropyLoss.

    Shape:
        logits (N, C), target (N,) integers in [0, C) (also float whole numbers, or a column (N, 1))

    Example:
        >>> round(CrossEntropyLoss()(np.zeros((2, 4)), np.array([0, 3])), 4)
        1.3863
    """
    kernel = "cross_entropy_forward"

    def _targets(self, target, pred):
        return class_labels(target, type(self).__name__)  # the kernel checks shape (N,) and range [0, C)

    def plan_loss(self):
        return "cross_entropy" if type(self) is CrossEntropyLoss else None


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits: sigmoid and log fused, stable for any logit.

    Example:
        >>> round(fnn.BCEWithLogitsLoss()(np.zeros((2, 1)), np.array([[0.0], [1.0]])), 4)
        0.6931
    """
    kernel = "bce_with_logits_forward"

    def plan_loss(self):
        return "bce_with_logits" if type(self) is BCEWithLogitsLoss else None


class BCELoss(Loss):
    """Binary cross-entropy on probabilities in [0, 1] (logs clamped at −100, as PyTorch).
    Prefer BCEWithLogitsLoss on logits: it is exact where this one clamps.

    Example:
        >>> round(fnn.BCELoss()(np.full((2, 1), 0.5), np.array([[0.0], [1.0]])), 4)
        0.6931
    """
    kernel = "bce_forward"

    def plan_loss(self):
        return "bce" if type(self) is BCELoss else None


LOSSES = {"mse": MSELoss, "cross_entropy": CrossEntropyLoss,
          "bce_with_logits": BCEWithLogitsLoss, "bce": BCELoss}


def get_loss(loss) -> Loss:
    """A Loss instance from an instance or a name ("cross_entropy", "mse", "bce", "bce_with_logits")."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss.lower() in LOSSES:
        return LOSSES[loss.lower()]()
    raise ValueError(f"unknown loss {loss!r}; pass a Loss (e.g. fnn.CrossEntropyLoss()) or one of "
                     f"{', '.join(LOSSES)}")
