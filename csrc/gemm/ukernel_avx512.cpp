// AVX-512F float micro-kernel, 12×32: 24 zmm accumulators, 2 loads of B and 12 broadcasts of A
// per k. Compiled with -mavx512f -mfma and only called after a CPUID check (ukernel_select.cpp).
// Includes nothing but intrinsics so no shared inline code gets compiled with AVX-512 flags.
#include <immintrin.h>
#include <cstdint>

namespace fastnn {

void sgemm_ukernel_avx512_12x32(std::int64_t k, const float* a, const float* b, float* c,
                                std::int64_t ldc, float alpha, float beta) {
  __m512 acc[12][2];
  for (int i = 0; i < 12; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (std::int64_t p = 0; p < k; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    for (int i = 0; i < 12; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += 12;
    b += 32;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
    for (int i = 0; i < 12; ++i) {
      _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
    for (int i = 0; i < 12; ++i) {
      for (int h = 0; h < 2; ++h) {
        float* ci = c + i * ldc + 16 * h;
        _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_mul_ps(va, acc[i][h]),
                                           _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
      }
    }
  }
}

}  // namespace fastnn

namespace fastnn {

// The 12×16 variant for C at most 16 columns wide (e.g. a 10-class output layer): one zmm
// accumulator per row instead of wasting most of a 32-wide tile.
void sgemm_ukernel_avx512_12x16(std::int64_t k, const float* a, const float* b, float* c,
                                std::int64_t ldc, float alpha, float beta) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (std::int64_t p = 0; p < k; ++p) {
    const __m512 b0 = _mm512_loadu_ps(b);
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b0, acc[i]);
    a += 12;
    b += 16;
  }
  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {
    for (int i = 0; i < 12; ++i) _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i]));
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
    for (int i = 0; i < 12; ++i) {
      float* ci = c + i * ldc;
      _mm512_storeu_ps(ci, _mm512_add_ps(_mm512_mul_ps(va, acc[i]), _mm512_mul_ps(vb, _mm512_loadu_ps(ci))));
    }
  }
}

}  // namespace fastnn

namespace fastnn {

// Unpacked ("sup") kernels for small GEMMs: A and B are read where they lie, so a small product
// pays no packing. C[0:rows, 0:cols] = alpha * A·B + beta * C with
//   A(i, p) = a[i*rsa + p*csa]   (either rsa == 1 or csa == 1; all MR rows must be readable)
//   B(p, j) = b[p*ldb + j]       (all 16·NV columns must be readable)
// Every C element is summed over all of K in order in one register, so the 12-, 8- and 4-row
// variants give each row the same bits.
namespace {

inline __mmask16 lanes_upto(int n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? 0 : __mmask16((1u << n) - 1); }

template <int MR, int NV, bool kRowsContig>
inline void sup_kernel(std::int64_t k, const float* a, std::int64_t rsa, std::int64_t csa,
                       const float* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha,
                       float beta, int rows, int cols) {
  static_assert(MR % 4 == 0 && MR <= 12);
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  if constexpr (kRowsContig) {  // A row-major: row i starts at a + i*rsa
    const float* ag[MR / 4];    // rows 4g .. 4g+3 are ag[g] + (0..3)*rsa
    for (int g = 0; g < MR / 4; ++g) ag[g] = a + 4 * g * rsa;
#pragma GCC unroll 2
    for (std::int64_t p = 0; p < k; ++p) {
      __m512 bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + p * ldb + 16 * v);
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(ag[i / 4][(i % 4) * rsa + p]);
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
  } else {  // A column-major (a transposed operand or a packed sliver): MR values per p
#pragma GCC unroll 2
    for (std::int64_t p = 0; p < k; ++p) {
      __m512 bv[NV];
      for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + p * ldb + 16 * v);
      const float* ap = a + p * csa;
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(ap[i]);
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  for (int i = 0; i < rows && i < MR; ++i) {
    for (int v = 0; v < NV; ++v) {
      const __mmask16 m = lanes_upto(cols - 16 * v);
      float* ci = c + i * ldc + 16 * v;
      __m512 r = _mm512_mul_ps(va, acc[i][v]);
      if (beta != 0.0f) r = _mm512_add_ps(r, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m, ci)));
      _mm512_mask_storeu_ps(ci, m, r);
    }
  }
}

}  // namespace

template <int MR, int NV>
void sgemm_sup_avx512(std::int64_t k, const float* a, std::int64_t rsa, std::int64_t csa,
                      const float* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha,
                      float beta, int rows, int cols) {
  if (csa == 1) sup_kernel<MR, NV, true>(k, a, rsa, csa, b, ldb, c, ldc, alpha, beta, rows, cols);
  else sup_kernel<MR, NV, false>(k, a, rsa, csa, b, ldb, c, ldc, alpha, beta, rows, cols);
}
#define FASTNN_SUP(MR, NV)                                                                    \
  template void sgemm_sup_avx512<MR, NV>(std::int64_t, const float*, std::int64_t, std::int64_t, \
                                         const float*, std::int64_t, float*, std::int64_t, float, \
                                         float, int, int);
FASTNN_SUP(12, 2) FASTNN_SUP(8, 2) FASTNN_SUP(4, 2)
FASTNN_SUP(12, 1) FASTNN_SUP(8, 1) FASTNN_SUP(4, 1)
#undef FASTNN_SUP

}  // namespace fastnn

namespace fastnn {

namespace {

// The main loop of sdot8 over whole 16-float chunks; returns where it stopped. The rows stream
// from L2 (a 784x128 weight is 400 KB). When they start on cache lines (a 784-wide layer in
// the parameter buffer does), the hardware prefetchers keep up with the eight streams and
// asking ahead only costs load slots; when they do not, every load spans two lines, and asking
// for each row 256 bytes ahead helps. Measured, 1x784·(128x784)ᵀ on one thread, weights in
// L2: rows on lines 2.90 µs without prefetching, 3.11 with; rows off lines 4.2 with, 4.6-4.75
// without.
template <bool kPrefetch>
inline std::int64_t sdot8_chunks(std::int64_t k, const float* a, const float* b, std::int64_t ldb,
                                 __m512* acc) {
  std::int64_t p = 0;
  for (; p + 16 <= k; p += 16) {
    const __m512 av = _mm512_loadu_ps(a + p);
    if constexpr (kPrefetch)
      for (int j = 0; j < 8; ++j) _mm_prefetch((const char*)(b + j * ldb + p + 64), _MM_HINT_T0);
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + j * ldb + p), acc[j]);
  }
  return p;
}

}  // namespace

// Eight dot products at once for GEMMs with a handful of rows (inference at batch 1):
// out[j] = a · b[j*ldb : j*ldb + k] for j < 8. Each 16-float chunk of `a` is loaded once for
// eight FMAs; each output keeps 16 lane sums, added at the end in a fixed tree (the same for
// every j), so the result does not depend on which thread computes it.
void sdot8_avx512(std::int64_t k, const float* a, const float* b, std::int64_t ldb, float* out) {
  __m512 acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = _mm512_setzero_ps();
  const bool rows_on_lines = reinterpret_cast<std::uintptr_t>(b) % 64 == 0 && ldb % 16 == 0;
  // (A prefetch past the end of a row never faults.)
  const std::int64_t p = rows_on_lines ? sdot8_chunks<false>(k, a, b, ldb, acc)
                                       : sdot8_chunks<true>(k, a, b, ldb, acc);
  if (p < k) {
    const __mmask16 m = __mmask16((1u << (k - p)) - 1);
    const __m512 av = _mm512_maskz_loadu_ps(m, a + p);
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, b + j * ldb + p), acc[j]);
  }
  // 8 x 16 lane sums -> 8 sums: fold 512 to 256 bits, then the usual hadd transpose.
  __m256 h[8];
  for (int j = 0; j < 8; ++j) {
    const __m256 lo = _mm512_castps512_ps256(acc[j]);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[j]), 1));
    h[j] = _mm256_add_ps(lo, hi);
  }
  const __m256 t0 = _mm256_hadd_ps(h[0], h[1]), t1 = _mm256_hadd_ps(h[2], h[3]);
  const __m256 t2 = _mm256_hadd_ps(h[4], h[5]), t3 = _mm256_hadd_ps(h[6], h[7]);
  const __m256 s0 = _mm256_hadd_ps(t0, t1), s1 = _mm256_hadd_ps(t2, t3);
  // s0 = [sums 0-3 of lanes 0-3 | sums 0-3 of lanes 4-7], s1 likewise for outputs 4-7
  const __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31));
  _mm256_storeu_ps(out, r);
}

// The FMA limit of one core (fma_probe in ukernel.h): 12 independent chains of 512-bit FMAs,
// as many as the micro-kernels keep in flight, n steps each.
float fma_chains_avx512(std::int64_t n) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps((float)i);
  const __m512 a = _mm512_set1_ps(0.5f), b = _mm512_set1_ps(1.0f);  // x -> x/2 + 1: stays finite
  for (std::int64_t p = 0; p < n; ++p)
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

}  // namespace fastnn
