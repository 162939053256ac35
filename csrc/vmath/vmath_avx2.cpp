// AVX2+FMA builds of the vectorised float math (vmath_impl.h). Compiled with -mavx2 -mfma and
// only called after a CPUID check (vmath_f32() in gemm/ukernel_select.cpp).
#include <immintrin.h>
#include <cstdint>
#include "kernels/avx2_lanes.h"

namespace fastnn {
namespace {

struct V {
  using reg = __m256;
  static constexpr int W = 8;
  static __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static reg set1(float a) { return _mm256_set1_ps(a); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg load_tail(const float* p, int n, float fill) {
    const __m256i m = lanes(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  // n < 8 lanes by plain 4-, 2- and 1-lane stores: a masked store (vmaskmovps) costs about ten
  // plain ones on AMD Zen 2/3 (avx2_lanes.h)
  static void store_tail(float* p, reg v, int n) { store_n(p, v, n); }
  static reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm256_div_ps(a, b); }
  // 1/a to about 2^-22: the 12-bit estimate and one Newton step (callers add a second).
  static reg rcp(reg a) {
    const reg r = _mm256_rcp_ps(a);
    return _mm256_fmadd_ps(r, _mm256_fnmadd_ps(a, r, _mm256_set1_ps(1.0f)), r);
  }
  static reg fmadd(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }    // a*b + c
  static reg fnmadd(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a*b
  static reg min(reg a, reg b) { return _mm256_min_ps(a, b); }  // b if either is NaN
  static reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static reg round(reg a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p * 2^n for integral n in [-150, 129]: two factors 2^(n/2), each a normal float, so results
  // in the subnormal range round once as IEEE multiplication does.
  static reg scale2(reg p, reg n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const reg s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const reg s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  }
  static reg pow2(reg n) {  // integral n in [-126, 127]
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static reg abs(reg a) {
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_castps_si256(a), _mm256_set1_epi32(0x7fffffff)));
  }
  static reg copysign(reg mag, reg sgn) {  // mag >= 0
    const __m256i s = _mm256_and_si256(_mm256_castps_si256(sgn), _mm256_set1_epi32(int(0x80000000u)));
    return _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(mag), s));
  }
  static reg select_lt(reg a, reg b, reg x, reg y) {  // a < b ? x : y
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
  static float hmax(reg a) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static float hsum(reg a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
};

#include "vmath/vmath_impl.h"

}  // namespace

void sigmoid_f32_avx2(float* out, const float* x, std::int64_t n) {
  vmap<V>(out, x, n, [](V::reg v) { return vsigmoid<V>(v); });
}
void tanh_f32_avx2(float* out, const float* x, std::int64_t n) {
  vmap<V>(out, x, n, [](V::reg v) { return vtanh<V>(v); });
}
void softmax_rows_f32_avx2(float* out, const float* x, std::int64_t rows, std::int64_t C) {
  for (std::int64_t r = 0; r < rows; ++r) vsoftmax_row<V>(out + r * C, x + r * C, C);
}
void cross_entropy_rows_f32_avx2(float* d, float* max, float* sum, const float* x,
                                 const std::int64_t* target, std::int64_t rows, std::int64_t C,
                                 float scale) {
  for (std::int64_t r = 0; r < rows; ++r)
    vcross_entropy_row<V>(d ? d + r * C : nullptr, max + r, sum + r, x + r * C, C, target[r], scale);
}

}  // namespace fastnn
