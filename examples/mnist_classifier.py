"""The 784-128-64-10 classifier — ReLU, cross-entropy on logits, SGD lr 0.01
momentum 0.5, batch 100, 10 epochs, inputs normalised as (x − 0.5)/0.5.

MNIST itself needs a download; Fashion-MNIST (same format, harder) is local after
`apt-get install dataset-fashion-mnist`.

Run: python examples/mnist_classifier.py [--dataset fashion-mnist|mnist|digits] [--optimizer adam]
"""
import argparse
import time

import numpy as np

import fastnn as fnn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="fashion-mnist")
parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                    help="sgd: lr 0.01 momentum 0.5, batch 100; adam: lr 1e-3, batch 128")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

(X_train, y_train), (X_test, y_test) = fnn.datasets.load(args.dataset)
if args.limit:
    X_train, y_train = X_train[:args.limit], y_train[:args.limit]
X_train = fnn.data.normalize(X_train.reshape(len(X_train), -1))    # (x − 0.5)/0.5, pixels in [0, 1]
X_test = fnn.data.normalize(X_test.reshape(len(X_test), -1))
features = X_train.shape[1]

fnn.manual_seed(args.seed)
model = fnn.Sequential(fnn.Linear(features, 128), fnn.ReLU(),
                       fnn.Linear(128, 64), fnn.ReLU(),
                       fnn.Linear(64, 10))
print(model.summary())
if args.optimizer == "sgd":
    optimizer, batch_size = fnn.SGD(model.parameters(), lr=0.01, momentum=0.5), 100
else:
    optimizer, batch_size = fnn.Adam(model.parameters(), lr=1e-3), 128

start = time.perf_counter()
model.fit(X_train, y_train, loss=fnn.CrossEntropyLoss(), optimizer=optimizer, epochs=args.epochs,
          batch_size=batch_size, verbose=2)
seconds = time.perf_counter() - start
result = model.evaluate(X_test, y_test)
print(f"{args.dataset}, {args.optimizer}: test accuracy {result['accuracy']:.4f}, test loss "
      f"{result['loss']:.4f} ({seconds:.1f} s for {args.epochs} epochs)")
