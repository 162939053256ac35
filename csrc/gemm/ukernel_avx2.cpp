// AVX2+FMA float micro-kernel, 6×16: 12 ymm accumulators, 2 loads of B and 6 broadcasts of A
// per k. Compiled with -mavx2 -mfma and only called after a CPUID check (ukernel_select.cpp).
// Includes nothing but intrinsics so no shared inline code gets compiled with AVX2 flags.
#include <immintrin.h>
#include <cstdint>

namespace fastnn {

void sgemm_ukernel_avx2_6x16(std::int64_t k, const float* a, const float* b, float* c,
                             std::int64_t ldc, float alpha, float beta) {
  __m256 acc[6][2];
  for (int i = 0; i < 6; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (std::int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    for (int i = 0; i < 6; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += 6;
    b += 16;
  }
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
