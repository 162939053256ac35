"""Fit y = 2x + 1 with a one-weight model y = w·x + b by per-sample SGD.

Loss (y − t)²/2, η = 0.01, starting from w = 0.5, b = 0.6. Run: python examples/linear_regression.py
"""
import numpy as np

import fastnn as fnn

model = fnn.Linear(1, 1, dtype=np.float64)
model.weight.data, model.bias.data = [[0.5]], [0.6]
opt = fnn.SGD(model.parameters(), lr=0.01)
loss_fn = fnn.MSELoss(reduction="sum")             # (y − t)²; half of its gradient below


def sgd_step(x, t):
    loss_fn(model(np.array([[x]])), np.array([[t]]))
    opt.zero_grad()
    model.backward(0.5 * loss_fn.backward())       # gradient of (y − t)²/2
    opt.step()


for x, t in [(0.0, 1.0), (1.0, 2.9)]:
    sgd_step(x, t)
    print(f"after (x={x:g}, t={t:g}): w = {model.weight.data[0, 0]:.5f}, b = {model.bias.data[0]:.5f}")

rng = np.random.default_rng(0)
xs = rng.uniform(-1, 1, 200)
ts = 2 * xs + 1 + rng.normal(0, 0.05, xs.shape)
for epoch in range(30):
    for x, t in zip(xs, ts):
        sgd_step(x, t)
print(f"after 30 epochs over 200 noisy samples: w = {model.weight.data[0, 0]:.3f}, "
      f"b = {model.bias.data[0]:.3f}  (the truth is w = 2, b = 1)")
