"""The convolutional networks fastnn measures itself with (fastnn bench, bench/cnn_*.py, the
CLI's --model cnn and resnet), and their PyTorch twins for the comparisons: the same layers in the same
order, so a state_dict moves between them.

- "cnn": Conv2d(1,32,3,p=1)-ReLU-MaxPool(2)-Conv2d(32,64,3,p=1)-ReLU-MaxPool(2)-Flatten-
  Linear(3136,128)-ReLU-Linear(128,10), on 28×28 images.
- "cnn-bn": the same with BatchNorm2d after each convolution (which then has no bias) and
  Dropout(0.25) before the last Linear.
- "resnet": a small ResNet: a 3×3 stem of 16 channels, three stages of two residual blocks
  (16, 32 and 64 channels; the first block of stages 2 and 3 halves the image, with a 1×1
  convolution on its shortcut), BatchNorm throughout, global average pooling, Linear(64, 10).
"""
from __future__ import annotations

from typing import Any, Callable

NAMES = ("cnn", "cnn-bn", "resnet")


def _spec(name: str, size=28, classes: int = 10, batchnorm: bool = False, dropout: float = 0.0) -> list:
    """The architecture as (kind, args) in order; both builders read it. size: an int or (H, W);
    batchnorm and dropout vary "cnn" (the CLI's --batchnorm, --dropout)."""
    h, w = (size, size) if isinstance(size, int) else size
    if name in ("cnn", "cnn-bn"):
        bn, p = (True, 0.25) if name == "cnn-bn" else (batchnorm, dropout)
        return [("conv", (1, 32, 3, 1, not bn)), *([("bn", 32)] if bn else []), ("relu",), ("maxpool", 2),
                ("conv", (32, 64, 3, 1, not bn)), *([("bn", 64)] if bn else []), ("relu",), ("maxpool", 2),
                ("flatten",), ("linear", (64 * (h // 4) * (w // 4), 128)), ("relu",),
                *([("dropout", p)] if p else []), ("linear", (128, classes))]
    if name == "resnet":
        out = [("conv", (1, 16, 3, 1, False)), ("bn", 16), ("relu",)]
        channels = 16
        for stage, width in enumerate((16, 32, 64)):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                out.append(("block", (channels, width, stride)))
                out.append(("relu",))
                channels = width
        return out + [("gap",), ("flatten",), ("linear", (64, classes))]
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(NAMES)}")


def build(name: str, size=28, classes: int = 10, batchnorm: bool = False, dropout: float = 0.0):
    """The fastnn model (see _spec for the arguments)."""
    import fastnn as fnn

    def block(c, w, stride):
        body = fnn.Sequential(fnn.Conv2d(c, w, 3, stride=stride, padding=1, bias=False), fnn.BatchNorm2d(w), fnn.ReLU(),
                              fnn.Conv2d(w, w, 3, padding=1, bias=False), fnn.BatchNorm2d(w))
        short = (None if stride == 1 and c == w else
                 fnn.Sequential(fnn.Conv2d(c, w, 1, stride=stride, bias=False), fnn.BatchNorm2d(w)))
        return fnn.Residual(body, short)
    make: dict[str, Callable[..., Any]] = {
            "conv": lambda a: fnn.Conv2d(a[0], a[1], a[2], padding=a[3], bias=a[4]), "bn": fnn.BatchNorm2d,
            "relu": lambda *_: fnn.ReLU(), "maxpool": fnn.MaxPool2d, "flatten": lambda *_: fnn.Flatten(),
            "linear": lambda a: fnn.Linear(*a), "dropout": fnn.Dropout, "block": lambda a: block(*a),
            "gap": lambda *_: fnn.AdaptiveAvgPool2d(1)}
    return fnn.Sequential([make[kind](*args) for kind, *args in _spec(name, size, classes, batchnorm, dropout)])


def build_torch(name: str, torch, size=28, classes: int = 10, batchnorm: bool = False, dropout: float = 0.0):
    """The PyTorch twin, its state_dict keys those of build()'s."""
    nn: Any = torch.nn

    class Residual(nn.Module):  # torch is passed in: fastnn never imports it
        def __init__(self, block, shortcut=None):
            super().__init__()
            self.block, self.shortcut = block, shortcut

        def forward(self, x):
            return self.block(x) + (x if self.shortcut is None else self.shortcut(x))

    def block(c, w, stride):
        body = nn.Sequential(nn.Conv2d(c, w, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                             nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        short = (None if stride == 1 and c == w else
                 nn.Sequential(nn.Conv2d(c, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w)))
        return Residual(body, short)
    make = {"conv": lambda a: nn.Conv2d(a[0], a[1], a[2], padding=a[3], bias=a[4]), "bn": nn.BatchNorm2d,
            "relu": lambda *_: nn.ReLU(), "maxpool": nn.MaxPool2d, "flatten": lambda *_: nn.Flatten(),
            "linear": lambda a: nn.Linear(*a), "dropout": nn.Dropout, "block": lambda a: block(*a),
            "gap": lambda *_: nn.AdaptiveAvgPool2d(1)}
    return nn.Sequential(*[make[kind](*args) for kind, *args in _spec(name, size, classes, batchnorm, dropout)])
