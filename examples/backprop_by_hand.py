"""The hand-computed backpropagation step of a 2-2-1 ReLU network.

x = (1, 2), target Y = 2, J = ½(y − Y)², η = 0.01. Prints every forward value, every
gradient and every updated weight. Run: python examples/backprop_by_hand.py
"""
import numpy as np

import fastnn as fnn

net = fnn.Sequential(fnn.Linear(2, 2, dtype=np.float64), fnn.ReLU(), fnn.Linear(2, 1, dtype=np.float64))
hidden, output = net[0], net[2]
hidden.weight.data = [[1, 1],     # hidden unit 1: w11 (from x1), w21 (from x2)
                      [1, -1]]    # hidden unit 2: w12, w22
hidden.bias.data = [1, 1]         # b11, b12
output.weight.data = [[1, -1]]    # wa1, wa2
output.bias.data = [1]            # b21

x, Y, lr = np.array([[1.0, 2.0]]), 2.0, 0.01
z = hidden(x)
a = net[1](z)
y = output(a)
J = 0.5 * (y[0, 0] - Y) ** 2
print(f"forward:  z1 = {z[0, 0]:g}, a1 = {a[0, 0]:g}, z2 = {z[0, 1]:g}, a2 = {a[0, 1]:g}, y = {y[0, 0]:g}, J = {J:g}")

net.zero_grad()
net.backward(np.array([[y[0, 0] - Y]]))            # ∂J/∂y = y − Y
g = {"w11": hidden.weight.grad[0, 0], "w21": hidden.weight.grad[0, 1], "b11": hidden.bias.grad[0],
     "w12": hidden.weight.grad[1, 0], "w22": hidden.weight.grad[1, 1], "b12": hidden.bias.grad[1],
     "wa1": output.weight.grad[0, 0], "wa2": output.weight.grad[0, 1], "b21": output.bias.grad[0]}
print("gradients:", ", ".join(f"∂J/∂{k} = {v:g}" for k, v in g.items()))

fnn.SGD(net.parameters(), lr=lr).step()
w = {"w11": hidden.weight.data[0, 0], "w21": hidden.weight.data[0, 1], "b11": hidden.bias.data[0],
     "w12": hidden.weight.data[1, 0], "w22": hidden.weight.data[1, 1], "b12": hidden.bias.data[1],
     "wa1": output.weight.data[0, 0], "wa2": output.weight.data[0, 1], "b21": output.bias.data[0]}
print("after one step:", ", ".join(f"{k} = {v:.4g}" for k, v in w.items()))
