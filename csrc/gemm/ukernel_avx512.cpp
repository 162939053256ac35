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
