"""An MLP with a smooth activation learns XOR by backpropagation.

Run: python examples/xor_mlp.py
"""
import numpy as np

import fastnn as fnn

fnn.manual_seed(0)
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
y = np.array([[0], [1], [1], [0]], dtype=np.float32)

model = fnn.Sequential(fnn.Linear(2, 8), fnn.Tanh(), fnn.Linear(8, 1))
loss_fn = fnn.BCEWithLogitsLoss()           # sigmoid + binary cross-entropy, fused and stable
opt = fnn.SGD(model.parameters(), lr=0.5, momentum=0.9)

for step in range(501):
    logits = model(X)                        # forward
    loss = loss_fn(logits, y)                # loss
    opt.zero_grad()
    model.backward(loss_fn.backward())       # backward, layer by layer
    opt.step()                               # update
    if step % 100 == 0:
        print(f"step {step:3d}  loss {loss:.5f}")

predictions = (model(X) > 0).astype(int).ravel()
print("predictions:", predictions.tolist(), "targets:", y.ravel().astype(int).tolist())
print(f"accuracy: {(predictions == y.ravel()).mean():.0%}")
