"""Convolutional networks: convolution, pooling, BatchNorm and a residual block, on images.

A Conv2d slides small learned filters (3×3 here) over the image: every output pixel sees only
its neighbourhood (local connections), and every position uses the same filter (shared
weights), so 9 weights per input channel find an edge anywhere. MaxPool2d keeps the strongest
response of each 2×2 patch, halving the image. BatchNorm2d normalises each channel over the
batch. A Residual block adds its input to its output (y = block(x) + x): gradients reach early
layers through the addition, which is what lets networks be deep (ResNets).

Run: python examples/cnn.py [--dataset digits|fashion-mnist] [--epochs 10] [--limit N]
"""
import argparse
import time

import numpy as np

import fastnn as fnn

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", default="digits", help="digits (bundled 8×8, seconds) or fashion-mnist (28×28)")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--limit", type=int, default=None, help="use only the first N training images")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

# images as (N, channels, height, width): one grey channel, pixels normalised to [-1, 1]
(X_train, y_train), (X_test, y_test) = fnn.datasets.load(args.dataset, channels=True)
if args.limit:
    X_train, y_train = X_train[:args.limit], y_train[:args.limit]
X_train, X_test = fnn.data.normalize(X_train), fnn.data.normalize(X_test)
size = X_train.shape[2]

# 1. one filter, by hand: a vertical-edge detector responds where the image changes left to right
edge = fnn.Conv2d(1, 1, 3, padding=1, bias=False)
edge.weight.data = np.array([[[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]]], np.float32)  # Sobel
image = np.zeros((1, 1, 6, 6), np.float32)
image[..., 3:] = 1.0  # dark left half, bright right half
print("a Sobel filter on an image whose right half is bright (the last column sees the zero padding):")
print(edge(image)[0, 0].astype(int))
print("max pooling (2×2) keeps each patch's strongest response:")
print(fnn.MaxPool2d(2)(edge(image))[0, 0].astype(int))

# 2. a small CNN, learned: conv → BatchNorm → ReLU → pool, a residual block, global average pooling
fnn.manual_seed(args.seed)
model = fnn.Sequential(
    fnn.Conv2d(1, 16, 3, padding=1, bias=False), fnn.BatchNorm2d(16), fnn.ReLU(), fnn.MaxPool2d(2),
    fnn.Residual(fnn.Sequential(fnn.Conv2d(16, 16, 3, padding=1, bias=False), fnn.BatchNorm2d(16), fnn.ReLU(),
                                fnn.Conv2d(16, 16, 3, padding=1, bias=False), fnn.BatchNorm2d(16))),
    fnn.ReLU(),
    fnn.Conv2d(16, 32, 3, padding=1), fnn.ReLU(), fnn.AdaptiveAvgPool2d(1), fnn.Flatten(),
    fnn.Linear(32, 10))
print(model.summary(input_shape=(None, 1, size, size)))
start = time.perf_counter()
model.fit(X_train, y_train, optimizer=fnn.Adam(model.parameters(), lr=3e-3), epochs=args.epochs, batch_size=64,
          verbose=2)
result = model.evaluate(X_test, y_test)
print(f"{args.dataset}: test accuracy {result['accuracy']:.4f} after {args.epochs} epochs "
      f"({time.perf_counter() - start:.1f} s)")
print(f"the first BatchNorm's running mean of channel 0: {model[1].running_mean[0]:.3f} "
      f"after {int(model[1].num_batches_tracked)} batches")
