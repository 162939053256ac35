"""fastnn: fast neural networks on CPUs, with a readable NumPy twin of every kernel.

    import fastnn as fnn
    fnn.build_info()          # version, compiler, OpenMP, SIMD path, threads, backend
"""
from fastnn import _core, data, datasets, init
from fastnn.backends import (
    get_backend,
    get_num_threads,
    set_backend,
    set_num_threads,
    use_backend,
)
from fastnn.callbacks import Callback, EarlyStopping, LearningRateScheduler, ModelCheckpoint, TerminateOnNaN
from fastnn.gradcheck import GradcheckError, gradcheck
from fastnn.layers import (
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Identity,
    Layer,
    LeakyReLU,
    Linear,
    MaxPool2d,
    ReLU,
    Residual,
    Sigmoid,
    Softmax,
    Step,
    Tanh,
)
from fastnn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from fastnn.model import Model, Sequential
from fastnn.onnx_export import export_onnx
from fastnn.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    LinearLR,
    Optimizer,
    ReduceLROnPlateau,
    RMSprop,
    StepLR,
    clip_grad_norm_,
)
from fastnn.parameter import Parameter
from fastnn.perceptron import ConvergenceWarning, Perceptron
from fastnn.random import manual_seed
from fastnn.serialization import FormatError, load, read_safetensors, save
from fastnn.training import History

__version__ = _core.__version__


def build_info() -> dict:
    """How this fastnn was built and what it runs: version, compiler, OpenMP on/off, the SIMD
    path in use (and those available on this CPU), the thread count and the backend.

    Example:
        >>> sorted(fnn.build_info())[:3]
        ['backend', 'compiler', 'num_threads']
    """
    info = dict(_core.build_info())
    info["simd"] = _core.simd_path()
    info["simd_available"] = list(_core.simd_available())
    info["num_threads"] = get_num_threads()
    info["backend"] = get_backend()
    return info


__all__ = [
    "__version__", "build_info", "get_backend", "set_backend", "use_backend",
    "get_num_threads", "set_num_threads", "manual_seed", "init", "Parameter",
    "Layer", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Step",
    "Dropout", "Flatten", "Identity", "Residual", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "Model", "Sequential",
    "Loss", "MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss", "BCELoss",
    "Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "StepLR", "CosineAnnealingLR", "LinearLR", "ReduceLROnPlateau",
    "clip_grad_norm_",
    "Callback", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN", "LearningRateScheduler", "History",
    "save", "load", "read_safetensors", "export_onnx", "FormatError", "gradcheck", "GradcheckError", "Perceptron",
    "ConvergenceWarning", "data", "datasets",
]
