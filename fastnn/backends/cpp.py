"""The C++ backend: the kernels of fastnn._core, re-exported under the names of the NumPy twin.

Nothing happens here: argument checking, dtype selection and GIL release live in
csrc/python/, the math in csrc/kernels/ and csrc/gemm/.
"""
from fastnn._core import (  # noqa: F401
    adam_step,
    add_forward,
    argmax_correct,
    bce_forward,
    bce_with_logits_forward,
    cross_entropy_forward,
    dropout_apply,
    first_nonfinite,
    gelu_backward,
    gelu_forward,
    gemm,
    gemm_reference,
    leaky_relu_backward,
    leaky_relu_forward,
    linear_backward,
    linear_forward,
    mse_forward,
    relu_backward,
    relu_forward,
    rmsprop_step,
    sgd_step,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_forward,
    step_forward,
    tanh_backward,
    tanh_forward,
    threshold_correct,
)
