"""Layers (fastnn.layers): each a forward and a backward that call the backend's kernels."""
from fastnn.layers.activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Step, Tanh
from fastnn.layers.base import Layer
from fastnn.layers.linear import Linear
from fastnn.layers.sequential import Sequential, Summary
from fastnn.layers.shape import Dropout, Flatten

LAYERS = {cls.__name__: cls for cls in (Linear, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Softmax, Step,
                                        Dropout, Flatten, Sequential)}



def from_config(kind: str, config: dict):
    """Build a layer (or a Sequential of them) from its type name and get_config() dict."""
    if kind == "Sequential":
        return Sequential([from_config(s["type"], s.get("config", {})) for s in config["layers"]])
    return LAYERS[kind](**config)


def config_with_dtype(kind: str, config: dict, dtype: str) -> dict:
    """A copy of a get_config() dict with every layer's dtype replaced (e.g. "float64")."""
    if kind == "Sequential":
        return {"layers": [{"type": s["type"], "config": config_with_dtype(s["type"], s["config"], dtype)}
                           for s in config["layers"]]}
    return {**config, "dtype": dtype} if "dtype" in config else dict(config)


__all__ = ["from_config", "config_with_dtype", "Layer", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Step",
           "Dropout", "Flatten", "Sequential", "Summary", "LAYERS"]
