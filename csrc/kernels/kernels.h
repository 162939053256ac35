// Every kernel the Python backends call, in llm.c style: <op>_forward / <op>_backward /
// <optimizer>_step; outputs first, then inputs, weights, then sizes. Shape letters:
// N batch, C in-features (or classes), OC out-features, n a flat element count.
// Backward kernels write input gradients (dx) and add into parameter gradients (dweight,
// dbias), or write those too when asked (accumulate = false: the plan's training step, which
// is zero_grad + backward in one). No kernel allocates Python objects or throws; the bindings
// validate every shape before calling in.
#pragma once
#include "core/common.h"
#include "kernels/scalar_ops.h"

namespace fastnn {

// out (N,OC) = x (N,C) · weight (OC,C)ᵀ + bias (OC) [bias may be null]
template <class T>
void linear_forward(T* out, const T* x, const T* weight, const T* bias, idx N, idx C, idx OC);
// dx (N,C) = dout (N,OC) · weight (OC,C)        [dx may be null: first layer]
// dweight (OC,C) += dout (N,OC)ᵀ · x (N,C)       (= without accumulate)
// dbias (OC) += Σ_n dout[n, :]                  [dbias may be null]
template <class T>
void linear_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight,
                     idx N, idx C, idx OC, bool accumulate);

// Elementwise activations over n values. Backward reads x (ReLU, LeakyReLU, GELU) or the
// forward output y (sigmoid, tanh), whichever makes the derivative cheapest.
template <class T> void relu_forward(T* out, const T* x, idx n);
template <class T> void relu_backward(T* dx, const T* dout, const T* x, idx n);
template <class T> void leaky_relu_forward(T* out, const T* x, T slope, idx n);
template <class T> void leaky_relu_backward(T* dx, const T* dout, const T* x, T slope, idx n);
template <class T> void sigmoid_forward(T* out, const T* x, idx n);
template <class T> void sigmoid_backward(T* dx, const T* dout, const T* y, idx n);
template <class T> void tanh_forward(T* out, const T* x, idx n);
template <class T> void tanh_backward(T* dx, const T* dout, const T* y, idx n);
template <class T> void gelu_forward(T* out, const T* x, idx n);
template <class T> void gelu_backward(T* dx, const T* dout, const T* x, idx n);
template <class T> void step_forward(T* out, const T* x, T threshold, idx n);
// Any entry of kActivations (scalar_ops.h) by its enum, with its parameter (ignored by the
// entries without one). activation_backward reads x or y as ActInfo::backward_from_y says;
// it is not defined for entries without a backward (Step).
template <class T> void activation_forward(Act act, T* out, const T* x, T param, idx n);
template <class T> void activation_backward(Act act, T* dx, const T* dout, const T* saved, T param, idx n);
// out = a + b elementwise (a residual block's sum; in place allowed).
template <class T> void add_forward(T* out, const T* a, const T* b, idx n);
// Inverted dropout with its mask given as uniforms u in [0, 1): out = x · [u ≥ p] / (1 − p).
// The same call is the forward (x the input) and the backward (x the gradient, same u).
template <class T> void dropout_apply(T* out, const T* x, const T* u, double p, idx n);
// Softmax over the last axis of an (N, C) array; backward from y: dx = y ⊙ (dout − Σ dout⊙y).
template <class T> void softmax_forward(T* out, const T* x, idx N, idx C);
template <class T> void softmax_backward(T* dx, const T* dout, const T* y, idx N, idx C);

// Losses return the reduced loss (accumulated in double) and, when the gradient pointer is not
// null, write ∂loss/∂input in the same pass. Mean reductions over an empty batch return 0.
// cross_entropy: logits (N,C), targets (N) class indices in [0, C) (checked by the bindings).
template <class T>
double cross_entropy_forward(T* dlogits, const T* logits, const std::int64_t* targets, idx N, idx C);
// mse: pred, target (n); mean (or sum when sum_reduction) of (pred − target)².
template <class T>
double mse_forward(T* dpred, const T* pred, const T* target, idx n, bool sum_reduction);
// bce_with_logits: mean of max(x,0) − x·t + log1p(exp(−|x|)).
template <class T>
double bce_with_logits_forward(T* dlogits, const T* logits, const T* target, idx n);
// bce on probabilities p in [0,1]: mean of −(t·log p + (1−t)·log(1−p)), logs clamped at −100
// as PyTorch does.
template <class T>
double bce_forward(T* dprob, const T* prob, const T* target, idx n);

// Accuracy counts (one definition for fit, evaluate and the plan).
// Rows of logits (N,C) whose first largest value is at the target class; a NaN counts as the
// largest, as np.argmax has it.
template <class T>
std::int64_t argmax_correct(const T* logits, const std::int64_t* targets, idx N, idx C);
// Values on the target's side: (pred > threshold) == (target > 0.5), over n values.
template <class T>
std::int64_t threshold_correct(const T* pred, const T* target, double threshold, idx n);

// n uniforms in [0, 1) from NumPy's PCG64 generator, bitwise what Generator.random(n, dtype)
// returns; st is advanced as NumPy would advance it (random.cpp).
struct Pcg64State {
  std::uint64_t state_hi, state_lo, inc_hi, inc_lo;
  bool has_uint32;
  std::uint32_t uinteger;
};
template <class T>
void pcg64_uniform(T* out, idx n, Pcg64State& st);

// Flat index of the first NaN or ±inf among x[0:n], or -1 (checks.cpp).
template <class T>
idx first_nonfinite(const T* x, idx n);

// Optimizer updates over flat buffers of n values, PyTorch's update rules exactly.
template <class T>
void sgd_step(T* param, const T* grad, T* momentum_buf, idx n, double lr, double momentum,
              double dampening, bool nesterov, double weight_decay, bool first_step);
template <class T>
void adam_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, idx n, long step, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool decoupled);
template <class T>
void rmsprop_step(T* param, const T* grad, T* square_avg, T* momentum_buf, idx n, double lr,
                  double alpha, double eps, double weight_decay, double momentum);

}  // namespace fastnn
