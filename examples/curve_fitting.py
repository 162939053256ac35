"""Curve fitting — a degree-5 polynomial by gradient descent, an MLP that fits
sin(x), and why a linear model cannot fit a non-linear target.

Run: python examples/curve_fitting.py
"""
import numpy as np

import fastnn as fnn

rng = np.random.default_rng(1)

# 1. k0 + k1·x + ... + k5·x⁵ by full-batch gradient descent on the summed squared error.
x = np.linspace(-1, 1, 50)[:, None]
t = np.sin(3 * x) + rng.normal(0, 0.05, x.shape)
powers = np.hstack([x ** k for k in range(1, 6)])        # the bias is k0
poly = fnn.Linear(5, 1, init="zeros", dtype=np.float64)
opt = fnn.SGD(poly.parameters(), lr=0.002)
sse = fnn.MSELoss(reduction="sum")
losses = []
for step in range(300):
    losses.append(sse(poly(powers), t))
    opt.zero_grad()
    poly.backward(sse.backward())
    opt.step()
print(f"polynomial: summed squared error {losses[0]:.3f} -> {losses[-1]:.3f}, "
      f"decreasing at every step: {bool(np.all(np.diff(losses) < 0))}")
print("  coefficients k0..k5:", np.round([poly.bias.data[0], *poly.weight.data[0]], 3).tolist())

# 2. One hidden layer of 100 tanh units approximates sin on [−π, π].
fnn.manual_seed(0)
xs = np.linspace(-np.pi, np.pi, 256, dtype=np.float32)[:, None]
net = fnn.Sequential(fnn.Linear(1, 100), fnn.Tanh(), fnn.Linear(100, 1))
net.fit(xs, np.sin(xs), loss="mse", optimizer=fnn.Adam(net.parameters(), lr=0.01), epochs=300,
        batch_size=64, verbose=0)
print(f"MLP 1-100-1 on sin(x): mean squared error {net.evaluate(xs, np.sin(xs), loss='mse')['loss']:.2e}")

# 3. A house-price style linear model y = W1·x1 + ... + W5·x5 + b versus an MLP.
X = rng.uniform(-1, 1, (512, 5)).astype(np.float32)
linear_price = X @ np.array([[3], [-2], [1], [0.5], [2]], np.float32) + 1
curved_price = np.sin(2 * X[:, :1]) * X[:, 1:2] ** 2 + np.abs(X[:, 2:3])
for target_name, target in [("linear target", linear_price), ("non-linear target", curved_price)]:
    for model_name, make in [("linear model", lambda: fnn.Sequential(fnn.Linear(5, 1))),
                             ("MLP 5-64-1", lambda: fnn.Sequential(fnn.Linear(5, 64), fnn.Tanh(), fnn.Linear(64, 1)))]:
        fnn.manual_seed(0)
        model = make()
        model.fit(X, target, loss="mse", optimizer=fnn.Adam(model.parameters(), lr=0.01), epochs=200,
                  batch_size=64, verbose=0)
        print(f"{model_name:12s} on the {target_name:17s}: MSE {model.evaluate(X, target, loss='mse')['loss']:.5f}")
