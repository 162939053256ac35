"""scikit-learn estimators on fastnn (the optional extra [sklearn]): MLPClassifier and
MLPRegressor, shaped like scikit-learn's own MLP, for Pipeline, GridSearchCV and
cross_val_score.

    from fastnn.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=20, random_state=0).fit(X, y)
    clf.predict_proba(X[:3]), clf.score(X_test, y_test), clf.model_   # the fastnn model

Hyper-parameters as scikit-learn's MLP: hidden_layer_sizes, activation ("relu", "tanh",
"logistic", "identity"), solver ("adam", "sgd"), alpha (L2 penalty on the weights, as
scikit-learn adds it: alpha·W / batch rows to each batch's gradient), batch_size ("auto":
min(200, n)), learning_rate_init, max_iter (epochs), shuffle, random_state, tol and
n_iter_no_change (stop when the training loss — or with early_stopping the validation score —
has not improved by tol for that many epochs), early_stopping with validation_fraction (the
best epoch's weights are kept), momentum (sgd), verbose.

Training runs in float32 through fastnn's fit (the compiled plan); predictions are computed
in float64 by a copy of the trained weights made when fit ends. Each fit reseeds from
random_state with its own generator (the user's fastnn stream is left alone), so refits with
the same random_state give the same model. Fitted attributes:
classes_ (classifier), n_features_in_, loss_curve_, n_iter_, model_ (the fastnn model).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

import fastnn as fnn
from fastnn.gradcheck import float64_copy
from fastnn.random import seeded

_ACTIVATIONS = {"relu": fnn.ReLU, "tanh": fnn.Tanh, "logistic": fnn.Sigmoid, "identity": None}


class _MLP(BaseEstimator):
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, momentum=0.9, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=10):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.momentum = momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change

    # --- what the two estimators share
    def _check_params(self):
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.solver not in ("adam", "sgd"):
            raise ValueError(f"solver must be 'adam' or 'sgd' (fastnn has no lbfgs), got {self.solver!r}")
        sizes = [self.hidden_layer_sizes] if np.isscalar(self.hidden_layer_sizes) else list(self.hidden_layer_sizes)
        if any(int(s) != s or s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive ints, got {self.hidden_layer_sizes!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an int >= 1, got {self.max_iter!r}")
        if self.alpha < 0 or self.learning_rate_init <= 0:
            raise ValueError("alpha must be >= 0 and learning_rate_init > 0")
        if self.early_stopping and not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        return [int(s) for s in sizes]

    def _build(self, n_in, n_out, sizes):
        layers, width = [], n_in
        act = _ACTIVATIONS[self.activation]
        for s in sizes:
            layers.append(fnn.Linear(width, s))
            if act is not None:
                layers.append(act())
            width = s
        layers.append(fnn.Linear(width, n_out))
        return fnn.Sequential(*layers)

    def _optimizer(self, model, rows):
        # scikit-learn adds alpha·W / (the batch's rows) to the weights' gradient: weight decay
        # of alpha / rows on the weights, none on the biases
        weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        biases = [p for name, p in model.named_parameters() if not name.endswith("weight")]
        groups = [{"params": weights, "weight_decay": self.alpha / rows}, {"params": biases, "weight_decay": 0.0}]
        if self.solver == "adam":
            return fnn.Adam(groups, lr=self.learning_rate_init)
        return fnn.SGD(groups, lr=self.learning_rate_init, momentum=self.momentum)

    def _batch(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        return min(int(self.batch_size), n)

    def _train(self, X, Y, loss, n_out, epochs, first, stratify=None):
        """fit's work: a new model when `first`, then `epochs` epochs (tol-based stopping)."""
        sizes = self._check_params()
        rows = self._batch(len(X))
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        with seeded(seed):
            if first:
                self.model_ = self._build(X.shape[1], n_out, sizes)
                self._opt = self._optimizer(self.model_, rows)
                self.loss_curve_ = []
                self.n_iter_ = 0
            cbs, val = [], None
            if self.early_stopping and epochs > 1:
                X, Xv, Y, Yv = train_test_split(X, Y, test_size=self.validation_fraction, random_state=seed,
                                                stratify=stratify)
                val = (Xv, Yv)
                monitor = "val_accuracy" if isinstance(loss, fnn.CrossEntropyLoss) else "val_loss"
                cbs.append(fnn.EarlyStopping(monitor, patience=self.n_iter_no_change, min_delta=self.tol,
                                             restore_best_weights=True))
            elif epochs > 1:
                cbs.append(fnn.EarlyStopping("loss", patience=self.n_iter_no_change, min_delta=self.tol))
            h = self.model_.fit(X, Y, loss=loss, optimizer=self._opt, epochs=epochs, batch_size=min(rows, len(X)),
                                shuffle=self.shuffle, validation_data=val, callbacks=cbs,
                                verbose=2 if self.verbose else 0)
        self.loss_curve_ = list(self.loss_curve_) + list(h.history["loss"])
        self.n_iter_ += len(h.history["loss"])
        # predictions come from a float64 copy of the trained weights: a float32 GEMM may round
        # a row's output differently (~1e-7) with the batch it shares, and scikit-learn expects
        # predict(X)[i] to equal predict(X[i:i+1])
        self._model64 = float64_copy(self.model_)
        return self

    def _outputs(self, X):
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        return self._model64.predict(np.ascontiguousarray(X, dtype=np.float64))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


class MLPClassifier(ClassifierMixin, _MLP):
    """A multi-layer perceptron classifier trained with fastnn (softmax outputs, cross-entropy).

    Example:
        >>> from fastnn.sklearn import MLPClassifier
        >>> clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0).fit(X, y)
        >>> clf.predict(X[:3]).shape, clf.predict_proba(X[:3]).shape, clf.score(X, y) > 0.9
        ((3,), (3, 10), True)
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), y_numeric=False)
        check_classification_targets(y)
        self.classes_ = unique_labels(y)
        return self._fit_classes(X, y, self.max_iter, first=True)

    def partial_fit(self, X, y, classes=None):
        """One epoch on (X, y); `classes` (every class there will be) on the first call."""
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("partial_fit: pass classes= (every class the data holds) on the first call")
            self.classes_ = unique_labels(classes)
        elif classes is not None and not np.array_equal(unique_labels(classes), self.classes_):
            raise ValueError(f"partial_fit: classes={classes!r} differ from the first call's {self.classes_!r}")
        if not np.isin(y, self.classes_).all():
            raise ValueError(f"partial_fit: y holds labels outside classes {self.classes_!r}")
        return self._fit_classes(X, y, 1, first)

    def _fit_classes(self, X, y, epochs, first):
        codes = np.searchsorted(self.classes_, y).astype(np.int64)
        X = np.ascontiguousarray(X, dtype=np.float32)
        counts = np.bincount(codes, minlength=len(self.classes_))
        stratify = codes if self.early_stopping and counts[counts > 0].min() >= 2 else None
        return self._train(X, codes, fnn.CrossEntropyLoss(), len(self.classes_), epochs, first, stratify)

    def predict_proba(self, X):
        """Class probabilities (n, len(classes_)), the columns in classes_ order."""
        z = self._outputs(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X):
        return np.log(self.predict_proba(X))

    def predict(self, X):
        out = self._outputs(X)  # (checks that the estimator is fitted)
        return self.classes_[np.argmax(out, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags


class MLPRegressor(RegressorMixin, _MLP):
    """A multi-layer perceptron regressor trained with fastnn (linear outputs, squared error);
    y may have several columns.

    Example:
        >>> from fastnn.sklearn import MLPRegressor
        >>> reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0).fit(X[:, :4], X[:, 0] - X[:, 1])
        >>> reg.predict(X[:2, :4]).shape, reg.score(X[:, :4], X[:, 0] - X[:, 1]) > 0.5
        ((2,), True)
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True, y_numeric=True)
        return self._fit_targets(X, y, self.max_iter, first=True)

    def partial_fit(self, X, y):
        """One epoch on (X, y)."""
        first = not hasattr(self, "model_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), multi_output=True, y_numeric=True,
                             reset=first)
        if not first and (y.ndim == 1) != (self._n_outputs == 0):
            raise ValueError("partial_fit: y must have the shape of the first call's y")
        return self._fit_targets(X, y, 1, first)

    def _fit_targets(self, X, y, epochs, first):
        if first:
            self._n_outputs = 0 if y.ndim == 1 else y.shape[1]
        Y = np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float32)
        return self._train(np.ascontiguousarray(X, dtype=np.float32), Y, fnn.MSELoss(), Y.shape[1], epochs, first)

    def predict(self, X):
        out = self._outputs(X)
        return out[:, 0] if self._n_outputs == 0 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
