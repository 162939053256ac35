// Batch normalization over x (N, C, L). The statistics: every row (a sample's channel, L values)
// gives its sum and its moments about its own rounded mean, added up per channel in order of n
// in double (Chan's pairwise update), so that a row can be taken while it is in cache (the
// plan's convolution does) and no statistic depends on the thread count. Sums within a row run
// in interleaved lanes: one running sum waits 4 cycles per value (measured: stats of
// 128×32×28×28 took 2 ms that way).
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>
#include "kernels/kernels.h"
#include "kernels/pool_simd.h"

namespace fastnn {
namespace {

// The rows are read from memory (a batch's activations): each pass asks for the values this far
// ahead of the ones it reads, which are the next rows' in the order the plan's passes go.
constexpr idx kAhead = 1024;

// Σ f(i) over a row of n values in 16 running sums of T (lanes i mod 16, added in a fixed
// order), returned in double; a channel's rows are then added in double. Built for AVX-512
// and AVX2 too (the lanes become one or two vectors).
template <class T, class F>
FASTNN_ELEMENTWISE_CLONES
double row_sum(idx n, F f) {
  T acc[16] = {};
  idx i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) acc[k] += f(i + k);
  double s = 0;
  for (int k = 0; k < 16; ++k) s += (double)acc[k];
  for (; i < n; ++i) s += (double)f(i);
  return s;
}

// row_sum of f and of h at once, in one pass over the row: each in its own lanes, added in
// the same order as row_sum adds them (the same bits as two calls).
template <class T, class F, class H>
FASTNN_ELEMENTWISE_CLONES
void row_sum_pair(idx n, F f, H h, double* sf, double* sh, const T* ahead) {
  T af[16] = {}, ah[16] = {};
  idx i = 0;
  for (; i + 16 <= n; i += 16) {
    __builtin_prefetch(ahead + i);
    for (int k = 0; k < 16; ++k) af[k] += f(i + k), ah[k] += h(i + k);
  }
  double a = 0, b = 0;
  for (int k = 0; k < 16; ++k) a += (double)af[k], b += (double)ah[k];
  for (; i < n; ++i) a += (double)f(i), b += (double)h(i);
  *sf = a, *sh = b;
}

// f(std::true_type) with a ReLU fused, else f(std::false_type): the loops built for each
template <class F>
void with_relu(bool relu, F f) {
  if (relu) f(std::true_type{});
  else f(std::false_type{});
}

// Runs f(c) for every channel, several channels per task when they are small.
template <class F>
void over_channels(idx N, idx C, idx L, F f) {
  parallel_chunks(C, std::max<idx>(1, kElementwiseChunk / std::max<idx>(1, N * L)), [&](idx c0, idx c1) {
    for (idx c = c0; c < c1; ++c) f(c);
  });
}

}  // namespace

namespace {

// K running sums in double, added pairwise (a fixed tree: k with k + K/2, then k + K/4, ...),
// which the compiler can vectorize where a sequential sum would wait 4 cycles per lane.
// (Each level a loop of constant length, which the compiler unrolls into vector adds; one loop
// over the levels was left a loop of scalar moves, most of a 196-value row's time.)
template <int W>
inline void fold_lanes(double* t) {
  for (int k = 0; k < W; ++k) t[k] += t[k + W];
  if constexpr (W > 1) fold_lanes<W / 2>(t);
}

template <class T, int K>
double lanes_total(const T (&acc)[K]) {
  double t[K];
  for (int k = 0; k < K; ++k) t[k] = (double)acc[k];
  fold_lanes<K / 2>(t);
  return t[0];
}

// A row's moments (kernels.h): pass 1 its sum in 32 lanes of T (value i in lane i mod 32: two
// vectors of floats, so that the adds do not wait on each other), pass 2 Σ (x − a) and
// Σ (x − a)² about a = T(s / L) in 32 lanes each; the lanes totalled in double (lanes_total).
template <class T>
FASTNN_ELEMENTWISE_CLONES
void row_moments(double* out, const T* __restrict x, idx n) {
  constexpr int K = 32;
  T acc[K] = {};
  idx i = 0;
  for (; i + K <= n; i += K)
    for (int k = 0; k < K; ++k) acc[k] += x[i + k];
  const idx tail = i;
  for (idx j = tail; j < n; ++j) acc[j - tail] += x[j];
  const double s = lanes_total(acc);
  const T a = n ? T(s / (double)n) : T(0);
  T ad[K] = {}, aq[K] = {};
  for (i = 0; i + K <= n; i += K)
    for (int k = 0; k < K; ++k) {
      const T v = x[i + k] - a;
      ad[k] += v;
      aq[k] += v * v;
    }
  for (idx j = tail; j < n; ++j) {
    const T v = x[j] - a;
    ad[j - tail] += v;
    aq[j - tail] += v * v;
  }
  out[0] = s, out[1] = lanes_total(ad), out[2] = lanes_total(aq);
}

// Channel c from its N rows' moments (3 doubles each, rows `stride` doubles apart): the mean
// from the sums; the variance as Σ over rows of Σ (x − mean)² = q − 2δ·d + L·δ², δ = mean − a.
template <class T>
void combine_rows(T* mean, T* var, const double* m, idx stride, idx N, idx L) {
  const double M = (double)(N * L);
  double s = 0;
  for (idx n = 0; n < N; ++n) s += m[n * stride];
  const double mu = M > 0 ? s / M : 0.0;
  double q = 0;
  for (idx n = 0; n < N; ++n) {
    const double* r = m + n * stride;
    const double a = L ? (double)T(r[0] / (double)L) : 0.0, delta = mu - a;
    q += r[2] - 2 * delta * r[1] + (double)L * delta * delta;
  }
  *mean = T(mu);
  *var = T(M > 0 ? std::max(q, 0.0) / M : 0.0);
}

}  // namespace

template <class T>
void batchnorm_row_moments(double* moments, const T* x, idx rows, idx L) {
  for (idx r = 0; r < rows; ++r) row_moments<T>(moments + 3 * r, x + r * L, L);
}

template <class T>
void batchnorm_stats_of_rows(T* mean, T* var, const double* moments, idx N, idx C, idx L) {
  parallel_chunks(C, std::max<idx>(1, kElementwiseChunk / std::max<idx>(1, N)), [&](idx c0, idx c1) {
    for (idx c = c0; c < c1; ++c) combine_rows(mean + c, var + c, moments + 3 * c, 3 * C, N, L);
  });
}

template <class T>
void batchnorm_stats(T* mean, T* var, const T* x, idx N, idx C, idx L) {
  // per channel, its rows' moments in a thread's own buffer (N rows, 3 doubles each)
  over_channels(N, C, L, [&](idx c) {
    thread_local std::vector<double> m;
    if (m.size() < (size_t)(3 * N)) m.resize((size_t)(3 * N));
    for (idx n = 0; n < N; ++n) row_moments<T>(m.data() + 3 * n, x + (n * C + c) * L, L);
    combine_rows(mean + c, var + c, m.data(), 3, N, L);
  });
}

namespace {

// One row normalized, and with Relu ReLU's output of it (relu() of the same value: the bits
// of the two layers)
template <class T, bool Relu>
FASTNN_ELEMENTWISE_CLONES
void normalize_row(T* __restrict o, const T* __restrict x, idx L, T m, T scale, T b) {
  for (idx l0 = 0; l0 < L; l0 += 16) {  // (16 values, one cache line: one prefetch)
    __builtin_prefetch(x + kAhead + l0);
    for (idx l = l0; l < std::min(L, l0 + 16); ++l) {
      const T v = (x[l] - m) * scale + b;
      o[l] = Relu ? relu(v) : v;
    }
  }
}

}  // namespace

template <class T>
void batchnorm_forward(T* out, const T* x, const T* mean, const T* var, const T* gamma, const T* beta, idx N,
                       idx C, idx L, double eps, bool relu) {
  with_relu(relu, [&](auto r) {
    over_channels(N, C, L, [&](idx c) {
      const T invstd = T(1) / std::sqrt(var[c] + T(eps));
      const T scale = invstd * gamma[c];
      for (idx n = 0; n < N; ++n)
        normalize_row<T, decltype(r)::value>(out + (n * C + c) * L, x + (n * C + c) * L, L, mean[c], scale, beta[c]);
    });
  });
}

template <class T>
void batchnorm_maxpool2d_forward(T* out, std::int32_t* argmax, T* buf, const T* x, const T* mean, const T* var,
                                 const T* gamma, const T* beta, double eps, bool relu, const Pool2d& s) {
  const idx L = s.H * s.W, OL = s.OH * s.OW;
  if constexpr (std::is_same_v<T, float>) {
    const MaxPool2x2* fast = maxpool_2x2_f32();
    if (fast && s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.PH == 0 && s.PW == 0) {
      for (idx c = 0; c < s.C; ++c) {
        const T invstd = T(1) / std::sqrt(var[c] + T(eps));  // (batchnorm_forward's)
        fast->forward_affine(out + c * OL, argmax + c * OL, x + c * L, s.OH, s.OW, s.W, mean[c], invstd * gamma[c],
                             beta[c], relu);
      }
      return;
    }
  }
  batchnorm_forward(buf, x, mean, var, gamma, beta, 1, s.C, L, eps, relu);
  maxpool2d_forward(out, argmax, buf, s);
}

namespace {

// The gradient at BatchNorm's output for the pieces below: dout, or dout·relu_grad(y) with a
// ReLU fused after it, y recomputed from x as batchnorm_forward computes it (the same bits).
template <class T, bool Relu>
struct OutGrad {
  const T *g, *x;
  T m, scale, b;
  T operator()(idx l) const { return Relu ? g[l] * relu_grad((x[l] - m) * scale + b) : g[l]; }
};

template <class T>
T invstd_of(const T* var, idx c, double eps) {
  return T(1) / std::sqrt(var[c] + T(eps));
}

// The pieces per channel c, for N samples; channel c's row sums at sg[n·sn], sgx[n·sn].
template <class T, bool Relu>
void channel_row_sums(double* sg, double* sgx, idx sn, const T* dout, const T* x, const T* mean, const T* var,
                      const T* gamma, const T* beta, idx N, idx C, idx L, double eps, idx c) {
  const T invstd = invstd_of(var, c, eps), m = mean[c];
  const T scale = Relu ? invstd * gamma[c] : T(0), b = Relu ? beta[c] : T(0);
  for (idx n = 0; n < N; ++n) {
    const T* xi = x + (n * C + c) * L;
    const OutGrad<T, Relu> g{dout + (n * C + c) * L, xi, m, scale, b};
    row_sum_pair<T>(
        L, [&](idx l) { return g(l); }, [&](idx l) { return g(l) * ((xi[l] - m) * invstd); }, sg + n * sn,
        sgx + n * sn, xi + kAhead);
  }
}

template <class T>
void channel_grads(T* dgamma, T* dbeta, T* mg, T* mgx, const double* sg, const double* sgx, idx sn, idx N, idx L,
                   bool accumulate, idx c) {
  const idx M = N * L;
  double a = 0, ax = 0;
  for (idx n = 0; n < N; ++n) a += sg[n * sn], ax += sgx[n * sn];
  if (dbeta) dbeta[c] = accumulate ? dbeta[c] + T(a) : T(a);
  if (dgamma) dgamma[c] = accumulate ? dgamma[c] + T(ax) : T(ax);
  mg[c] = M ? T(a / (double)M) : T(0), mgx[c] = M ? T(ax / (double)M) : T(0);
}

template <class T, bool Relu>
FASTNN_ELEMENTWISE_CLONES
void channel_dx(T* dx, const T* dout, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                const T* mg, const T* mgx, idx N, idx C, idx L, double eps, bool batch_stats, idx c) {
  const T invstd = invstd_of(var, c, eps), m = mean[c], k = gamma[c] * invstd, a = mg[c], ax = mgx[c];
  const T scale = Relu ? invstd * gamma[c] : T(0), b = Relu ? beta[c] : T(0);
  for (idx n = 0; n < N; ++n) {
    const T* __restrict xi = x + (n * C + c) * L;
    const T* __restrict gi = dout + (n * C + c) * L;
    T* __restrict d = dx + (n * C + c) * L;
    const auto g = [&](idx l) { return Relu ? gi[l] * relu_grad((xi[l] - m) * scale + b) : gi[l]; };
    for (idx l0 = 0; l0 < L; l0 += 16) {  // (16 values, one cache line: one prefetch)
      __builtin_prefetch(xi + kAhead + l0);
      const idx l1 = std::min(L, l0 + 16);
      if (batch_stats)
        for (idx l = l0; l < l1; ++l) d[l] = k * (g(l) - a - (xi[l] - m) * invstd * ax);
      else
        for (idx l = l0; l < l1; ++l) d[l] = g(l) * k;
    }
  }
}

}  // namespace

// Training (batch_stats), with x̂ = (x − mean)·invstd and M = N·L values per channel:
//   dbeta = Σ dout,  dgamma = Σ dout·x̂,  dx = gamma·invstd·(dout − dbeta/M − x̂·dgamma/M)
// Eval: mean and var are constants, dx = dout·gamma·invstd.
// In three pieces (kernels.h), so that an op running BatchNorm → ReLU (→ max pool) fused can
// make dout chunk by chunk of samples and still sum every channel's rows in the same order;
// batchnorm_backward runs the three per channel, whose values stay in cache between them.
template <class T>
void batchnorm_row_sums(double* sg, double* sgx, const T* dout, const T* x, const T* mean, const T* var,
                        const T* gamma, const T* beta, idx N, idx C, idx L, double eps, bool relu) {
  with_relu(relu, [&](auto r) {
    over_channels(N, C, L, [&](idx c) {
      channel_row_sums<T, decltype(r)::value>(sg + c, sgx + c, C, dout, x, mean, var, gamma, beta, N, C, L, eps, c);
    });
  });
}

template <class T>
void batchnorm_channel_grads(T* dgamma, T* dbeta, T* mg, T* mgx, const double* sg, const double* sgx, idx N, idx C,
                             idx L, bool accumulate) {
  for (idx c = 0; c < C; ++c) channel_grads(dgamma, dbeta, mg, mgx, sg + c, sgx + c, C, N, L, accumulate, c);
}

template <class T>
void batchnorm_dx(T* dx, const T* dout, const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                  const T* mg, const T* mgx, idx N, idx C, idx L, double eps, bool batch_stats, bool relu) {
  with_relu(relu, [&](auto r) {
    over_channels(N, C, L, [&](idx c) {
      channel_dx<T, decltype(r)::value>(dx, dout, x, mean, var, gamma, beta, mg, mgx, N, C, L, eps, batch_stats, c);
    });
  });
}

template <class T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dout, const T* x, const T* mean, const T* var,
                        const T* gamma, idx N, idx C, idx L, double eps, bool batch_stats, bool accumulate) {
  std::vector<T> mg((size_t)C), mgx((size_t)C);
  over_channels(N, C, L, [&](idx c) {
    thread_local std::vector<double> sg, sgx;  // the channel's row sums (a thread's own)
    if (sg.size() < (size_t)N) sg.resize((size_t)N), sgx.resize((size_t)N);
    channel_row_sums<T, false>(sg.data(), sgx.data(), 1, dout, x, mean, var, gamma, gamma, N, C, L, eps, c);
    channel_grads(dgamma, dbeta, mg.data(), mgx.data(), sg.data(), sgx.data(), 1, N, L, accumulate, c);
    if (dx)
      channel_dx<T, false>(dx, dout, x, mean, var, gamma, gamma, mg.data(), mgx.data(), N, C, L, eps, batch_stats, c);
  });
}

template <class T>
void batchnorm_update(T* running_mean, T* running_var, const T* mean, const T* var, idx C, idx count,
                      double momentum) {
  const double unbias = count > 1 ? (double)count / (double)(count - 1) : 1.0;
  for (idx c = 0; c < C; ++c) {
    running_mean[c] = T((1.0 - momentum) * (double)running_mean[c] + momentum * (double)mean[c]);
    running_var[c] = T((1.0 - momentum) * (double)running_var[c] + momentum * (double)var[c] * unbias);
  }
}

#define FASTNN_INSTANTIATE(T)                                                                               \
  template void batchnorm_stats<T>(T*, T*, const T*, idx, idx, idx);                                       \
  template void batchnorm_row_moments<T>(double*, const T*, idx, idx);                                       \
  template void batchnorm_stats_of_rows<T>(T*, T*, const double*, idx, idx, idx);                            \
  template void batchnorm_forward<T>(T*, const T*, const T*, const T*, const T*, const T*, idx, idx, idx,   \
                                     double, bool);                                                        \
  template void batchnorm_maxpool2d_forward<T>(T*, std::int32_t*, T*, const T*, const T*, const T*, const T*,  \
                                               const T*, double, bool, const Pool2d&);                       \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, idx,    \
                                      idx, idx, double, bool, bool);                                       \
  template void batchnorm_update<T>(T*, T*, const T*, const T*, idx, idx, double);                          \
  template void batchnorm_row_sums<T>(double*, double*, const T*, const T*, const T*, const T*, const T*,   \
                                      const T*, idx, idx, idx, double, bool);                              \
  template void batchnorm_channel_grads<T>(T*, T*, T*, T*, const double*, const double*, idx, idx, idx,    \
                                           bool);                                                          \
  template void batchnorm_dx<T>(T*, const T*, const T*, const T*, const T*, const T*, const T*, const T*,   \
                                const T*, idx, idx, idx, double, bool, bool);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
