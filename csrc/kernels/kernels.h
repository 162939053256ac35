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

// ---- convolution, pooling and batch normalization over NCHW images (conv.cpp, pool.cpp,
// batchnorm.cpp). The bindings compute and check the geometry.

// x (N, C, H, W), weight (OC, C/G, KH, KW), out (N, OC, OH, OW): stride SH×SW, dilation
// DH×DW, PH rows of zeros above (PW columns left of) the image, and as many below (right) as
// OH (OW) needs; G groups (C and OC both split in G).
struct Conv2d {
  idx N, C, H, W, OC, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW;
};
// out = act(conv(x, weight) + bias (OC)) [bias may be null; act None or ReLU]
template <class T>
void conv2d_forward(T* out, const T* x, const T* weight, const T* bias, const Conv2d& s, Act act);
// The gradient at a convolution's output written where conv2d_backward reads it, instead of
// read from dout: the plan's conv2d+maxpool2d backward scatters the pool's gradient straight
// there (no dense copy made and then copied again into the kernels' layout).
template <class T>
struct ConvGradSource {
  virtual ~ConvGradSource() = default;
  // Sample n's channels o0 .. o0 + oc (n counts from the call's first sample): channel o's OH
  // rows of OW values at g + (o − o0)·ld + r·row.
  virtual void write(idx n, idx o0, idx oc, T* g, idx ld, idx row) const = 0;
  // The number of nonzero values in samples n0 .. n0 + nn's gradient, exactly as write() makes
  // it (a NaN counts): it chooses the kernels, and Winograd's input gradient has bits of its own.
  virtual idx nonzeros(idx n0, idx nn) const = 0;
};
// dx (N,C,H,W) written [may be null]; dweight (OC,C/G,KH,KW) and dbias (OC) [may be null]
// added (accumulate) or written. The weight gradient is summed per chunk of kConvChunk
// samples, then the chunks in order (a caller running it chunk by chunk gets the same bits).
// With act ReLU, dout is the gradient at the ReLU's output y (forward's out), and is
// multiplied by relu_grad(y) first. With src, the gradient at the output comes from it (dout
// and y unused, act None).
constexpr idx kConvChunk = 8;
template <class T>
void conv2d_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const Conv2d& s,
                     bool accumulate, Act act, const T* y, const ConvGradSource<T>* src = nullptr);
// Testing knob: the weight gradient takes the sparse kernel in the chunks where at most this
// fraction of dout is nonzero (default 0.5; < 0: never, 1: whenever it can). Returns the old
// value. Either way the same bits: the tests compare the two.
double set_conv_sparse_max_density(double d);
// Whether float 3×3 stride-1 convolutions take Winograd F(2×2, 3×3) where the AVX-512 path
// allows (default on; tests switch it off to reach the direct kernels); returns the old value.
bool set_conv_winograd(bool on);
// Whether convolutions of one input channel per group take the plane kernel on the vector
// paths (default on; the same bits as the direct kernels, which the tests compare it with);
// returns the old value.
bool set_conv_plane(bool on);
// Whether float strided convolutions take the vector kernels over the input split by stride
// phase on the vector paths (default on; else im2col and the GEMM, other bits); returns the
// old value.
bool set_conv_phase(bool on);

// x (N, C, H, W) -> out (N, C, OH, OW), a KH×KW window every SH×SW, PH×PW of padding (which
// max pooling never picks and average pooling counts as zeros: PyTorch's count_include_pad).
struct Pool2d {
  idx N, C, H, W, KH, KW, SH, SW, PH, PW, OH, OW;
};
// argmax (N, C, OH, OW): the window's largest value's index ih·W + iw in its plane (the first
// of equal maxima; a NaN wins, the last one, as PyTorch has it).
template <class T>
void maxpool2d_forward(T* out, std::int32_t* argmax, const T* x, const Pool2d& s);
// dx written: zero, plus each dout at its argmax
template <class T>
void maxpool2d_backward(T* dx, const T* dout, const std::int32_t* argmax, const Pool2d& s);
// maxpool2d_backward of dout · relu_grad(out) (out the pool's output; null: of dout) into
// planes ld apart with rows `row` apart (W values each; what lies between is left alone): a
// ReLU before the pool backpropagated with it in one pass, written where the convolution
// before them reads it (the plan's conv2d+relu+maxpool2d, ConvGradSource); the same values as
// relu_backward on the pooled gradient then maxpool2d_backward.
template <class T>
void maxpool2d_relu_backward(T* dx, idx ld, idx row, const T* dout, const T* out, const std::int32_t* argmax,
                             const Pool2d& s);
// conv2d_forward into y (N, OC, OH, OW), then maxpool2d_forward of y (p: C = OC, H × W =
// OH × OW) into out and argmax: the plan's conv2d+maxpool2d op, with the two calls' bits. With
// fewer samples than threads, each thread pools the channels it has just convolved. Under
// Winograd with a 2 × 2, stride-2 pool, each tile is pooled as it is made, and the plane
// kernel (one input channel per group) pools each sample's planes from a buffer of its own:
// neither writes y (the caller's scratch).
template <class T>
void conv2d_maxpool_forward(T* out, std::int32_t* argmax, T* y, const T* x, const T* weight, const T* bias,
                            const Conv2d& s, Act act, const Pool2d& p);
template <class T>
void avgpool2d_forward(T* out, const T* x, const Pool2d& s);
template <class T>
void avgpool2d_backward(T* dx, const T* dout, const Pool2d& s);

// Batch normalization over x (N, C, L): L values per sample and channel (H·W of an image, 1
// for BatchNorm1d on (N, C)). mean and var are per channel (C).
// mean, var = the batch's statistics of each channel (var biased, as normalization uses).
// In two steps, so that an op can take a row's moments while the row is still in cache (the
// plan's convolution before a BatchNorm, plan/ops.cpp): batchnorm_row_moments writes three
// doubles per row of L values (its sum s, and about a = T(s / L) its Σ (x − a) and
// Σ (x − a)²); batchnorm_stats_of_rows combines every channel's rows in order of n, the row of
// sample n and channel c at moments + 3·(n·C + c). batchnorm_stats is the two, the same bits.
template <class T>
void batchnorm_stats(T* mean, T* var, const T* x, idx N, idx C, idx L);
template <class T>
void batchnorm_row_moments(double* moments, const T* x, idx rows, idx L);
template <class T>
void batchnorm_stats_of_rows(T* mean, T* var, const double* moments, idx N, idx C, idx L);
// out = (x − mean) · invstd · gamma + beta with invstd = 1 / sqrt(var + eps): the batch's
// statistics in training, the running ones in eval mode; with relu, ReLU's output of it
template <class T>
void batchnorm_forward(T* out, const T* x, const T* mean, const T* var, const T* gamma, const T* beta, idx N,
                       idx C, idx L, double eps, bool relu = false);
// batchnorm_forward (relu: with ReLU) over one sample's planes, then the max pool s over them
// (s.N = 1, s.C planes of L = s.H·s.W values; mean .. beta from the planes' first channel): out
// and argmax as maxpool2d_forward's. buf: room for s.C·L values, the normalized planes. In float
// on a vector path, a 2×2 window of stride 2 without padding normalizes as it loads and leaves
// buf alone (the same bits).
template <class T>
void batchnorm_maxpool2d_forward(T* out, std::int32_t* argmax, T* buf, const T* x, const T* mean, const T* var,
                                 const T* gamma, const T* beta, double eps, bool relu, const Pool2d& s);
// dx written; dgamma, dbeta added (accumulate) or written. batch_stats: mean and var were
// this batch's (training), so they too depend on x; else they are constants (eval).
template <class T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dout, const T* x, const T* mean, const T* var,
                        const T* gamma, idx N, idx C, idx L, double eps, bool batch_stats, bool accumulate);
// batchnorm_backward's three pieces, for an op that runs BatchNorm → ReLU (→ max pool) fused
// and makes dout chunk by chunk of samples. With relu, the gradient at the output is
// dout·relu_grad(y), y recomputed from x as batchnorm_forward computes it (gamma, beta read
// for that only); else dout. Row sums: per sample n and channel c, Σ g and Σ g·x̂ over the
// row's L values, at sg[n·C + c] and sgx[n·C + c] (the rows of a chunk of samples: pointers
// and N of the chunk). Channel grads: every channel's rows added in order of n (as
// batchnorm_backward sums them): dbeta, dgamma (null: not made) and the means mg, mgx (C
// each) that batchnorm_dx reads.
template <class T>
void batchnorm_row_sums(double* sg, double* sgx, const T* dout, const T* x, const T* mean, const T* var,
                        const T* gamma, const T* beta, idx N, idx C, idx L, double eps, bool relu);
template <class T>
void batchnorm_channel_grads(T* dgamma, T* dbeta, T* mg, T* mgx, const double* sg, const double* sgx, idx N, idx C,
                             idx L, bool accumulate);
template <class T>
void batchnorm_dx(T* dx, const T* dout, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                  const T* mg, const T* mgx, idx N, idx C, idx L, double eps, bool batch_stats, bool relu);
// running = (1 − momentum)·running + momentum·batch, the variance unbiased (× count/(count − 1))
template <class T>
void batchnorm_update(T* running_mean, T* running_var, const T* mean, const T* var, idx C, idx count,
                      double momentum);

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
// out = a + b elementwise (a residual block's sum; in place allowed); with relu_after,
// relu(a + b) (the ReLU after a block, fused into the plan's add op).
template <class T> void add_forward(T* out, const T* a, const T* b, idx n, bool relu_after = false);
// d0 and d1 (either may be null) = dout · relu_grad(y) (y: relu's output, whose mask is its
// input's), in one pass: the plan's add+relu backward, whose gradient goes to both inputs.
template <class T> void relu_backward_to_two(T* d0, T* d1, const T* dout, const T* y, idx n);
// d0 and d1 (either may be null) = src, on all threads.
template <class T> void copy_to_two(T* d0, T* d1, const T* src, idx n);
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
// st moved `delta` outputs ahead, a kept half-output dropped: data-parallel training gives each
// shard of a batch its own stretch of the stream, whichever process computes it.
void pcg64_jump(Pcg64State& st, std::uint64_t delta);

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
