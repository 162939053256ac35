"""The M-P neuron, the perceptron rule, and why XOR needs two layers.

Run: python examples/neuron_and_perceptron.py   (or: fastnn demo neuron_and_perceptron)
"""
import warnings

import numpy as np

import fastnn as fnn

inputs = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)

# An M-P neuron: y = 1 if w1·x1 + w2·x2 >= θ else 0, with w1 = w2 = 0.5.
for name, theta in [("AND", 0.7), ("OR", 0.5)]:
    neuron = fnn.Sequential(fnn.Linear(2, 1, bias=False), fnn.Step(threshold=theta))
    neuron[0].weight.data = [[0.5, 0.5]]
    print(f"M-P neuron, w = (0.5, 0.5), θ = {theta}: {name} =", neuron(inputs).ravel().astype(int).tolist())

# The perceptron learning rule: w ← w + lr·(t − y)·x, b ← b + lr·(t − y).
for name, targets in [("AND", [0, 0, 0, 1]), ("OR", [0, 1, 1, 1]), ("XOR", [0, 1, 1, 0])]:
    p = fnn.Perceptron(2, lr=1.0, max_epochs=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fnn.ConvergenceWarning)
        p.fit(inputs, targets)
    verdict = (f"converged after {p.epochs_} epochs" if p.converged
               else f"did NOT converge in {p.epochs_} epochs (errors per epoch: {p.errors_[-4:]})")
    print(f"perceptron on {name}: {verdict}; w = {p.weights.tolist()}, b = {p.bias}; "
          f"predicts {p.predict(inputs).tolist()}")

# XOR with two layers and hand-set weights: A fires only on (1,0), B only on (0,1),
# the output fires when A + B > 0.
hidden = fnn.Linear(2, 2, bias=False)
hidden.weight.data = [[1, -1],    # A: weights (1, −1), threshold ½
                      [-1, 1]]    # B: weights (−1, 1), threshold ½
output = fnn.Linear(2, 1, bias=False)
output.weight.data = [[1, 1]]
xor_net = fnn.Sequential(hidden, fnn.Step(0.5), output, fnn.Step(0.5))
print("two-layer net with hand-set weights: XOR =", xor_net(inputs).ravel().astype(int).tolist())
