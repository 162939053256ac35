// The fused MLP (see mlp.h): the layer-by-layer training step, moved into one C++ loop.
#include "plan/mlp.h"
#include <algorithm>
#include <cstring>
#include <new>
#include <vector>
#include "kernels/kernels.h"

namespace fastnn {
namespace {

template <class T>
void act_forward(const MlpLayer& l, T* a, const T* z, idx n) {
  switch (l.act) {
    case MlpAct::ReLU: relu_forward(a, z, n); break;
    case MlpAct::Sigmoid: sigmoid_forward(a, z, n); break;
    case MlpAct::Tanh: tanh_forward(a, z, n); break;
    case MlpAct::GELU: gelu_forward(a, z, n); break;
    case MlpAct::LeakyReLU: leaky_relu_forward(a, z, (T)l.slope, n); break;
    case MlpAct::None: break;
  }
}

// dz = da ⊙ act'(·), from z (ReLU, LeakyReLU, GELU) or a (sigmoid, tanh), as the layers do.
template <class T>
void act_backward(const MlpLayer& l, T* dz, const T* da, const T* z, const T* a, idx n) {
  switch (l.act) {
    case MlpAct::ReLU: relu_backward(dz, da, z, n); break;
    case MlpAct::Sigmoid: sigmoid_backward(dz, da, a, n); break;
    case MlpAct::Tanh: tanh_backward(dz, da, a, n); break;
    case MlpAct::GELU: gelu_backward(dz, da, z, n); break;
    case MlpAct::LeakyReLU: leaky_relu_backward(dz, da, z, (T)l.slope, n); break;
    case MlpAct::None: std::memcpy(dz, da, sizeof(T) * (size_t)n); break;
  }
}

// std::vector storage on 64-byte boundaries: the GEMMs store whole 64-byte vectors, and an
// output that starts mid-line makes each row store straddle two cache lines (measured:
// 100x784·(128x784)ᵀ into a 16-byte-aligned C ran 8-20% slower on 2 threads).
template <class T>
struct CacheLineAlloc {
  using value_type = T;
  CacheLineAlloc() = default;
  template <class U> CacheLineAlloc(const CacheLineAlloc<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <class U> bool operator==(const CacheLineAlloc<U>&) const { return true; }
  template <class U> bool operator!=(const CacheLineAlloc<U>&) const { return false; }
};
template <class T>
using Buf = std::vector<T, CacheLineAlloc<T>>;

// Per-layer buffers for `rows` samples: z (pre-activation), a (post-activation; the same
// memory as z when there is no activation) and, in training, dropped: the input of layer l
// after its Dropout (layer l−1's output times the mask; layer 0's dropout works on xb).
template <class T>
struct Work {
  std::vector<Buf<T>> z, a, dz, dropped;
  Buf<T> xb, yb, da, dy;
  std::vector<std::int64_t> lb;

  void size(const MlpLayer* layers, int L, idx rows, bool training = false) {
    z.resize(L);
    a.resize(L);
    dz.resize(L);
    dropped.resize(L);
    idx widest = 0;
    for (int l = 0; l < L; ++l) {
      const size_t n = (size_t)(rows * layers[l].out);
      if (z[l].size() < n) z[l].resize(n);
      if (layers[l].act != MlpAct::None && a[l].size() < n) a[l].resize(n);
      if (dz[l].size() < n) dz[l].resize(n);
      const size_t nd = (size_t)(rows * layers[l].in);
      if (training && l > 0 && layers[l].drop > 0 && dropped[l].size() < nd) dropped[l].resize(nd);
      widest = std::max(widest, layers[l].in);
    }
    if (da.size() < (size_t)(rows * widest)) da.resize((size_t)(rows * widest));
    const size_t n_out = (size_t)(rows * layers[L - 1].out);
    if (training && layers[L - 1].act != MlpAct::None && dy.size() < n_out) dy.resize(n_out);
  }
  T* out(const MlpLayer* layers, int l) { return layers[l].act == MlpAct::None ? z[l].data() : a[l].data(); }
};

// The network on rows of x; returns its output (in w). In training (u not null), each layer
// l > 0 with drop > 0 reads its input through the mask given by the next rows × in uniforms
// of *u, which advances past them (layer 0's dropout is the caller's, on x itself). With
// check_finite, returns nullptr and
// sets *bad to the flat index of x's first NaN or infinity if it has one. The first layer's
// pre-activation is checked instead of x itself, which is 784/128 times smaller for
// 784-128-...: a NaN or infinity in a row of x makes every value of that row of x·Wᵀ + b a
// NaN or infinity (NaN·w is NaN, ±inf·w is ±inf or NaN), so x is scanned only when the check
// fails, to tell a bad input from a finite one whose product overflowed.
template <class T>
const T* forward(Work<T>& w, const T* x, idx rows, const T* params, const MlpLayer* layers,
                 int L, bool check_finite = false, idx* bad = nullptr, const T** u = nullptr) {
  const T* in = x;
  for (int l = 0; l < L; ++l) {
    const MlpLayer& ly = layers[l];
    if (u && l > 0 && ly.drop > 0) {
      dropout_apply(w.dropped[l].data(), in, *u, ly.drop, rows * ly.in);
      *u += rows * ly.in;
      in = w.dropped[l].data();
    }
    linear_forward(w.z[l].data(), in, params + ly.w_off, ly.b_off >= 0 ? params + ly.b_off : nullptr,
                   rows, ly.in, ly.out);
    if (l == 0 && check_finite && (ly.out == 0 || first_nonfinite(w.z[0].data(), rows * ly.out) >= 0) &&
        (*bad = first_nonfinite(x, rows * ly.in)) >= 0)
      return nullptr;
    act_forward(ly, w.a[l].data(), w.z[l].data(), rows * ly.out);
    in = w.out(layers, l);
  }
  return in;
}

}  // namespace

template <class T>
idx mlp_forward(T* out, const T* x, idx N, const T* params, const MlpLayer* layers, int L,
                bool check_finite) {
  thread_local Work<T> w;  // reused: inference at batch 1 allocates nothing after the first call
  w.size(layers, L, N);
  idx bad = -1;
  const T* y = forward(w, x, N, params, layers, L, check_finite, &bad);
  if (y) std::memcpy(out, y, sizeof(T) * (size_t)(N * layers[L - 1].out));
  return bad;
}

template <class T>
void mlp_train_batches(T* params, T* grads, idx n_params, const MlpLayer* layers, int L,
                       const T* x, const void* targets, idx N, const std::int64_t* order, idx B,
                       idx first_batch, idx n_batches, MlpLoss loss, const MlpOptimizer& opt,
                       const T* dropout_u, double* losses, std::int64_t* correct) {
  thread_local Work<T> w;
  w.size(layers, L, B, /*training=*/true);
  const idx C0 = layers[0].in, OC = layers[L - 1].out;
  if (w.xb.size() < (size_t)(B * C0)) w.xb.resize((size_t)(B * C0));
  if (loss == MlpLoss::CrossEntropy) w.lb.resize((size_t)B);
  else if (w.yb.size() < (size_t)(B * OC)) w.yb.resize((size_t)(B * OC));
  long step = opt.step;

  // Gathering rows of a shuffled dataset waits on DRAM for each one (measured: 14% of an
  // epoch on Fashion-MNIST); asking for the row kAhead places ahead while copying this one
  // keeps several rows in flight. Touches nothing past the data.
  constexpr idx kAhead = 6;
  auto prefetch_row = [&](idx r) {
    const T* row = x + order[r] * C0;
    for (idx k = 0; k < C0; k += 64 / (idx)sizeof(T)) __builtin_prefetch(row + k, 0, 3);
  };
  for (idx b = first_batch; b < first_batch + n_batches; ++b) {
    const idx r0 = b * B, rows = std::min(N, r0 + B) - r0;
    // gather the batch (fit's X[idx], y[idx]); threads copy even shares of the rows (at least
    // 8 each), each with its own requests in flight (measured, 2 threads: chunks of 32 rows
    // left batch 32 to one thread and split batch 100 64/36; even shares took the gather from
    // 29 to 18 ms per epoch at batch 32, 19 to 16 ms at batch 100). A copy sums nothing, so
    // the split cannot change a result. (w is thread_local: the workers get its buffers as
    // plain pointers.)
    T* const xb = w.xb.data();
    T* const yb = w.yb.data();
    std::int64_t* const lb = w.lb.data();
    const idx share = std::max<idx>(8, (rows + num_threads() - 1) / num_threads());
    parallel_chunks(rows, share, [&](idx i0, idx i1) {
      for (idx i = i0; i < std::min(i0 + kAhead, i1); ++i) prefetch_row(r0 + i);
      for (idx i = i0; i < i1; ++i) {
        if (i + kAhead < i1) prefetch_row(r0 + i + kAhead);
        const idx src = order[r0 + i];
        std::memcpy(xb + i * C0, x + src * C0, sizeof(T) * (size_t)C0);
        if (loss == MlpLoss::CrossEntropy) lb[i] = static_cast<const std::int64_t*>(targets)[src];
        else std::memcpy(yb + i * OC, static_cast<const T*>(targets) + src * OC, sizeof(T) * (size_t)OC);
      }
    });
    // forward (dropout as the layers draw it: this batch's uniforms, first layer first) and
    // loss (the loss kernel writes ∂loss/∂output into dz of the last layer, or into dy when
    // an activation follows it, whose backward then gives dz)
    const T* u = dropout_u;
    if (layers[0].drop > 0) {
      dropout_apply(xb, xb, u, layers[0].drop, rows * C0);
      u += rows * C0;
    }
    const T* y = forward(w, w.xb.data(), rows, params, layers, L, false, nullptr, dropout_u ? &u : nullptr);
    const T* const next_u = u;
    const MlpLayer& last = layers[L - 1];
    T* dy = last.act == MlpAct::None ? w.dz[L - 1].data() : w.dy.data();
    if (loss == MlpLoss::CrossEntropy) {
      losses[b - first_batch] = cross_entropy_forward(dy, y, w.lb.data(), rows, OC);
      std::int64_t hits = 0;
      for (idx i = 0; i < rows; ++i) {
        const T* r = y + i * OC;
        hits += (std::int64_t)(std::max_element(r, r + OC) - r) == w.lb[(size_t)i];
      }
      correct[b - first_batch] = hits;
    } else if (loss == MlpLoss::BceWithLogits || loss == MlpLoss::Bce) {
      const bool logits = loss == MlpLoss::BceWithLogits;
      const T* t = w.yb.data();
      losses[b - first_batch] = logits ? bce_with_logits_forward(dy, y, t, rows * OC) : bce_forward(dy, y, t, rows * OC);
      const T threshold = logits ? T(0) : T(0.5);
      std::int64_t hits = 0;
      for (idx i = 0; i < rows * OC; ++i) hits += (y[i] > threshold) == (t[i] > T(0.5));
      correct[b - first_batch] = hits;
    } else {
      losses[b - first_batch] = mse_forward(dy, y, w.yb.data(), rows * OC, loss == MlpLoss::MseSum);
      correct[b - first_batch] = 0;
    }
    if (last.act != MlpAct::None)
      act_backward(last, w.dz[L - 1].data(), dy, w.z[L - 1].data(), w.a[L - 1].data(), rows * OC);
    // zero_grad, then backward, last layer first. Each step's backward sets every weight and
    // bias gradient (= instead of += onto zeros: the same values, without reading the zeros
    // back or the optimizer writing them; measured on 2 threads, epoch at batch 32 282 ->
    // 264 ms, at batch 100 190 -> 183 ms). Whatever no layer writes stays zero from the fill.
    if (b == first_batch) std::fill(grads, grads + n_params, T(0));
    // A masked layer's uniforms are the last ones its forward took: walk u back down.
    for (int l = L - 1; l >= 0; --l) {
      const MlpLayer& ly = layers[l];
      const bool masked = l > 0 && ly.drop > 0;
      const T* in = l == 0 ? w.xb.data() : masked ? w.dropped[l].data() : w.out(layers, l - 1);
      linear_backward(l > 0 ? w.da.data() : nullptr, grads + ly.w_off,
                      ly.b_off >= 0 ? grads + ly.b_off : nullptr, w.dz[l].data(), in,
                      params + ly.w_off, rows, ly.in, ly.out, /*overwrite=*/true);
      if (masked) {
        u -= rows * ly.in;
        dropout_apply(w.da.data(), w.da.data(), u, ly.drop, rows * ly.in);
      }
      if (l > 0) act_backward(layers[l - 1], w.dz[l - 1].data(), w.da.data(), w.z[l - 1].data(),
                              w.out(layers, l - 1), rows * ly.in);
    }
    dropout_u = next_u;
    // optimizer step over the flat buffers; the gradients stay in place, as the layer path
    // leaves them after its last step
    T* const sa = static_cast<T*>(opt.state_a);
    T* const sb = static_cast<T*>(opt.state_b);
    if (opt.kind == MlpOpt::SGD)
      sgd_step(params, grads, sa, n_params, opt.lr, opt.momentum, opt.dampening, opt.nesterov,
               opt.weight_decay, step == 0);
    else if (opt.kind == MlpOpt::RMSprop)
      rmsprop_step(params, grads, sa, sb, n_params, opt.lr, opt.alpha, opt.eps, opt.weight_decay,
                   opt.momentum);
    else
      adam_step(params, grads, sa, sb, n_params, step + 1, opt.lr, opt.beta1, opt.beta2, opt.eps,
                opt.weight_decay, opt.kind == MlpOpt::AdamW);
    ++step;
  }
}

#define FASTNN_INSTANTIATE(T)                                                                   \
  template idx mlp_forward<T>(T*, const T*, idx, const T*, const MlpLayer*, int, bool);        \
  template void mlp_train_batches<T>(T*, T*, idx, const MlpLayer*, int, const T*, const void*,  \
                                     idx, const std::int64_t*, idx, idx, idx, MlpLoss,          \
                                     const MlpOptimizer&, const T*, double*, std::int64_t*);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
