"""Rosenblatt's perceptron: an M-P neuron (Linear + Step) trained by the perceptron rule."""
from __future__ import annotations

import warnings

import numpy as np

from fastnn.layers import Linear, Step
from fastnn.layers.base import float_input, shape_str


class ConvergenceWarning(UserWarning):
    """Training stopped at its epoch limit without reaching its goal.

    Example:
        >>> import warnings
        >>> X_xor, y_xor = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), np.array([0, 1, 1, 0])
        >>> with warnings.catch_warnings(record=True) as w:
        ...     warnings.simplefilter("always")
        ...     _ = fnn.Perceptron(2, max_epochs=5).fit(X_xor, y_xor)
        >>> w[0].category.__name__
        'ConvergenceWarning'
    """


class Perceptron:
    """y = step(w·x + b), trained sample by sample with the classic rule

        w ← w + lr·(t − y)·x,    b ← b + lr·(t − y)

    which converges exactly when the classes are linearly separable (AND, OR) and never
    otherwise (XOR): then it stops at `max_epochs`, sets `converged = False` and warns.

    Args:
        n_inputs: number of inputs.
        lr: learning rate (default 1).
        max_epochs: the epoch limit.

    Example:
        >>> p = Perceptron(2).fit([[0, 0], [0, 1], [1, 0], [1, 1]], [0, 0, 0, 1])
        >>> p.converged, p.predict([[1, 1], [0, 1]]).tolist()
        (True, [1, 0])
    """

    def __init__(self, n_inputs: int, lr: float = 1.0, max_epochs: int = 100):
        if not lr > 0:
            raise ValueError(f"Perceptron: lr must be > 0, got {lr}")
        if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"Perceptron: max_epochs must be a positive int, got {max_epochs!r}")
        self.lr, self.max_epochs = float(lr), max_epochs
        self.neuron = Linear(n_inputs, 1, init="zeros", dtype=np.float64)
        self.step = Step(0.0)
        self.converged = False
        self.epochs_ = 0
        self.errors_: list[int] = []

    @property
    def weights(self) -> np.ndarray:
        return self.neuron.weight.data[0]

    @property
    def bias(self) -> float:
        bias = self.neuron.bias
        assert bias is not None  # the perceptron's neuron always has one
        return float(bias.data[0])

    def predict(self, X) -> np.ndarray:
        """0/1 for each row of X."""
        return self.step(self.neuron(float_input(X, "Perceptron", np.float64))).reshape(-1).astype(np.int64)

    def fit(self, X, y):
        X = float_input(X, "Perceptron.fit", np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[1] != self.neuron.in_features or y.shape != (len(X),):
            raise ValueError(f"Perceptron.fit: expected X (N, {self.neuron.in_features}) and y (N,), got "
                             f"{shape_str(X.shape)} and {shape_str(y.shape)}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("Perceptron.fit: y must hold 0/1 labels")
        w, b = self.neuron.weight.data, self.neuron.bias.data
        self.errors_ = []
        for epoch in range(1, self.max_epochs + 1):
            errors = 0
            for xi, ti in zip(X, y):
                out = self.predict(xi[None])[0]
                if out != ti:
                    w[0] += self.lr * (ti - out) * xi
                    b[0] += self.lr * (ti - out)
                    errors += 1
            self.errors_.append(errors)
            self.epochs_ = epoch
            if errors == 0:
                self.converged = True
                return self
        self.converged = False
        warnings.warn(f"Perceptron did not separate the data in {self.max_epochs} epochs (still "
                      f"{self.errors_[-1]} errors per epoch); the classes are not linearly separable "
                      "or need more epochs", ConvergenceWarning, stacklevel=2)
        return self
