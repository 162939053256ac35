// AVX-512F build of the common max pool: a 2×2 window with stride 2 and no padding, float, one
// image plane at a time (pool.cpp calls these through maxpool_2x2_f32() when the AVX-512 path
// is in use). Rows of 7 or 14 outputs are too short for the compiler's vector loops (their
// scalar remainder is all of them); here every row is one or more masked 16-lane steps:
// two loads per input row, split into even and odd columns by a two-source permute.
// The same comparisons in the same order as the scalar code, so the same bits: the first of
// equal maxima, a NaN wins (the last one), the gradient stored as 0 + g (with a ReLU's mask,
// 0 + g · relu_grad(v), as relu_backward then the pool's backward compute it).
#include <immintrin.h>
#include <cstdint>
#include "kernels/pool_simd.h"

namespace fastnn {
namespace {

inline __mmask16 lanes(std::int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }

// columns 2i (even) or 2i + 1 (odd) of the 32 values lo:hi
inline __m512 even(__m512 lo, __m512 hi) {
  return _mm512_permutex2var_ps(lo, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), hi);
}
inline __m512 odd(__m512 lo, __m512 hi) {
  return _mm512_permutex2var_ps(lo, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), hi);
}

// take v over best: larger, or NaN (PyTorch's rule)
inline __mmask16 takes(__m512 v, __m512 best) {
  return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
}

}  // namespace

namespace {

// The plane's pool, each input vector as load(p, mask) gives it (masked-off lanes never reach a
// stored output)
template <class Load>
void pool_plane(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW, std::int64_t W,
                Load load) {
  const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (std::int64_t oh = 0; oh < OH; ++oh) {
    const float* r0 = in + 2 * oh * W;
    const float* r1 = r0 + W;
    for (std::int64_t ow = 0; ow < OW; ow += 16) {
      const std::int64_t n = OW - ow < 16 ? OW - ow : 16;
      const __mmask16 mlo = lanes(2 * n), mhi = lanes(2 * n - 16), m = lanes(n);
      const __m512 a_lo = load(r0 + 2 * ow, mlo), a_hi = load(r0 + 2 * ow + 16, mhi);
      const __m512 b_lo = load(r1 + 2 * ow, mlo), b_hi = load(r1 + 2 * ow + 16, mhi);
      const __m512 v1 = odd(a_lo, a_hi), v2 = even(b_lo, b_hi), v3 = odd(b_lo, b_hi);
      __m512 best = even(a_lo, a_hi);
      __m512i at = _mm512_setzero_si512();
      __mmask16 t = takes(v1, best);
      best = _mm512_mask_mov_ps(best, t, v1), at = _mm512_mask_mov_epi32(at, t, _mm512_set1_epi32(1));
      t = takes(v2, best);
      best = _mm512_mask_mov_ps(best, t, v2), at = _mm512_mask_mov_epi32(at, t, _mm512_set1_epi32((int)W));
      t = takes(v3, best);
      best = _mm512_mask_mov_ps(best, t, v3), at = _mm512_mask_mov_epi32(at, t, _mm512_set1_epi32((int)W + 1));
      // + the window's first index: 2·oh·W + 2·(ow + lane)
      at = _mm512_add_epi32(at, _mm512_add_epi32(lane2, _mm512_set1_epi32((int)(2 * oh * W + 2 * ow))));
      _mm512_mask_storeu_ps(out + oh * OW + ow, m, best);
      _mm512_mask_storeu_epi32(argmax + oh * OW + ow, m, at);
    }
  }
}

}  // namespace

void maxpool_2x2_plane_avx512(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                              std::int64_t W) {
  pool_plane(out, argmax, in, OH, OW, W, [](const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); });
}

// relu((v − m)·scale + b) of each value, as normalize_row (batchnorm.cpp) computes it: a
// subtraction, a product and a sum, rounded each (no FMA), and relu(x) = x < 0 ? 0 : x
void maxpool_2x2_plane_affine_avx512(float* out, std::int32_t* argmax, const float* in, std::int64_t OH,
                                     std::int64_t OW, std::int64_t W, float m, float scale, float b, bool relu) {
  const __m512 vm = _mm512_set1_ps(m), vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(b), zero = _mm512_setzero_ps();
  auto affine = [&](const float* p, __mmask16 k) {
    return _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p), vm), vs), vb);
  };
  if (relu)
    return pool_plane(out, argmax, in, OH, OW, W, [&](const float* p, __mmask16 k) {
      const __m512 v = affine(p, k);
      return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, zero);
    });
  pool_plane(out, argmax, in, OH, OW, W, affine);
}

bool maxpool_2x2_plane_backward_avx512(float* dx, std::int64_t ldx, const float* dout, const float* relu_of,
                                       const std::int32_t* argmax, std::int64_t OH, std::int64_t OW, std::int64_t W) {
  const __m512i lane2 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi_idx = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i one = _mm512_set1_epi32(1), w0 = _mm512_set1_epi32((int)W), w1 = _mm512_set1_epi32((int)W + 1);
  for (std::int64_t oh = 0; oh < OH; ++oh) {
    float* d0 = dx + 2 * oh * ldx;
    float* d1 = d0 + ldx;
    _mm_prefetch((const char*)(dout + oh * OW + kPoolAhead), _MM_HINT_T0);
    _mm_prefetch((const char*)(argmax + oh * OW + kPoolAhead), _MM_HINT_T0);
    if (relu_of) _mm_prefetch((const char*)(relu_of + oh * OW + kPoolAhead), _MM_HINT_T0);
    for (std::int64_t ow = 0; ow < OW; ow += 16) {
      const std::int64_t n = OW - ow < 16 ? OW - ow : 16;
      const __mmask16 m = lanes(n), mlo = lanes(2 * n), mhi = lanes(2 * n - 16);
      __m512 g = _mm512_maskz_loadu_ps(m, dout + oh * OW + ow);
      if (relu_of) {  // g · relu_grad(v): v <= 0 ? 0 : 1, as relu_grad (NaN gives 1)
        const __mmask16 off = _mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(m, relu_of + oh * OW + ow), _mm512_setzero_ps(),
                                                 _CMP_LE_OQ);
        g = _mm512_mul_ps(g, _mm512_mask_blend_ps(off, _mm512_set1_ps(1.0f), _mm512_setzero_ps()));
      }
      const __m512 v = _mm512_add_ps(_mm512_setzero_ps(), g);
      const __m512i at = _mm512_sub_epi32(
          _mm512_maskz_loadu_epi32(m, argmax + oh * OW + ow),
          _mm512_add_epi32(lane2, _mm512_set1_epi32((int)(2 * oh * W + 2 * ow))));
      const __mmask16 k0 = _mm512_cmpeq_epi32_mask(at, _mm512_setzero_si512()), k1 = _mm512_cmpeq_epi32_mask(at, one),
                      k2 = _mm512_cmpeq_epi32_mask(at, w0), k3 = _mm512_cmpeq_epi32_mask(at, w1);
      if ((__mmask16)((k0 | k1 | k2 | k3) & m) != m) return false;  // an index outside its window
      const __m512 e0 = _mm512_maskz_mov_ps(k0, v), o0 = _mm512_maskz_mov_ps(k1, v);
      const __m512 e1 = _mm512_maskz_mov_ps(k2, v), o1 = _mm512_maskz_mov_ps(k3, v);
      _mm512_mask_storeu_ps(d0 + 2 * ow, mlo, _mm512_permutex2var_ps(e0, lo_idx, o0));
      _mm512_mask_storeu_ps(d0 + 2 * ow + 16, mhi, _mm512_permutex2var_ps(e0, hi_idx, o0));
      _mm512_mask_storeu_ps(d1 + 2 * ow, mlo, _mm512_permutex2var_ps(e1, lo_idx, o1));
      _mm512_mask_storeu_ps(d1 + 2 * ow + 16, mhi, _mm512_permutex2var_ps(e1, hi_idx, o1));
    }
  }
  return true;
}

}  // namespace fastnn
