// AVX2 build of the common max pool (a 2×2 window with stride 2, no padding, float, one image
// plane at a time; pool_avx512.cpp describes it), for CPUs without AVX-512: 8 outputs per step,
// the two input rows' 16 values split into even and odd columns by a shuffle and a lane
// permute. The same comparisons in the same order as the scalar code, so the same bits.
#include <immintrin.h>
#include <cstdint>
#include "kernels/avx2_lanes.h"
#include "kernels/pool_simd.h"

namespace fastnn {
namespace {

// columns 2i (even) or 2i + 1 (odd) of the 16 values lo:hi
inline __m256 even(__m256 lo, __m256 hi) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
}
inline __m256 odd(__m256 lo, __m256 hi) {
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

// take v over best: larger, or NaN (PyTorch's rule)
inline __m256 takes(__m256 v, __m256 best) {
  return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}
inline __m256 ints(int v) { return _mm256_castsi256_ps(_mm256_set1_epi32(v)); }

// Where the 8 outputs from ow0 start: a row's last 8 end at its end, overlapping the 8 before
// them (their values written again, the same), so that every load and store is whole when a
// row has 8 outputs or more. Forward only: rows of 14 outputs, one image of 32 channels of
// 28 × 28, 6.7 → 5.2 µs on Zen 3 (in a C++ loop, the two alternating; 11.4 → 8.8 in a slower
// hour); the backward, whose edge stores were plain partial ones already, was 3% slower so.
inline std::int64_t last_step(std::int64_t ow0, std::int64_t OW) {
  return ow0 + 8 > OW && OW >= 8 ? OW - 8 : ow0;
}
}  // namespace

namespace {

// The plane's pool, each input vector as load(p, n) gives it (lanes past n never reach a
// stored output)
template <class Load>
void pool_plane(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW, std::int64_t W,
                Load load) {
  const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  for (std::int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = in + 2 * oh * W;
    const float* r1 = r0 + W;
    for (std::int64_t ow0 = 0; ow0 < OW; ow0 += 8) {
      const std::int64_t ow = last_step(ow0, OW), n = OW - ow < 8 ? OW - ow : 8;
      const __m256 a_lo = load(r0 + 2 * ow, 2 * n), a_hi = load(r0 + 2 * ow + 8, 2 * n - 8);
      const __m256 b_lo = load(r1 + 2 * ow, 2 * n), b_hi = load(r1 + 2 * ow + 8, 2 * n - 8);
      const __m256 v1 = odd(a_lo, a_hi), v2 = even(b_lo, b_hi), v3 = odd(b_lo, b_hi);
      __m256 best = even(a_lo, a_hi), at = ints(0);
      __m256 t = takes(v1, best);
      best = _mm256_blendv_ps(best, v1, t), at = _mm256_blendv_ps(at, ints(1), t);
      t = takes(v2, best);
      best = _mm256_blendv_ps(best, v2, t), at = _mm256_blendv_ps(at, ints((int)W), t);
      t = takes(v3, best);
      best = _mm256_blendv_ps(best, v3, t), at = _mm256_blendv_ps(at, ints((int)W + 1), t);
      // + the window's first index: 2·oh·W + 2·(ow + lane)
      const __m256i where = _mm256_add_epi32(_mm256_castps_si256(at),
                                             _mm256_add_epi32(lane2, _mm256_set1_epi32((int)(2 * oh * W + 2 * ow))));
      store_n(out + oh * OW + ow, best, n);
      store_n(argmax + oh * OW + ow, where, n);
    }
  }
}

}  // namespace

void maxpool_2x2_plane_avx2(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                            std::int64_t W) {
  pool_plane(out, argmax, in, OH, OW, W, [](const float* p, std::int64_t n) { return load_n(p, n); });
}

// relu((v − m)·scale + b) of each value (pool_avx512.cpp)
void maxpool_2x2_plane_affine_avx2(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                                   std::int64_t W, float m, float scale, float b, bool relu) {
  const __m256 vm = _mm256_set1_ps(m), vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(b), zero = _mm256_setzero_ps();
  auto affine = [&](const float* p, std::int64_t n) {
    return _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(load_n(p, n), vm), vs), vb);
  };
  if (relu)
    return pool_plane(out, argmax, in, OH, OW, W, [&](const float* p, std::int64_t n) {
      const __m256 v = affine(p, n);
      return _mm256_blendv_ps(v, zero, _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
    });
  pool_plane(out, argmax, in, OH, OW, W, affine);
}

bool maxpool_2x2_plane_backward_avx2(float* dx, std::int64_t ldx, const float* dout, const float* relu_of,
                                     const std::int32_t* argmax, std::int64_t OH, std::int64_t OW, std::int64_t W) {
  const __m256i lane2 = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i one = _mm256_set1_epi32(1), w0 = _mm256_set1_epi32((int)W), w1 = _mm256_set1_epi32((int)W + 1);
  const __m256 zero = _mm256_setzero_ps();
  for (std::int64_t oh = 0; oh < OH; ++oh) {
    float* d0 = dx + 2 * oh * ldx;
    float* d1 = d0 + ldx;
    _mm_prefetch((const char*)(dout + oh * OW + kPoolAhead), _MM_HINT_T0);
    _mm_prefetch((const char*)(argmax + oh * OW + kPoolAhead), _MM_HINT_T0);
    if (relu_of) _mm_prefetch((const char*)(relu_of + oh * OW + kPoolAhead), _MM_HINT_T0);
    for (std::int64_t ow = 0; ow < OW; ow += 8) {
      const std::int64_t n = OW - ow < 8 ? OW - ow : 8;
      const __m256i m = below(n);
      __m256 g = _mm256_maskload_ps(dout + oh * OW + ow, m);
      if (relu_of) {  // g · relu_grad(v): v <= 0 ? 0 : 1, as relu_grad (NaN gives 1)
        const __m256 off = _mm256_cmp_ps(_mm256_maskload_ps(relu_of + oh * OW + ow, m), zero, _CMP_LE_OQ);
        g = _mm256_mul_ps(g, _mm256_blendv_ps(_mm256_set1_ps(1.0f), zero, off));
      }
      const __m256 v = _mm256_add_ps(zero, g);
      const __m256i at = _mm256_sub_epi32(_mm256_maskload_epi32(argmax + oh * OW + ow, m),
                                          _mm256_add_epi32(lane2, _mm256_set1_epi32((int)(2 * oh * W + 2 * ow))));
      const __m256i k0 = _mm256_cmpeq_epi32(at, _mm256_setzero_si256()), k1 = _mm256_cmpeq_epi32(at, one),
                    k2 = _mm256_cmpeq_epi32(at, w0), k3 = _mm256_cmpeq_epi32(at, w1);
      const __m256i any = _mm256_or_si256(_mm256_or_si256(k0, k1), _mm256_or_si256(k2, k3));
      if (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_andnot_si256(any, m))))
        return false;  // an index outside its window
      const __m256 e0 = _mm256_and_ps(_mm256_castsi256_ps(k0), v), o0 = _mm256_and_ps(_mm256_castsi256_ps(k1), v);
      const __m256 e1 = _mm256_and_ps(_mm256_castsi256_ps(k2), v), o1 = _mm256_and_ps(_mm256_castsi256_ps(k3), v);
      // interleaved: e0 o0 e1 o1 ... (unpack within 128-bit lanes, then the lanes put in order)
      const __m256 l0 = _mm256_unpacklo_ps(e0, o0), h0 = _mm256_unpackhi_ps(e0, o0);
      const __m256 l1 = _mm256_unpacklo_ps(e1, o1), h1 = _mm256_unpackhi_ps(e1, o1);
      store_n(d0 + 2 * ow, _mm256_permute2f128_ps(l0, h0, 0x20), 2 * n);
      store_n(d0 + 2 * ow + 8, _mm256_permute2f128_ps(l0, h0, 0x31), 2 * n - 8);
      store_n(d1 + 2 * ow, _mm256_permute2f128_ps(l1, h1, 0x20), 2 * n);
      store_n(d1 + 2 * ow + 8, _mm256_permute2f128_ps(l1, h1, 0x31), 2 * n - 8);
    }
  }
  return true;
}

}  // namespace fastnn
