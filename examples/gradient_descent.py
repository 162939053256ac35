"""Gradient descent on g(x) = (x − 1)², g'(x) = 2x − 2, from x = 3.

η = 0.1 converges to 1, η = 1 bounces between 3 and −1 forever, η > 1 diverges.
Run: python examples/gradient_descent.py
"""
import numpy as np

import fastnn as fnn

for lr, steps in [(0.1, 100), (1.0, 6), (1.1, 10)]:
    x = fnn.Parameter([3.0], dtype=np.float64)
    opt = fnn.SGD([x], lr=lr)
    path = [x.data[0]]
    for _ in range(steps):
        opt.zero_grad()
        x.grad[...] = 2 * x.data - 2          # g'(x)
        opt.step()                            # x ← x − η·g'(x)
        path.append(x.data[0])
    shown = ", ".join(f"{v:.6g}" for v in path[:7]) + (", ..." if len(path) > 7 else "")
    print(f"η = {lr}: x = {shown}; after {steps} steps x = {path[-1]:.9g}, |x − 1| = {abs(path[-1] - 1):.3g}")
