// The plan's ops (plan.h) and optimizer steps. Each op is what one layer does, calling the same
// kernels in the same order as the layer's forward and backward in fastnn/layers/, so the plan
// and the layers compute the same bits:
//   LinearOp      fastnn/layers/linear.py       linear_forward / linear_backward
//   ActivationOp  fastnn/layers/activations.py  <act>_forward / <act>_backward (scalar_ops.h list;
//                                               and a following MaxPool2d's, fused per chunk)
//   SoftmaxOp     fastnn/layers/activations.py  softmax_forward / softmax_backward
//   DropoutOp     fastnn/layers/shape.py        pcg64_uniform, then dropout_apply both ways
//   AddOp         fastnn/layers/residual.py     add_forward; its gradient goes to both inputs (a
//                                               ReLU after it fused: relu_backward_to_two)
//   BranchOp      fastnn/layers/residual.py     none forward (its slot aliases the input); backward
//                                               hands the path's gradient to the input
//   ConvOp        fastnn/layers/conv.py         conv2d_forward / conv2d_backward (and a following
//                                               MaxPool2d's maxpool2d_*, fused per chunk)
//   PoolOp        fastnn/layers/conv.py         maxpool2d_* (argmax kept) or avgpool2d_*
//   BatchNormOp   fastnn/layers/norm.py         batchnorm_stats, _forward, _update / _backward (or
//                                               its pieces, a following ReLU and MaxPool2d fused)
// (Flatten and eval-mode Dropout are no ops at all: fastnn/plan.py lets them reuse their input's
// slot.)
#include <algorithm>
#include "plan/plan.h"

namespace fastnn {
namespace {

// f(chunk, first sample, samples) over a batch's chunks of kConvChunk samples: chunks to
// threads (one thread inside each) when there are enough of them, else one after another on
// all threads. For the ops that run a max pool fused into them chunk by chunk.
template <class F>
void over_chunks(idx rows, F f) {
  const idx n = (rows + kConvChunk - 1) / kConvChunk;
  auto one = [&](idx c) { f(c, c * kConvChunk, std::min(kConvChunk, rows - c * kConvChunk)); };
  if (n >= num_threads() && num_threads() > 1)
    parallel_items(n, one);
  else
    for (idx c = 0; c < n; ++c) one(c);
}

template <class T>
struct LinearOp : Op<T> {
  const char* name() const override { return "linear"; }
  idx C, OC, lead, w_off, b_off;  // b_off < 0: no bias; lead: rows per sample (x is (..., C))
  void forward(const Batch<T>& b, void*) override {
    linear_forward(b.val[this->out], b.val[this->in[0]], b.params + w_off,
                   b_off >= 0 ? b.params + b_off : nullptr, b.rows * lead, C, OC);
  }
  void backward(const Batch<T>& b, void*, T* const* dst) override {
    linear_backward(dst[0], b.grads + w_off, b_off >= 0 ? b.grads + b_off : nullptr, b.grad[this->out],
                    b.val[this->in[0]], b.params + w_off, b.rows * lead, C, OC, /*accumulate=*/false);
  }
  bool spreads_nonfinite() const override { return true; }
};

// A max pool right after an activation whose backward reads its input (ReLU, LeakyReLU, GELU)
// can run inside it (fuse_pool), as after a convolution: chunk by chunk, the activation's
// output only in a per-thread scratch; per chunk the same elementwise and per-plane kernel
// calls as the two layers make on the batch, so the same bits.
template <class T>
struct ActivationOp : Op<T> {
  const char* name() const override {
    for (const ActInfo& a : kActivations)
      if (a.act == act) return pooled ? (act == Act::ReLU ? "relu+maxpool2d" : "activation+maxpool2d") : a.name;
    return "activation";
  }
  Act act;
  T param;
  bool from_y;
  idx width;
  bool pooled = false;
  Pool2d pool{};
  bool fuse_pool(const Pool2d& p) override {
    if (pooled || from_y || p.C * p.H * p.W != width) return false;
    pooled = true, pool = p;
    return true;
  }
  size_t saved_bytes(idx rows) const override {
    return pooled ? sizeof(std::int32_t) * (size_t)(rows * pool.C * pool.OH * pool.OW) : 0;
  }
  void forward(const Batch<T>& b, void* saved) override {
    if (!pooled) return activation_forward(act, b.val[this->out], b.val[this->in[0]], param, b.rows * width);
    const idx pw = pool.C * pool.OH * pool.OW;
    auto* argmax = static_cast<std::int32_t*>(saved);
    over_chunks(b.rows, [&](idx, idx n0, idx nn) {
      thread_local std::vector<T> y;
      if (y.size() < (size_t)(nn * width)) y.resize((size_t)(nn * width));
      Pool2d pc = pool;
      pc.N = nn;
      activation_forward(act, y.data(), b.val[this->in[0]] + n0 * width, param, nn * width);
      maxpool2d_forward(b.val[this->out] + n0 * pw, argmax + n0 * pw, y.data(), pc);
    });
  }
  void backward(const Batch<T>& b, void* saved, T* const* dst) override {
    if (!pooled)
      return activation_backward(act, dst[0], b.grad[this->out], b.val[from_y ? this->out : this->in[0]], param,
                                 b.rows * width);
    if (!dst[0]) return;  // (an input that needs no gradient)
    const idx pw = pool.C * pool.OH * pool.OW;
    const auto* argmax = static_cast<const std::int32_t*>(saved);
    over_chunks(b.rows, [&](idx, idx n0, idx nn) {
      thread_local std::vector<T> gy;
      if (gy.size() < (size_t)(nn * width)) gy.resize((size_t)(nn * width));
      Pool2d pc = pool;
      pc.N = nn;
      maxpool2d_backward(gy.data(), b.grad[this->out] + n0 * pw, argmax + n0 * pw, pc);
      activation_backward(act, dst[0] + n0 * width, gy.data(), b.val[this->in[0]] + n0 * width, param, nn * width);
    });
  }
};

template <class T>
struct SoftmaxOp : Op<T> {
  const char* name() const override { return "softmax"; }
  idx C, per_row;  // rows of C values, per_row of them per sample
  void forward(const Batch<T>& b, void*) override {
    softmax_forward(b.val[this->out], b.val[this->in[0]], b.rows * per_row, C);
  }
  void backward(const Batch<T>& b, void*, T* const* dst) override {
    softmax_backward(dst[0], b.grad[this->out], b.val[this->out], b.rows * per_row, C);
  }
};

// Draws its uniforms from the plan's generator in forward, as the layer draws them from
// fastnn's, and keeps them for backward.
template <class T>
struct DropoutOp : Op<T> {
  const char* name() const override { return "dropout"; }
  bool draws() const override { return true; }
  double p;
  idx width;
  size_t saved_bytes(idx rows) const override { return sizeof(T) * (size_t)(rows * width); }
  void forward(const Batch<T>& b, void* saved) override {
    T* u = static_cast<T*>(saved);
    pcg64_uniform(u, b.rows * width, *b.rng);
    dropout_apply(b.val[this->out], b.val[this->in[0]], u, p, b.rows * width);
  }
  void backward(const Batch<T>& b, void* saved, T* const* dst) override {
    dropout_apply(dst[0], b.grad[this->out], static_cast<const T*>(saved), p, b.rows * width);
  }
};

template <class T>
struct AddOp : Op<T> {
  const char* name() const override { return relu ? "add+relu" : "add"; }
  idx width;
  bool relu = false;  // the ReLU after a residual block, fused: its mask from the output
  bool fuse(Act a) override {
    if (a != Act::ReLU || relu) return false;
    return relu = true;
  }
  void forward(const Batch<T>& b, void*) override {
    add_forward(b.val[this->out], b.val[this->in[0]], b.val[this->in[1]], b.rows * width, relu);
  }
  void backward(const Batch<T>& b, void*, T* const* dst) override {
    if (relu) relu_backward_to_two(dst[0], dst[1], b.grad[this->out], b.val[this->out], b.rows * width);
    else copy_to_two(dst[0], dst[1], b.grad[this->out], b.rows * width);
  }
};

template <class T>
struct BranchOp : Op<T> {
  const char* name() const override { return "branch"; }
  idx width;
  bool passes_grad() const override { return true; }
  void forward(const Batch<T>&, void*) override {}  // the output slot shows the input's values
  void backward(const Batch<T>& b, void*, T* const* dst) override {
    copy_to_two(dst[0], (T*)nullptr, b.grad[this->out], b.rows * width);
  }
};

// With a max pool fused (fuse_pool), the convolution's output lives only in a per-thread
// scratch of one chunk of kConvChunk samples (the chunks conv2d_backward sums its weight
// gradient over), which stays in cache instead of crossing memory twice each way. The kernels
// are called on each chunk as the layers call them on the batch, so the bits are theirs:
// forward, conv2d_forward then maxpool2d_forward; backward, maxpool2d_backward gives the
// convolution's output gradient, then conv2d_backward per chunk and the chunks' weight
// gradients summed in order, as it sums them. A fused ReLU's mask is applied to the pooled
// gradient, before the pool's backward spreads it: the value at an argmax is relu_grad of the
// pooled value there, and elsewhere the gradient is +0 either way. Only a zero's sign can
// differ from the layers' order (−0 where they have (0 + g)·0 with g < 0), and every result
// is a sum started at +0 (weight, bias and input gradients), so the results are the same bits.
// Linked to the BatchNorm that alone reads its output (training; link_norm, LinkedNorm in
// plan.h), it runs chunk by chunk too: forward, conv2d_forward then the chunk's row moments;
// backward, the BatchNorm's input gradient for the chunk, then conv2d_backward as above.
template <class T>
struct ConvOp : Op<T> {
  const char* name() const override {
    if (pooled) return act == Act::ReLU ? "conv2d+relu+maxpool2d" : "conv2d+maxpool2d";
    if (norm) return "conv2d+bn-stats/dx";  // (the linked BatchNorm's statistics and input gradient)
    return act == Act::ReLU ? "conv2d+relu" : "conv2d";
  }
  Conv2d g;  // N set per batch
  idx w_off, b_off;
  Act act = Act::None;  // ReLU fused, its mask taken from the output in backward
  bool pooled = false;  // a max pool fused: the output slot holds the pool's output
  Pool2d pool{};
  LinkedNorm<T>* norm = nullptr;  // the BatchNorm after it, linked
  std::vector<T> partial;  // per chunk, its weight and bias gradients (backward, by chunks)
  bool link_norm(LinkedNorm<T>* n) override {
    if (act != Act::None || pooled || norm) return false;
    norm = n;
    return true;
  }
  bool fuse(Act a) override {
    if (a != Act::ReLU || act != Act::None || pooled) return false;
    act = a;
    return true;
  }
  bool fuse_pool(const Pool2d& p) override {
    if (pooled || p.C != g.OC || p.H != g.OH || p.W != g.OW) return false;
    pooled = true, pool = p;
    return true;
  }
  size_t saved_bytes(idx rows) const override {
    return pooled ? sizeof(std::int32_t) * (size_t)(rows * pool.C * pool.OH * pool.OW) : 0;
  }
  idx in_width() const { return g.C * g.H * g.W; }
  idx conv_width() const { return g.OC * g.OH * g.OW; }
  idx pool_width() const { return pool.C * pool.OH * pool.OW; }
  void forward(const Batch<T>& b, void* saved) override {
    Conv2d s = g;
    s.N = b.rows;
    const T* bias = b_off >= 0 ? b.params + b_off : nullptr;
    if (norm) {
      double* moments = norm->row_moments(b.rows);
      return over_chunks(b.rows, [&](idx, idx n0, idx nn) {
        Conv2d sc = g;
        sc.N = nn;
        T* y = b.val[this->out] + n0 * conv_width();
        conv2d_forward(y, b.val[this->in[0]] + n0 * in_width(), b.params + w_off, bias, sc, act);
        batchnorm_row_moments(moments + 3 * n0 * g.OC, y, nn * g.OC, g.OH * g.OW);
      });
    }
    if (!pooled) return conv2d_forward(b.val[this->out], b.val[this->in[0]], b.params + w_off, bias, s, act);
    auto* argmax = static_cast<std::int32_t*>(saved);
    over_chunks(b.rows, [&](idx, idx n0, idx nn) {
      thread_local std::vector<T> y;
      if (y.size() < (size_t)(nn * conv_width())) y.resize((size_t)(nn * conv_width()));
      Conv2d sc = g;
      Pool2d pc = pool;
      sc.N = pc.N = nn;
      conv2d_maxpool_forward(b.val[this->out] + n0 * pool_width(), argmax + n0 * pool_width(), y.data(),
                             b.val[this->in[0]] + n0 * in_width(), b.params + w_off, bias, sc, act, pc);
    });
  }
  void backward(const Batch<T>& b, void* saved, T* const* dst) override {
    if (norm)  // the gradient at the output: the BatchNorm's input gradient, made per chunk
      return backward_by_chunks(b, dst, [&](idx n0, idx nn, const Conv2d& sc, T* pw, T* pb, T* dxc, const T* xc) {
        thread_local std::vector<T> gy;
        if (gy.size() < (size_t)(nn * conv_width())) gy.resize((size_t)(nn * conv_width()));
        norm->input_grad(b, n0, nn, gy.data());
        conv2d_backward(dxc, pw, pb, gy.data(), xc, b.params + w_off, sc, /*accumulate=*/false, Act::None, (const T*)nullptr);
      });
    if (!pooled) {
      Conv2d s = g;
      s.N = b.rows;
      return conv2d_backward(dst[0], b.grads + w_off, b_off >= 0 ? b.grads + b_off : nullptr, b.grad[this->out],
                             b.val[this->in[0]], b.params + w_off, s, /*accumulate=*/false, act, b.val[this->out]);
    }
    // the pool's gradient (with ReLU's mask) scattered straight where conv2d_backward reads it
    const auto* argmax = static_cast<const std::int32_t*>(saved);
    backward_by_chunks(b, dst, [&](idx n0, idx, const Conv2d& sc, T* pw, T* pb, T* dxc, const T* xc) {
      const idx at = n0 * pool_width();
      const PoolGrad src(pool, b.grad[this->out] + at, act == Act::ReLU ? b.val[this->out] + at : nullptr, argmax + at);
      conv2d_backward(dxc, pw, pb, (const T*)nullptr, xc, b.params + w_off, sc, /*accumulate=*/false, Act::None,
                      (const T*)nullptr, &src);
    });
  }
  // The gradient at the convolution's output from the fused pool's (ConvGradSource): the pool's
  // backward with ReLU's mask on the pooled gradient (see above) for the channels asked.
  struct PoolGrad : ConvGradSource<T> {
    Pool2d pool;
    const T *gp, *v;  // the pooled gradient and (ReLU fused) the pooled values, from the first sample
    const std::int32_t* argmax;
    PoolGrad(const Pool2d& p, const T* gp_, const T* v_, const std::int32_t* a) : pool(p), gp(gp_), v(v_), argmax(a) {}
    void write(idx n, idx o0, idx oc, T* dst, idx ld, idx row) const override {
      Pool2d pc = pool;
      pc.N = 1, pc.C = oc;
      const idx at = (n * pool.C + o0) * pool.OH * pool.OW;
      maxpool2d_relu_backward(dst, ld, row, gp + at, v ? v + at : nullptr, argmax + at, pc);
    }
    // Windows that do not overlap: each pooled value lands on an input value of its own, so the
    // count is the pooled gradient's with ReLU's mask applied, as write() applies it (a NaN or
    // an infinity times a zero mask is a NaN: counted). Overlapping ones: the written gradient's.
    idx nonzeros(idx n0, idx nn) const override {
      const idx w = pool.C * pool.OH * pool.OW;
      if (pool.SH < pool.KH || pool.SW < pool.KW) {
        thread_local std::vector<T> dense;
        const idx plane = pool.H * pool.W;
        if (dense.size() < (size_t)(pool.C * plane)) dense.resize((size_t)(pool.C * plane));
        idx count = 0;
        for (idx n = n0; n < n0 + nn; ++n) {
          write(n, 0, pool.C, dense.data(), plane, pool.W);
          count += (idx)std::count_if(dense.begin(), dense.begin() + pool.C * plane, [](T x) { return x != T(0); });
        }
        return count;
      }
      idx count = 0;
      for (idx i = n0 * w; i < (n0 + nn) * w; ++i) count += (v ? gp[i] * (v[i] <= T(0) ? T(0) : T(1)) : gp[i]) != T(0);
      return count;
    }
  };
  // conv2d_backward chunk by chunk: chunk(n0, nn, geometry, weight and bias gradient partials,
  // input gradient, input) for samples n0 .. n0 + nn; the chunks' weight gradients summed in
  // order, as conv2d_backward sums them.
  template <class F>
  void backward_by_chunks(const Batch<T>& b, T* const* dst, F chunk) {
    const bool has_bias = b_off >= 0;
    T* dbias = has_bias ? b.grads + b_off : nullptr;
    const idx wsize = g.OC * (g.C / g.G) * g.KH * g.KW, per = wsize + g.OC;
    const idx nchunks = (b.rows + kConvChunk - 1) / kConvChunk;
    if (partial.size() < (size_t)(nchunks * per)) partial.resize((size_t)(nchunks * per));
    over_chunks(b.rows, [&](idx c, idx n0, idx nn) {
      Conv2d sc = g;
      sc.N = nn;
      T* pw = partial.data() + c * per;
      chunk(n0, nn, sc, pw, has_bias ? pw + wsize : nullptr, dst[0] ? dst[0] + n0 * in_width() : nullptr,
            b.val[this->in[0]] + n0 * in_width());
    });
    // the chunks in order, as conv2d_backward sums them (zero for an empty batch)
    const idx total = has_bias ? per : wsize;
    parallel_chunks(total, kElementwiseChunk, [&](idx i0, idx i1) {
      for (idx c = 1; c < nchunks; ++c)  // into chunk 0's partial, chunk by chunk (contiguous)
        for (idx i = i0; i < i1; ++i) partial[(size_t)i] += partial[(size_t)(c * per + i)];
      for (idx i = i0; i < i1; ++i) {
        const T v = nchunks ? partial[(size_t)i] : T(0);
        if (i < wsize) b.grads[w_off + i] = v;
        else dbias[i - wsize] = v;
      }
    });
  }
};

template <class T>
struct PoolOp : Op<T> {
  const char* name() const override { return max ? "maxpool2d" : "avgpool2d"; }
  Pool2d g;
  bool max;
  size_t saved_bytes(idx rows) const override {
    return max ? sizeof(std::int32_t) * (size_t)(rows * g.C * g.OH * g.OW) : 0;
  }
  void forward(const Batch<T>& b, void* saved) override {
    Pool2d s = g;
    s.N = b.rows;
    if (max) maxpool2d_forward(b.val[this->out], static_cast<std::int32_t*>(saved), b.val[this->in[0]], s);
    else avgpool2d_forward(b.val[this->out], b.val[this->in[0]], s);
  }
  void backward(const Batch<T>& b, void* saved, T* const* dst) override {
    Pool2d s = g;
    s.N = b.rows;
    if (max) maxpool2d_backward(dst[0], b.grad[this->out], static_cast<const std::int32_t*>(saved), s);
    else avgpool2d_backward(dst[0], b.grad[this->out], s);
  }
};

// The same kernel calls as BatchNorm1d/2d.forward: statistics, normalization, running update
// and the counter in training; normalization by the running statistics in eval.
// A ReLU right after it can run inside it (fuse), and then a max pool after that (fuse_pool),
// chunk by chunk of kConvChunk samples as after a convolution, and with the pool a few planes
// at a time within a chunk (for_plane_groups): forward, batchnorm_forward, relu and
// maxpool2d_forward (the statistics over the whole batch first), the normalized values only
// in a per-thread scratch; backward, batchnorm_backward's pieces with the gradient at its
// output made as they go (the pool's backward, then ReLU's mask from the output recomputed
// from x), twice: once for every row's sums, once for the input gradient.
// The same values and the same sums in the same order as the layers, so the same bits.
// Linked to the convolution before it (training; LinkedNorm in plan.h), it takes the
// statistics from the row moments the convolution wrote, and its backward stops after the
// parameter gradients: the convolution then asks for the input gradient chunk by chunk.
template <class T>
struct BatchNormOp : Op<T>, LinkedNorm<T> {
  const char* name() const override {
    if (pooled) return act == Act::ReLU ? "batchnorm+relu+maxpool2d" : "batchnorm+maxpool2d";
    return act == Act::ReLU ? "batchnorm+relu" : "batchnorm";
  }
  idx C, L, w_off, b_off;
  double eps, momentum;
  T *running_mean, *running_var;
  std::int64_t* counter;
  bool batch_stats;
  Act act = Act::None;
  bool pooled = false;
  Pool2d pool{};
  std::vector<double> sums;  // backward: every row's Σ g and Σ g·x̂ (N·C each)
  std::vector<T> means;      // backward: per channel, the means of g and g·x̂
  std::vector<double> moments;  // linked: every row's moments, from the convolution's forward
  const void* saved_now = nullptr;  // linked: backward's `saved`, for input_grad after it
  LinkedNorm<T>* linkable_norm() override { return batch_stats ? this : nullptr; }
  double* row_moments(idx rows) override {
    if (moments.size() < (size_t)(3 * rows * C)) moments.resize((size_t)(3 * rows * C));
    return moments.data();
  }
  bool fuse(Act a) override {
    if (a != Act::ReLU || act != Act::None || pooled) return false;
    act = a;
    return true;
  }
  bool fuse_pool(const Pool2d& p) override {
    if (pooled || p.C != C || p.H * p.W != L) return false;
    pooled = true, pool = p;
    return true;
  }
  size_t stats_bytes() const { return batch_stats ? 2 * sizeof(T) * (size_t)C : 0; }
  size_t saved_bytes(idx rows) const override {
    return stats_bytes() + (pooled ? sizeof(std::int32_t) * (size_t)(rows * pool_width()) : 0);
  }
  idx pool_width() const { return pool.C * pool.OH * pool.OW; }
  // (forward writes it, backward reads it: the op's own memory)
  std::int32_t* argmax_of(const void* saved) const {
    return reinterpret_cast<std::int32_t*>(static_cast<char*>(const_cast<void*>(saved)) + stats_bytes());
  }
  void forward(const Batch<T>& b, void* saved) override {
    const T* x = b.val[this->in[0]];
    const T *mean = running_mean, *var = running_var;
    if (batch_stats) {
      T* m = static_cast<T*>(saved);
      if (this->linked) batchnorm_stats_of_rows(m, m + C, moments.data(), b.rows, C, L);
      else batchnorm_stats(m, m + C, x, b.rows, C, L);
      mean = m, var = m + C;
    }
    const T *gamma = b.params + w_off, *beta = b.params + b_off;
    // chunk by chunk of samples, with or without ReLU or a pool: memory in order (the whole
    // batch channel by channel went through 128 rows far apart per channel, each thread's
    // prefetches reaching only a row ahead: the ResNet's BatchNorms before its sums took
    // 3.6 ms a step where these chunks take 2.1)
    std::int32_t* argmax = pooled ? argmax_of(saved) : nullptr;
    over_chunks(b.rows, [&](idx, idx n0, idx nn) {
      if (!pooled)
        return batchnorm_forward(b.val[this->out] + n0 * C * L, x + n0 * C * L, mean, var, gamma, beta, nn, C, L, eps,
                                 act == Act::ReLU);
      // a few planes at a time (for_plane_groups): normalized into a buffer, pooled from L1
      // (or, for the vector 2×2 pool, normalized as the pool loads them)
      thread_local std::vector<T> buf;
      const idx OL = pool.OH * pool.OW;
      for_plane_groups(n0, nn, [&](idx r, idx c, idx k) {
        batchnorm_maxpool2d_forward(b.val[this->out] + r * OL, argmax + r * OL, scratch_of(buf, k * L), x + r * L,
                                    mean + c, var + c, gamma + c, beta + c, eps, act == Act::ReLU, pool_of(k));
      });
    });
    if (batch_stats && b.stats) std::copy(mean, mean + 2 * C, b.stats + this->stats_off);
    else if (batch_stats) update_running(mean, b.rows);
  }
  idx stats_width() const override { return batch_stats ? 2 * C : 0; }
  void update_running(const T* stats, idx rows) override {
    batchnorm_update(running_mean, running_var, stats, stats + C, C, rows * L, momentum);
    ++*counter;
  }
  const T* mean_of(const void* saved) const { return batch_stats ? static_cast<const T*>(saved) : running_mean; }
  const T* var_of(const void* saved) const { return batch_stats ? static_cast<const T*>(saved) + C : running_var; }
  // With a pool fused, the passes go over samples n0 .. n0 + nn a group of planes at a time:
  // f(r, c, k) for planes r .. r + k (r = n·C + c, channels c .. c + k of one sample), k
  // planes making at most 32 KB (10 of 28 × 28), so that the normalized values or the pool's
  // expanded gradient are read back from L1 (a whole chunk's, 800 KB for 8 samples of 32 × 28
  // × 28, went through L2: the first BatchNorm's passes ~10-15% slower).
  template <class F>
  void for_plane_groups(idx n0, idx nn, F f) const {
    const idx per = std::max<idx>(1, idx(8192) / std::max<idx>(L, 1));
    for (idx r = n0 * C; r < (n0 + nn) * C;) {
      const idx c = r % C, k = std::min(per, C - c);
      f(r, c, k);
      r += k;
    }
  }
  static T* scratch_of(std::vector<T>& buf, idx n) {
    if (buf.size() < (size_t)n) buf.resize((size_t)n);
    return buf.data();
  }
  Pool2d pool_of(idx k) const {  // the fused pool over one sample's k planes
    Pool2d pc = pool;
    pc.N = 1, pc.C = k;
    return pc;
  }
  // The gradient at BatchNorm's output (before ReLU's mask) for planes r .. r + k (pooled).
  const T* planes_grad(const Batch<T>& b, const void* saved, idx r, idx k, std::vector<T>& buf) const {
    const idx OL = pool.OH * pool.OW;
    T* g = scratch_of(buf, k * L);
    maxpool2d_backward(g, b.grad[this->out] + r * OL, argmax_of(saved) + r * OL, pool_of(k));
    return g;
  }
  void backward(const Batch<T>& b, void* saved, T* const* dst) override {
    const T *mean = mean_of(saved), *var = var_of(saved);
    const T *x = b.val[this->in[0]], *gamma = b.params + w_off, *beta = b.params + b_off;
    if (act == Act::None && !pooled && !this->linked)
      return batchnorm_backward(dst[0], b.grads + w_off, b.grads + b_off, b.grad[this->out], x, mean, var, gamma,
                                b.rows, C, L, eps, batch_stats, /*accumulate=*/false);
    const size_t rows = (size_t)(b.rows * C);
    if (sums.size() < 2 * rows) sums.resize(2 * rows);
    if (means.size() < 2 * (size_t)C) means.resize(2 * (size_t)C);
    double *sg = sums.data(), *sgx = sums.data() + rows;
    over_chunks(b.rows, [&](idx, idx n0, idx nn) {
      thread_local std::vector<T> buf;
      if (!pooled)
        return batchnorm_row_sums(sg + n0 * C, sgx + n0 * C, b.grad[this->out] + n0 * C * L, x + n0 * C * L, mean, var,
                                  gamma, beta, nn, C, L, eps, act == Act::ReLU);
      for_plane_groups(n0, nn, [&](idx r, idx c, idx k) {
        batchnorm_row_sums(sg + r, sgx + r, planes_grad(b, saved, r, k, buf), x + r * L, mean + c, var + c, gamma + c,
                           beta + c, 1, k, L, eps, act == Act::ReLU);
      });
    });
    batchnorm_channel_grads(b.grads + w_off, b.grads + b_off, means.data(), means.data() + C, sg, sgx, b.rows, C, L,
                            /*accumulate=*/false);
    saved_now = saved;
    if (!dst[0]) return;  // (linked: the convolution asks for it, input_grad)
    over_chunks(b.rows, [&](idx, idx n0, idx nn) { input_grad(b, n0, nn, dst[0] + n0 * C * L); });
  }
  void input_grad(const Batch<T>& b, idx n0, idx nn, T* dx) override {
    thread_local std::vector<T> buf;
    const T *gamma = b.params + w_off, *beta = b.params + b_off;
    const T *x = b.val[this->in[0]], *mean = mean_of(saved_now), *var = var_of(saved_now);
    const T *mg = means.data(), *mgx = means.data() + C;
    if (!pooled)
      return batchnorm_dx(dx, b.grad[this->out] + n0 * C * L, x + n0 * C * L, mean, var, gamma, beta, mg, mgx, nn, C,
                          L, eps, batch_stats, act == Act::ReLU);
    for_plane_groups(n0, nn, [&](idx r, idx c, idx k) {
      batchnorm_dx(dx + (r - n0 * C) * L, planes_grad(b, saved_now, r, k, buf), x + r * L, mean + c, var + c,
                   gamma + c, beta + c, mg + c, mgx + c, 1, k, L, eps, batch_stats, act == Act::ReLU);
    });
  }
};

template <class T>
struct SgdStep : OptStep<T> {
  T* buf;
  bool first;
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  void apply(T* p, const T* g) override {
    sgd_step(p + this->start, g + this->start, buf, this->stop - this->start, lr, momentum, dampening,
             nesterov, weight_decay, first);
    first = false;
    ++this->steps;
  }
};

template <class T>
struct AdamStep : OptStep<T> {
  T *m, *v;
  long step;
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  void apply(T* p, const T* g) override {
    adam_step(p + this->start, g + this->start, m, v, this->stop - this->start, ++step, lr, beta1, beta2,
              eps, weight_decay, decoupled);
    ++this->steps;
  }
};

template <class T>
struct RmspropStep : OptStep<T> {
  T *sq, *buf;
  double lr, alpha, eps, weight_decay, momentum;
  void apply(T* p, const T* g) override {
    rmsprop_step(p + this->start, g + this->start, sq, buf, this->stop - this->start, lr, alpha, eps,
                 weight_decay, momentum);
    ++this->steps;
  }
};

template <class O>
std::unique_ptr<O> with_slots(std::unique_ptr<O> op, std::vector<int> in, int out) {
  op->in = std::move(in);
  op->out = out;
  return op;
}

}  // namespace

template <class T>
std::unique_ptr<Op<T>> make_linear(int in, int out, idx C, idx OC, idx lead, idx w_off, idx b_off) {
  auto op = std::make_unique<LinearOp<T>>();
  op->C = C, op->OC = OC, op->lead = lead, op->w_off = w_off, op->b_off = b_off;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_activation(int in, int out, Act act, double param, idx width) {
  auto op = std::make_unique<ActivationOp<T>>();
  op->act = act, op->param = T(param), op->width = width;
  op->from_y = false;
  for (const ActInfo& a : kActivations)
    if (a.act == act) op->from_y = a.backward_from_y;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_softmax(int in, int out, idx C, idx per_row) {
  auto op = std::make_unique<SoftmaxOp<T>>();
  op->C = C, op->per_row = per_row;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_dropout(int in, int out, double p, idx width) {
  auto op = std::make_unique<DropoutOp<T>>();
  op->p = p, op->width = width;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_add(int a, int b, int out, idx width) {
  auto op = std::make_unique<AddOp<T>>();
  op->width = width;
  return with_slots(std::move(op), {a, b}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_branch(int in, int out, idx width) {
  auto op = std::make_unique<BranchOp<T>>();
  op->width = width;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_conv2d(int in, int out, const Conv2d& g, idx w_off, idx b_off) {
  auto op = std::make_unique<ConvOp<T>>();
  op->g = g, op->w_off = w_off, op->b_off = b_off;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_pool2d(int in, int out, const Pool2d& g, bool max) {
  auto op = std::make_unique<PoolOp<T>>();
  op->g = g, op->max = max;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_batchnorm(int in, int out, idx C, idx L, idx w_off, idx b_off, double eps,
                                      double momentum, T* running_mean, T* running_var, std::int64_t* counter,
                                      bool batch_stats) {
  auto op = std::make_unique<BatchNormOp<T>>();
  op->C = C, op->L = L, op->w_off = w_off, op->b_off = b_off, op->eps = eps, op->momentum = momentum;
  op->running_mean = running_mean, op->running_var = running_var, op->counter = counter;
  op->batch_stats = batch_stats;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<OptStep<T>> make_sgd(idx start, idx stop, T* momentum_buf, bool first, double lr,
                                     double momentum, double dampening, bool nesterov, double weight_decay) {
  auto s = std::make_unique<SgdStep<T>>();
  s->start = start, s->stop = stop, s->buf = momentum_buf, s->first = first;
  s->lr = lr, s->momentum = momentum, s->dampening = dampening, s->nesterov = nesterov;
  s->weight_decay = weight_decay;
  return s;
}

template <class T>
std::unique_ptr<OptStep<T>> make_adam(idx start, idx stop, T* exp_avg, T* exp_avg_sq, long step, double lr,
                                      double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
  auto s = std::make_unique<AdamStep<T>>();
  s->start = start, s->stop = stop, s->m = exp_avg, s->v = exp_avg_sq, s->step = step;
  s->lr = lr, s->beta1 = beta1, s->beta2 = beta2, s->eps = eps, s->weight_decay = weight_decay;
  s->decoupled = decoupled;
  return s;
}

template <class T>
std::unique_ptr<OptStep<T>> make_rmsprop(idx start, idx stop, T* square_avg, T* momentum_buf, double lr,
                                         double alpha, double eps, double weight_decay, double momentum) {
  auto s = std::make_unique<RmspropStep<T>>();
  s->start = start, s->stop = stop, s->sq = square_avg, s->buf = momentum_buf;
  s->lr = lr, s->alpha = alpha, s->eps = eps, s->weight_decay = weight_decay, s->momentum = momentum;
  return s;
}

#define FASTNN_INSTANTIATE(T)                                                                         \
  template std::unique_ptr<Op<T>> make_linear<T>(int, int, idx, idx, idx, idx, idx);                  \
  template std::unique_ptr<Op<T>> make_activation<T>(int, int, Act, double, idx);                     \
  template std::unique_ptr<Op<T>> make_softmax<T>(int, int, idx, idx);                                \
  template std::unique_ptr<Op<T>> make_dropout<T>(int, int, double, idx);                             \
  template std::unique_ptr<Op<T>> make_add<T>(int, int, int, idx);                                    \
  template std::unique_ptr<Op<T>> make_branch<T>(int, int, idx);                                      \
  template std::unique_ptr<Op<T>> make_conv2d<T>(int, int, const Conv2d&, idx, idx);                   \
  template std::unique_ptr<Op<T>> make_pool2d<T>(int, int, const Pool2d&, bool);                       \
  template std::unique_ptr<Op<T>> make_batchnorm<T>(int, int, idx, idx, idx, idx, double, double, T*, T*, \
                                                    std::int64_t*, bool);                              \
  template std::unique_ptr<OptStep<T>> make_sgd<T>(idx, idx, T*, bool, double, double, double, bool,  \
                                                   double);                                           \
  template std::unique_ptr<OptStep<T>> make_adam<T>(idx, idx, T*, T*, long, double, double, double,   \
                                                    double, double, bool);                            \
  template std::unique_ptr<OptStep<T>> make_rmsprop<T>(idx, idx, T*, T*, double, double, double,      \
                                                       double, double);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
