"""The 784-50-100-10 network with sigmoid, sigmoid, softmax — 45,360 parameters.

Training uses CrossEntropyLoss on the last layer's outputs (it applies the softmax itself, in
a numerically safe fused form); at inference the softmax turns them into probabilities.

Run: python examples/sigmoid_softmax_net.py [--dataset fashion-mnist|mnist|digits] [--epochs N]
"""
import argparse

import numpy as np

import fastnn as fnn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="fashion-mnist")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
args = parser.parse_args()

(X_train, y_train), (X_test, y_test) = fnn.datasets.load(args.dataset)
if args.limit:
    X_train, y_train = X_train[:args.limit], y_train[:args.limit]
X_train = X_train.reshape(len(X_train), -1)
X_test = X_test.reshape(len(X_test), -1)

fnn.manual_seed(0)
net = fnn.Sequential(fnn.Linear(X_train.shape[1], 50), fnn.Sigmoid(),
                     fnn.Linear(50, 100), fnn.Sigmoid(),
                     fnn.Linear(100, 10))
print(net.summary())
print("(784·50 + 50) + (50·100 + 100) + (100·10 + 10) =", (784 * 50 + 50) + (50 * 100 + 100) + (100 * 10 + 10))

net.fit(X_train, y_train, loss=fnn.CrossEntropyLoss(), optimizer=fnn.SGD(net.parameters(), lr=0.5),
        epochs=args.epochs, batch_size=100, verbose=2)
print(f"test accuracy: {net.evaluate(X_test, y_test)['accuracy']:.4f}")

# Inference: no targets, no loss, no updates — outputs, then softmax probabilities.
probabilities = fnn.Softmax()(net.predict(X_test[:3]))
names = fnn.datasets.CLASS_NAMES.get(args.dataset, [str(i) for i in range(10)])
for p, label in zip(probabilities, y_test[:3]):
    k = int(np.argmax(p))
    print(f"predicted {names[k]!r} with probability {p[k]:.3f} (true: {names[label]!r}); "
          f"probabilities sum to {p.sum():.6f}")
