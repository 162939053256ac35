// Partial vectors for the AVX2 kernels (conv_avx2.cpp, winograd_avx2.cpp, pool_avx2.cpp and
// the GEMM's gemm/ukernel_avx2.cpp): the first n of 8 lanes loaded (vmaskmovps: masked-off lanes
// are not read) or stored. Stores are plain 4-, 2- and 1-lane ones, not vmaskmovps: a masked
// store costs ~10× a plain one on AMD Zen 2/3 (it took a quarter of the pool's time there).
// Include only from files compiled with -mavx2 -mfma; everything here has internal linkage, so
// no AVX2 code leaks into other files.
#pragma once
#include <immintrin.h>
#include <cstdint>

namespace fastnn {
namespace {

// lanes l < n (n clamped to 0 .. 8) set
inline __m256i below(std::int64_t n) {
  const int m = n <= 0 ? 0 : n >= 8 ? 8 : (int)n;
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256 load_n(const float* p, std::int64_t n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, below(n));
}
inline void store_n(float* p, __m256 v, std::int64_t n) {
  if (n >= 8) return _mm256_storeu_ps(p, v);
  __m128 x = _mm256_castps256_ps128(v);  // 4, 2 and 1 lanes by plain stores
  if (n >= 4) {
    _mm_storeu_ps(p, x);
    x = _mm256_extractf128_ps(v, 1), p += 4, n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), x);
    x = _mm_movehl_ps(x, x), p += 2, n -= 2;
  }
  if (n >= 1) _mm_store_ss(p, x);
}
inline void store_n(std::int32_t* p, __m256i v, std::int64_t n) {  // (the bits moved as floats')
  store_n(reinterpret_cast<float*>(p), _mm256_castsi256_ps(v), n);
}

}  // namespace
}  // namespace fastnn
