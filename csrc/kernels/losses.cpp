// Losses with their gradient in the same pass. Per-row (or per-chunk) partial sums are
// combined in order afterwards, so the loss does not depend on the thread count.
#include <cmath>
#include <type_traits>
#include <vector>
#include "kernels/kernels.h"
#include "vmath/vmath.h"

namespace fastnn {

namespace {
constexpr idx kLossChunk = 4096;

// Runs part(b, e) -> double over fixed chunks of [0, n) and sums the parts in order.
template <class F>
double chunked_sum(idx n, F part) {
  const idx nchunks = (n + kLossChunk - 1) / kLossChunk;
  std::vector<double> parts((size_t)nchunks, 0.0);
  parallel_chunks(n, kLossChunk, [&](idx b, idx e) { parts[(size_t)(b / kLossChunk)] = part(b, e); });
  double s = 0;
  for (double p : parts) s += p;
  return s;
}
}  // namespace

template <class T>
double cross_entropy_forward(T* dlogits, const T* logits, const std::int64_t* targets, idx N, idx C) {
  if (N == 0) return 0.0;
  std::vector<double> row_loss((size_t)N);
  const T scale = T(1) / T(N);
  // Float rows on a SIMD path are vectorised: each exponential once, kept in dlogits between the
  // sum and the scaling (measured from Python, 100 rows of 10 on AVX-512: 7.0 -> 2.1 µs per
  // call, 32 rows 2.5 -> 1.0). Same formulas as the scalar rows below.
  const VMath* vm = nullptr;
  if constexpr (std::is_same_v<T, float>) vm = vmath_f32();
  std::vector<float> row_max(vm ? (size_t)N : 0), row_sum(vm ? (size_t)N : 0);
  parallel_chunks(N, std::max<idx>(1, kElementwiseChunk / C), [&](idx r0, idx r1) {
    if constexpr (std::is_same_v<T, float>) {
      if (vm) {
        vm->cross_entropy_rows(dlogits ? dlogits + r0 * C : nullptr, row_max.data() + r0,
                               row_sum.data() + r0, logits + r0 * C, targets + r0, r1 - r0, C, scale);
        for (idx r = r0; r < r1; ++r) {
          const float m = row_max[(size_t)r], s = row_sum[(size_t)r];
          row_loss[(size_t)r] = (double)(std::log(s) - (logits[r * C + targets[r]] - m));
        }
        return;
      }
    }
    for (idx r = r0; r < r1; ++r) {
      const T* x = logits + r * C;
      const std::int64_t t = targets[r];
      T m = x[0];
      for (idx c = 1; c < C; ++c) m = std::max(m, x[c]);
      T s = 0;
      for (idx c = 0; c < C; ++c) s += std::exp(x[c] - m);
      // log-sum-exp minus the target logit, with the max subtracted first: finite for any
      // finite logits (±1e4 included).
      row_loss[(size_t)r] = (double)(std::log(s) - (x[t] - m));
      if (dlogits) {
        T* d = dlogits + r * C;
        const T inv = T(1) / s;
        for (idx c = 0; c < C; ++c) d[c] = std::exp(x[c] - m) * inv * scale;
        d[t] -= scale;
      }
    }
  });
  double total = 0;
  for (double l : row_loss) total += l;
  return total / (double)N;
}

template <class T>
double mse_forward(T* dpred, const T* pred, const T* target, idx n, bool sum_reduction) {
  if (n == 0) return 0.0;
  const T gscale = sum_reduction ? T(2) : T(2) / T(n);
  const double total = chunked_sum(n, [&](idx b, idx e) {
    double s = 0;
    for (idx i = b; i < e; ++i) {
      const T d = pred[i] - target[i];
      s += (double)(d * d);
      if (dpred) dpred[i] = gscale * d;
    }
    return s;
  });
  return sum_reduction ? total : total / (double)n;
}

template <class T>
double bce_with_logits_forward(T* dlogits, const T* logits, const T* target, idx n) {
  if (n == 0) return 0.0;
  const T scale = T(1) / T(n);
  const double total = chunked_sum(n, [&](idx b, idx e) {
    double s = 0;
    for (idx i = b; i < e; ++i) {
      const T x = logits[i], t = target[i];
      // max(x,0) − x·t + log(1 + e^−|x|): no overflow for any x.
      s += (double)(std::max(x, T(0)) - x * t + std::log1p(std::exp(-std::abs(x))));
      if (dlogits) dlogits[i] = (sigmoid(x) - t) * scale;
    }
    return s;
  });
  return total / (double)n;
}

template <class T>
double bce_forward(T* dprob, const T* prob, const T* target, idx n) {
  if (n == 0) return 0.0;
  const T scale = T(1) / T(n);
  const double total = chunked_sum(n, [&](idx b, idx e) {
    double s = 0;
    for (idx i = b; i < e; ++i) {
      const T p = prob[i], t = target[i];
      const T lp = std::max(std::log(p), T(-100)), l1p = std::max(std::log(T(1) - p), T(-100));
      s += (double)(-(t * lp + (T(1) - t) * l1p));
      if (dprob) dprob[i] = (p - t) / std::max((T(1) - p) * p, T(1e-12)) * scale;
    }
    return s;
  });
  return total / (double)n;
}

namespace {
// Counts are integers, so chunks may be summed in any order; each chunk still writes only its
// own slot.
template <class F>
std::int64_t chunked_count(idx n, idx chunk, F part) {
  if (n <= 0) return 0;
  std::vector<std::int64_t> parts((size_t)((n + chunk - 1) / chunk), 0);
  parallel_chunks(n, chunk, [&](idx b, idx e) { parts[(size_t)(b / chunk)] = part(b, e); });
  std::int64_t s = 0;
  for (std::int64_t p : parts) s += p;
  return s;
}
}  // namespace

template <class T>
std::int64_t argmax_correct(const T* logits, const std::int64_t* targets, idx N, idx C) {
  if (C <= 0) return 0;
  return chunked_count(N, std::max<idx>(1, kElementwiseChunk / C), [&](idx r0, idx r1) {
    std::int64_t hits = 0;
    for (idx r = r0; r < r1; ++r) {
      const T* x = logits + r * C;
      idx best = 0;
      for (idx c = 1; c < C && !std::isnan(x[best]); ++c)
        if (x[c] > x[best] || std::isnan(x[c])) best = c;
      hits += best == targets[r];
    }
    return hits;
  });
}

template <class T>
std::int64_t threshold_correct(const T* pred, const T* target, double threshold, idx n) {
  return chunked_count(n, kElementwiseChunk, [&](idx b, idx e) {
    std::int64_t hits = 0;
    for (idx i = b; i < e; ++i) hits += ((double)pred[i] > threshold) == (target[i] > T(0.5));
    return hits;
  });
}

#define FASTNN_INSTANTIATE(T)                                                              \
  template std::int64_t argmax_correct<T>(const T*, const std::int64_t*, idx, idx);       \
  template std::int64_t threshold_correct<T>(const T*, const T*, double, idx);            \
  template double cross_entropy_forward<T>(T*, const T*, const std::int64_t*, idx, idx);   \
  template double mse_forward<T>(T*, const T*, const T*, idx, bool);                       \
  template double bce_with_logits_forward<T>(T*, const T*, const T*, idx);                 \
  template double bce_forward<T>(T*, const T*, const T*, idx);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
