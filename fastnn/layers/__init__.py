"""Layers (fastnn.layers): each a forward and a backward that call the backend's kernels, and a
`lower` that describes it to a compiled plan. Containers that are models (Sequential) live in
fastnn/model.py; the registry of layer types that model files name is LAYERS."""
from fastnn.layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh
from fastnn.layers.base import LAYERS, Layer, build_layer, register
from fastnn.layers.conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from fastnn.layers.linear import Linear
from fastnn.layers.norm import BatchNorm1d, BatchNorm2d
from fastnn.layers.residual import Identity, Residual
from fastnn.layers.shape import Dropout, Flatten

__all__ = ["Layer", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Step",
           "Dropout", "Flatten", "Identity", "Residual", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
           "BatchNorm1d", "BatchNorm2d", "LAYERS", "register", "build_layer"]
