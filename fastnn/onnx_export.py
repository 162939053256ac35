"""fnn.export_onnx(model, path, input_shape): the model as an ONNX graph (the optional extra
[onnx]: the `onnx` package builds and checks it) that runtimes such as onnxruntime run to
predict()'s outputs.

The graph has one input "input" of shape (batch, *input_shape), the batch dimension dynamic,
and one output "output"; weights are initializers of the model's dtype. Each fastnn layer maps
to the ONNX operators that compute the same function in eval mode:

    Linear → Gemm (transB=1; MatMul + Add for inputs of more than 2 dimensions)
    ReLU, Sigmoid, Tanh → themselves; LeakyReLU → LeakyRelu(alpha); GELU → Gelu (erf form)
    Softmax(dim) → Softmax(axis); Step(θ) → GreaterOrEqual + Cast
    Dropout, Identity → Identity; Flatten → Flatten(axis=1)
    Conv2d → Conv; MaxPool2d → MaxPool; AvgPool2d → AveragePool(count_include_pad=1);
    AdaptiveAvgPool2d(1) → GlobalAveragePool; BatchNorm1d/2d → BatchNormalization (running
    statistics); Residual → its paths, then Add; Sequential → its layers in order

A layer of any other class (a user's own) raises TypeError naming it. Opset 21.

A float64 model gives a float64 graph, which is valid ONNX, but onnxruntime's CPU provider
has no float64 Conv, LeakyRelu or Erf (GELU) kernels (checked with onnxruntime 1.32): for it,
export a float32 model of such layers.
"""
from __future__ import annotations

import os

import numpy as np

OPSET = 21


class _Graph:
    """Nodes and initializers as they are added; names are made unique here."""

    def __init__(self, helper, numpy_helper, dtype):
        self.helper, self.numpy_helper, self.dtype = helper, numpy_helper, dtype
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base: str, value) -> str:
        name = self.name(base)
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, kind: str, inputs: list, **attrs) -> str:
        out = self.name(kind.lower())
        self.nodes.append(self.helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out


def _emit(g: _Graph, layer, x: str, ndim: int) -> tuple[str, int]:
    """Add `layer`'s nodes reading x (a tensor of `ndim` dimensions, batch included); returns
    the output's name and its number of dimensions."""
    from fastnn import layers as fnn  # the layer classes (importing fastnn itself would be a cycle)
    from fastnn.model import Sequential
    kind = type(layer)
    if kind is Sequential:
        for sub in layer.layers:
            x, ndim = _emit(g, sub, x, ndim)
        return x, ndim
    if kind is fnn.Linear:
        w = g.const("weight", layer.weight.data)
        bias = [] if layer.bias is None else [g.const("bias", layer.bias.data)]
        if ndim == 2:
            return g.op("Gemm", [x, w, *bias], transB=1), 2
        y = g.op("MatMul", [x, g.const("weight_t", layer.weight.data.T)])
        return (g.op("Add", [y, bias[0]]) if bias else y), ndim
    simple = {fnn.ReLU: "Relu", fnn.Sigmoid: "Sigmoid", fnn.Tanh: "Tanh", fnn.Dropout: "Identity",
              fnn.Identity: "Identity"}
    if kind in simple:
        return g.op(simple[kind], [x]), ndim
    if kind is fnn.LeakyReLU:
        return g.op("LeakyRelu", [x], alpha=float(layer.negative_slope)), ndim
    if kind is fnn.GELU:
        return g.op("Gelu", [x]), ndim
    if kind is fnn.Softmax:
        return g.op("Softmax", [x], axis=int(layer.dim)), ndim
    if kind is fnn.Step:
        ge = g.op("GreaterOrEqual", [x, g.const("threshold", np.array(layer.threshold, g.dtype))])
        return g.op("Cast", [ge], to=g.helper.np_dtype_to_tensor_dtype(np.dtype(g.dtype))), ndim
    if kind is fnn.Flatten:
        return g.op("Flatten", [x], axis=1), 2
    if kind is fnn.Conv2d:
        pt, pb, pl, pr = layer._pads
        ins = [x, g.const("weight", layer.weight.data)]
        if layer.bias is not None:
            ins.append(g.const("bias", layer.bias.data))
        return g.op("Conv", ins, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                    dilations=list(layer.dilation), pads=[pt, pl, pb, pr], group=int(layer.groups)), 4
    if kind in (fnn.MaxPool2d, fnn.AvgPool2d):
        (ph, pw) = layer.padding
        attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=[ph, pw, ph, pw])
        if kind is fnn.AvgPool2d:
            return g.op("AveragePool", [x], count_include_pad=1, **attrs), 4
        return g.op("MaxPool", [x], **attrs), 4
    if kind is fnn.AdaptiveAvgPool2d:
        return g.op("GlobalAveragePool", [x]), 4
    if kind in (fnn.BatchNorm1d, fnn.BatchNorm2d):
        ins = [x] + [g.const(n, a) for n, a in (("scale", layer.weight.data), ("bias", layer.bias.data),
                                                 ("mean", layer.running_mean), ("var", layer.running_var))]
        return g.op("BatchNormalization", ins, epsilon=float(layer.eps)), ndim
    if kind is fnn.Residual:
        a, na = _emit(g, layer.block, x, ndim)
        b, _ = (x, ndim) if layer.shortcut is None else _emit(g, layer.shortcut, x, ndim)
        return g.op("Add", [a, b]), na
    raise TypeError(f"export_onnx: {type(layer).__module__}.{type(layer).__qualname__} has no ONNX form; fastnn "
                    "exports Linear, the activations, Softmax, Dropout, Flatten, Conv2d, the poolings, BatchNorm "
                    "and Residual")


def export_onnx(model, path, input_shape) -> None:
    """Write `model` as an ONNX graph to `path` for inputs of shape (batch, *input_shape); a
    leading None in input_shape stands for the batch. The graph computes predict(): eval mode
    (Dropout off, BatchNorm's running statistics), in the model's dtype (onnxruntime runs
    float64 graphs without Conv, LeakyReLU and GELU only). Needs the [onnx] extra.

    Example:
        >>> fnn.export_onnx(model, "mnist.onnx", input_shape=(784,))
        >>> import onnxruntime as ort
        >>> out = ort.InferenceSession("mnist.onnx").run(None, {"input": X[:5]})[0]
        >>> np.allclose(out, model.predict(X[:5]), atol=1e-5)
        True
    """
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ImportError("export_onnx needs the onnx package: pip install 'fastnn-cpu[onnx]'") from None
    from fastnn.layers.base import Layer
    if not isinstance(model, Layer):
        raise TypeError(f"export_onnx expects a fastnn model or layer, got {type(model).__name__}")
    shape = list(input_shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    if not shape or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape):
        raise ValueError(f"export_onnx: input_shape must be one sample's shape of positive ints (e.g. (784,) or "
                         f"(1, 28, 28)), optionally after None for the batch; got {input_shape!r}")
    shape = [int(d) for d in shape]
    dtype = model.dtype or np.float32
    # the model must take this shape: one sample through it names a mismatch clearly
    was = model.training
    model.eval()
    try:
        want = model.forward(np.zeros((1, *shape), dtype))
    except ValueError as e:
        raise ValueError(f"export_onnx: the model cannot take inputs of shape (batch, {', '.join(map(str, shape))}): "
                         f"{e}") from None
    finally:
        model.train(was)
    g = _Graph(helper, numpy_helper, dtype)
    out, _ = _emit(g, model, "input", 1 + len(shape))
    g.nodes.append(helper.make_node("Identity", [out], ["output"], name="output"))
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = helper.make_graph(
        g.nodes, "fastnn", [helper.make_tensor_value_info("input", elem, ["batch", *shape])],
        [helper.make_tensor_value_info("output", elem, ["batch", *want.shape[1:]])], g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fastnn")
    proto.ir_version = min(proto.ir_version, 10)  # what current runtimes read
    onnx.checker.check_model(proto, full_check=True)
    from fastnn.serialization import atomic_write
    data = proto.SerializeToString()
    atomic_write(os.fspath(path), lambda f: f.write(data))
