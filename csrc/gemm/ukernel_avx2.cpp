// AVX2+FMA float micro-kernel, 6×16: 12 ymm accumulators, 2 loads of B and 6 broadcasts of A
// per k. Compiled with -mavx2 -mfma and only called after a CPUID check (ukernel_select.cpp).
// Includes nothing but intrinsics (and avx2_lanes.h, whose helpers have internal linkage) so no
// shared inline code gets compiled with AVX2 flags.
#include <immintrin.h>
#include <cstdint>
#include "kernels/avx2_lanes.h"

namespace fastnn {

void sgemm_ukernel_avx2_6x16(std::int64_t k, const float* a, const float* b, float* c,
                             std::int64_t ldc, float alpha, float beta) {
  // The 12 accumulators as named variables: kept in an array, GCC 12 stored all of them to the
  // stack after every step of p (the epilogue reads the array), 12 stores per 12 FMAs: 1024³ on
  // one AMD Zen 3 core ran at 23-27 GFLOP/s, ~25% of its FMA limit.
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (std::int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 ai = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(ai, b0, c00), c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(ai, b0, c10), c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(ai, b0, c20), c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(ai, b0, c30), c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(ai, b0, c40), c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(ai, b0, c50), c51 = _mm256_fmadd_ps(ai, b1, c51);
    a += 6;
    b += 16;
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {
    for (int i = 0; i < 6; ++i) {
      _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
    for (int i = 0; i < 6; ++i) {
      for (int h = 0; h < 2; ++h) {
        float* ci = c + i * ldc + 8 * h;
        _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_mul_ps(va, acc[i][h]),
                                           _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
      }
    }
  }
}

}  // namespace fastnn

namespace fastnn {

// Dot product of two float rows of length k for GEMMs with a handful of rows (gemm_small_m):
// 4 ymm partial sums of 8 lanes, added in a fixed order, then the tail in order.
float sdot_avx2(std::int64_t k, const float* a, const float* b) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  std::int64_t p = 0;
  for (; p + 32 <= k; p += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(b + p), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 8), _mm256_loadu_ps(b + p + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 16), _mm256_loadu_ps(b + p + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p + 24), _mm256_loadu_ps(b + p + 24), s3);
  }
  for (; p + 8 <= k; p += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + p), _mm256_loadu_ps(b + p), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, s);
  float total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  for (; p < k; ++p) total += a[p] * b[p];
  return total;
}

}  // namespace fastnn

namespace fastnn {

// Eight dot products at once, as sdot8_avx512 forms them, so gemm_small_m (inference at
// batch 1, a depthwise convolution's weight gradient through the GEMM) gives the same bits on
// either vector path: per output 16 lane sums (lanes 0-7 and 8-15 in two ymm, the last chunk
// zero-filled), folded lo + hi, then three rounds of horizontal adds. Four outputs a pass: eight
// would need 16 accumulators and the two halves of `a`, more than the 16 ymm registers.
void sdot8_avx2(std::int64_t k, const float* a, const float* b, std::int64_t ldb, float* out) {
  for (int half = 0; half < 2; ++half) {
    const float* b0 = b + (4 * half) * ldb;
    const float* b1 = b0 + ldb;
    const float* b2 = b1 + ldb;
    const float* b3 = b2 + ldb;
    __m256 c0l = _mm256_setzero_ps(), c0h = c0l, c1l = c0l, c1h = c0l, c2l = c0l, c2h = c0l, c3l = c0l, c3h = c0l;
    std::int64_t p = 0;
    for (; p + 16 <= k; p += 16) {
      const __m256 al = _mm256_loadu_ps(a + p), ah = _mm256_loadu_ps(a + p + 8);
      c0l = _mm256_fmadd_ps(al, _mm256_loadu_ps(b0 + p), c0l), c0h = _mm256_fmadd_ps(ah, _mm256_loadu_ps(b0 + p + 8), c0h);
      c1l = _mm256_fmadd_ps(al, _mm256_loadu_ps(b1 + p), c1l), c1h = _mm256_fmadd_ps(ah, _mm256_loadu_ps(b1 + p + 8), c1h);
      c2l = _mm256_fmadd_ps(al, _mm256_loadu_ps(b2 + p), c2l), c2h = _mm256_fmadd_ps(ah, _mm256_loadu_ps(b2 + p + 8), c2h);
      c3l = _mm256_fmadd_ps(al, _mm256_loadu_ps(b3 + p), c3l), c3h = _mm256_fmadd_ps(ah, _mm256_loadu_ps(b3 + p + 8), c3h);
    }
    if (p < k) {  // (masked-off lanes read as zeros and add 0 · 0, as the AVX-512 kernel's do)
      const __m256i ml = below(k - p), mh = below(k - p - 8);
      const __m256 al = _mm256_maskload_ps(a + p, ml), ah = _mm256_maskload_ps(a + p + 8, mh);
      c0l = _mm256_fmadd_ps(al, _mm256_maskload_ps(b0 + p, ml), c0l);
      c0h = _mm256_fmadd_ps(ah, _mm256_maskload_ps(b0 + p + 8, mh), c0h);
      c1l = _mm256_fmadd_ps(al, _mm256_maskload_ps(b1 + p, ml), c1l);
      c1h = _mm256_fmadd_ps(ah, _mm256_maskload_ps(b1 + p + 8, mh), c1h);
      c2l = _mm256_fmadd_ps(al, _mm256_maskload_ps(b2 + p, ml), c2l);
      c2h = _mm256_fmadd_ps(ah, _mm256_maskload_ps(b2 + p + 8, mh), c2h);
      c3l = _mm256_fmadd_ps(al, _mm256_maskload_ps(b3 + p, ml), c3l);
      c3h = _mm256_fmadd_ps(ah, _mm256_maskload_ps(b3 + p + 8, mh), c3h);
    }
    const __m256 t0 = _mm256_hadd_ps(_mm256_add_ps(c0l, c0h), _mm256_add_ps(c1l, c1h));
    const __m256 t1 = _mm256_hadd_ps(_mm256_add_ps(c2l, c2h), _mm256_add_ps(c3l, c3h));
    const __m256 s = _mm256_hadd_ps(t0, t1);  // [sums 0-3 of lanes 0-3 | sums 0-3 of lanes 4-7]
    _mm_storeu_ps(out + 4 * half, _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1)));
  }
}

// Unpacked ("sup") 6×16 kernel for small GEMMs; the contract is in ukernel_avx512.cpp's twin.
namespace {

template <bool kRowsContig>
inline void sup_6x16(std::int64_t k, const float* a, std::int64_t rsa, std::int64_t csa,
                     const float* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha,
                     float beta, int rows, int cols) {
  // named accumulators, as in sgemm_ukernel_avx2_6x16 (an array was stored to the stack every p)
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
#pragma GCC unroll 2
  for (std::int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);
    const float* ap = kRowsContig ? a + p : a + p * csa;
    const std::int64_t step = kRowsContig ? rsa : 1;
    __m256 ai = _mm256_broadcast_ss(ap);
    c00 = _mm256_fmadd_ps(ai, b0, c00), c01 = _mm256_fmadd_ps(ai, b1, c01);
    ai = _mm256_broadcast_ss(ap + step);
    c10 = _mm256_fmadd_ps(ai, b0, c10), c11 = _mm256_fmadd_ps(ai, b1, c11);
    ai = _mm256_broadcast_ss(ap + 2 * step);
    c20 = _mm256_fmadd_ps(ai, b0, c20), c21 = _mm256_fmadd_ps(ai, b1, c21);
    ai = _mm256_broadcast_ss(ap + 3 * step);
    c30 = _mm256_fmadd_ps(ai, b0, c30), c31 = _mm256_fmadd_ps(ai, b1, c31);
    ai = _mm256_broadcast_ss(ap + 4 * step);
    c40 = _mm256_fmadd_ps(ai, b0, c40), c41 = _mm256_fmadd_ps(ai, b1, c41);
    ai = _mm256_broadcast_ss(ap + 5 * step);
    c50 = _mm256_fmadd_ps(ai, b0, c50), c51 = _mm256_fmadd_ps(ai, b1, c51);
  }
  const __m256 acc[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int i = 0; i < rows; ++i) {
    for (int h = 0; h < 2; ++h) {
      const int n = cols - 8 * h;
      if (n <= 0) break;
      float* ci = c + i * ldc + 8 * h;
      __m256 r = _mm256_mul_ps(va, acc[i][h]);
      if (beta != 0.0f) r = _mm256_add_ps(r, _mm256_mul_ps(vb, load_n(ci, n)));
      store_n(ci, r, n);
    }
  }
}

}  // namespace

void sgemm_sup_avx2_6x16(std::int64_t k, const float* a, std::int64_t rsa, std::int64_t csa,
                         const float* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha,
                         float beta, int rows, int cols) {
  if (csa == 1) sup_6x16<true>(k, a, rsa, csa, b, ldb, c, ldc, alpha, beta, rows, cols);
  else sup_6x16<false>(k, a, rsa, csa, b, ldb, c, ldc, alpha, beta, rows, cols);
}

}  // namespace fastnn

namespace fastnn {

// Packing with a transpose (gemm_pack.h): d[p*mr + i] = src[i*rs + p] for i < rows, p < kc.
// 8×8 blocks go through registers (8 loads, 24 shuffles, 8 stores), twice the width of the
// SSE2 4×4 blocks the baseline build uses. Packing W1 (128×784) is about a third of X·W1ᵀ at
// batch 32; this made that product 5-6% faster (1 and 2 threads). A pure copy: no value changes.
void pack_transposed_avx2(std::int64_t rows, std::int64_t kc, const float* src, std::int64_t rs,
                          int mr, float* d) {
  const std::int64_t rows8 = rows / 8 * 8, kc8 = kc / 8 * 8;
  // k outer, rows inner: each group of 8 k steps writes whole contiguous rows of the panel
  // (8 × mr values) instead of touching each output cache line from several passes.
  for (std::int64_t p = 0; p < kc8; p += 8) {
    for (std::int64_t i = 0; i < rows8; i += 8) {
      const float* r = src + i * rs + p;
      __m256 v[8], t[8];
      for (int q = 0; q < 8; ++q) v[q] = _mm256_loadu_ps(r + q * rs);
      for (int q = 0; q < 8; q += 2) {
        t[q] = _mm256_unpacklo_ps(v[q], v[q + 1]);      // rows q, q+1 interleaved, low pairs
        t[q + 1] = _mm256_unpackhi_ps(v[q], v[q + 1]);  // high pairs
      }
      for (int h = 0; h < 8; h += 4) {  // 4-row groups: columns (0,4) (1,5) (2,6) (3,7) per lane
        v[h + 0] = _mm256_shuffle_ps(t[h + 0], t[h + 2], 0x44);
        v[h + 1] = _mm256_shuffle_ps(t[h + 0], t[h + 2], 0xEE);
        v[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        v[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
      }
      for (int q = 0; q < 4; ++q) {  // join the 128-bit lanes of the two row groups
        _mm256_storeu_ps(d + (p + q) * mr + i, _mm256_permute2f128_ps(v[q], v[q + 4], 0x20));
        _mm256_storeu_ps(d + (p + q + 4) * mr + i, _mm256_permute2f128_ps(v[q], v[q + 4], 0x31));
      }
    }
    for (std::int64_t i = rows8; i < rows; ++i)
      for (std::int64_t q = p; q < p + 8; ++q) d[q * mr + i] = src[i * rs + q];
  }
  for (std::int64_t p = kc8; p < kc; ++p)
    for (std::int64_t i = 0; i < rows; ++i) d[p * mr + i] = src[i * rs + p];
}

// The FMA limit of one core (fma_probe in ukernel.h): 12 independent chains of 256-bit FMAs.
float fma_chains_avx2(std::int64_t n) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps((float)i);
  const __m256 a = _mm256_set1_ps(0.5f), b = _mm256_set1_ps(1.0f);  // x -> x/2 + 1: stays finite
  for (std::int64_t p = 0; p < n; ++p)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

}  // namespace fastnn
