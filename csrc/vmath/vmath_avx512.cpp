// AVX-512F builds of the vectorised float math (vmath_impl.h). Compiled with -mavx512f -mfma and
// only called after a CPUID check (vmath_f32() in gemm/ukernel_select.cpp).
#include <immintrin.h>
#include <cstdint>

namespace fastnn {
namespace {

struct V {
  using reg = __m512;
  static constexpr int W = 16;
  static __mmask16 lanes(int n) { return __mmask16((1u << n) - 1); }  // 0 < n < 16
  static reg set1(float a) { return _mm512_set1_ps(a); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg load_tail(const float* p, int n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), lanes(n), p);
  }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static void store_tail(float* p, reg v, int n) { _mm512_mask_storeu_ps(p, lanes(n), v); }
  static reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static reg div(reg a, reg b) { return _mm512_div_ps(a, b); }
  static reg rcp(reg a) { return _mm512_rcp14_ps(a); }  // 1/a to 2^-14
  static reg fmadd(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }    // a*b + c
  static reg fnmadd(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a*b
  static reg min(reg a, reg b) { return _mm512_min_ps(a, b); }  // b if either is NaN
  static reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static reg round(reg a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static reg scale2(reg p, reg n) { return _mm512_scalef_ps(p, n); }
  static reg pow2(reg n) { return _mm512_scalef_ps(_mm512_set1_ps(1.0f), n); }  // integral n
  static reg abs(reg a) {
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)));
  }
  static reg copysign(reg mag, reg sgn) {  // mag >= 0
    const __m512i s = _mm512_and_si512(_mm512_castps_si512(sgn), _mm512_set1_epi32(int(0x80000000u)));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), s));
  }
  static reg select_lt(reg a, reg b, reg x, reg y) {  // a < b ? x : y
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
  }
  static float hmax(reg a) { return _mm512_reduce_max_ps(a); }
  static float hsum(reg a) { return _mm512_reduce_add_ps(a); }
};

#include "vmath/vmath_impl.h"

}  // namespace

void sigmoid_f32_avx512(float* out, const float* x, std::int64_t n) {
  vmap<V>(out, x, n, [](V::reg v) { return vsigmoid<V>(v); });
}
void tanh_f32_avx512(float* out, const float* x, std::int64_t n) {
  vmap<V>(out, x, n, [](V::reg v) { return vtanh<V>(v); });
}
void softmax_rows_f32_avx512(float* out, const float* x, std::int64_t rows, std::int64_t C) {
  for (std::int64_t r = 0; r < rows; ++r) vsoftmax_row<V>(out + r * C, x + r * C, C);
}
void cross_entropy_rows_f32_avx512(float* d, float* max, float* sum, const float* x,
                                 const std::int64_t* target, std::int64_t rows, std::int64_t C,
                                 float scale) {
  for (std::int64_t r = 0; r < rows; ++r)
    vcross_entropy_row<V>(d ? d + r * C : nullptr, max + r, sum + r, x + r * C, C, target[r], scale);
}

}  // namespace fastnn
