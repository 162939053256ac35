// Batch normalization over x (N, C, L). Each thread owns whole channels and sums a channel's
// N·L values in one fixed order (rows added in double, two passes for the variance), so no statistic
// depends on the thread count. Within a row the sums run in 16 interleaved lanes: one running
// sum waits 4 cycles per value (measured: stats of 128×32×28×28 took 2 ms that way).
#include <cmath>
#include "kernels/kernels.h"

namespace fastnn {
namespace {

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

// Runs f(c) for every channel, several channels per task when they are small.
template <class F>
void over_channels(idx N, idx C, idx L, F f) {
  parallel_chunks(C, std::max<idx>(1, kElementwiseChunk / std::max<idx>(1, N * L)), [&](idx c0, idx c1) {
    for (idx c = c0; c < c1; ++c) f(c);
  });
}

}  // namespace

template <class T>
void batchnorm_stats(T* mean, T* var, const T* x, idx N, idx C, idx L) {
  over_channels(N, C, L, [&](idx c) {
    const idx M = N * L;
    double s = 0;
    for (idx n = 0; n < N; ++n) {
      const T* xi = x + (n * C + c) * L;
      s += row_sum<T>(L, [&](idx l) { return xi[l]; });
    }
    const double m = M ? s / (double)M : 0.0;
    const T mt = T(m);
    double q = 0;
    for (idx n = 0; n < N; ++n) {
      const T* xi = x + (n * C + c) * L;
      q += row_sum<T>(L, [&](idx l) {
        const T d = xi[l] - mt;
        return d * d;
      });
    }
    mean[c] = T(m);
    var[c] = T(M ? q / (double)M : 0.0);
  });
}

template <class T>
void batchnorm_forward(T* out, const T* x, const T* mean, const T* var, const T* gamma, const T* beta, idx N,
                       idx C, idx L, double eps) {
  over_channels(N, C, L, [&](idx c) {
    const T invstd = T(1) / std::sqrt(var[c] + T(eps));
    const T scale = invstd * gamma[c], m = mean[c], b = beta[c];
    for (idx n = 0; n < N; ++n) {
      const T* xi = x + (n * C + c) * L;
      T* o = out + (n * C + c) * L;
      for (idx l = 0; l < L; ++l) o[l] = (xi[l] - m) * scale + b;
    }
  });
}

// Training (batch_stats), with x̂ = (x − mean)·invstd and M = N·L values per channel:
//   dbeta = Σ dout,  dgamma = Σ dout·x̂,  dx = gamma·invstd·(dout − dbeta/M − x̂·dgamma/M)
// Eval: mean and var are constants, dx = dout·gamma·invstd.
template <class T>
void batchnorm_backward(T* dx, T* dgamma, T* dbeta, const T* dout, const T* x, const T* mean, const T* var,
                        const T* gamma, idx N, idx C, idx L, double eps, bool batch_stats, bool accumulate) {
  over_channels(N, C, L, [&](idx c) {
    const T invstd = T(1) / std::sqrt(var[c] + T(eps)), m = mean[c];
    double sg = 0, sgx = 0;
    for (idx n = 0; n < N; ++n) {
      const T* g = dout + (n * C + c) * L;
      const T* xi = x + (n * C + c) * L;
      sg += row_sum<T>(L, [&](idx l) { return g[l]; });
      sgx += row_sum<T>(L, [&](idx l) { return g[l] * ((xi[l] - m) * invstd); });
    }
    if (dbeta) dbeta[c] = accumulate ? dbeta[c] + T(sg) : T(sg);
    if (dgamma) dgamma[c] = accumulate ? dgamma[c] + T(sgx) : T(sgx);
    if (!dx) return;
    const T k = gamma[c] * invstd;
    const idx M = N * L;
    const T mg = M ? T(sg / (double)M) : T(0), mgx = M ? T(sgx / (double)M) : T(0);
    for (idx n = 0; n < N; ++n) {
      const T* g = dout + (n * C + c) * L;
      const T* xi = x + (n * C + c) * L;
      T* d = dx + (n * C + c) * L;
      if (batch_stats)
        for (idx l = 0; l < L; ++l) d[l] = k * (g[l] - mg - (xi[l] - m) * invstd * mgx);
      else
        for (idx l = 0; l < L; ++l) d[l] = g[l] * k;
    }
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
  template void batchnorm_forward<T>(T*, const T*, const T*, const T*, const T*, const T*, idx, idx, idx,   \
                                     double);                                                              \
  template void batchnorm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, idx,    \
                                      idx, idx, double, bool, bool);                                       \
  template void batchnorm_update<T>(T*, T*, const T*, const T*, idx, idx, double);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
