// AVX-512F kernel of the convolution's GEMM with its im2col left implicit (conv.cpp):
//   C[i, j] = Σ_p A[i, p] · src[taps[p] + j]     i < rows, j < cols
// B's row p is the padded image (or gradient) read at offset taps[p], where an explicit
// im2col would have copied it. Each C value is one FMA chain over p in order, as the packed
// GEMM's micro-kernels sum (so a forward convolution keeps the bits of the GEMM on this path).
// Tiles of MR rows × 32 columns: 2·MR zmm accumulators, two loads of B and MR broadcasts of A
// per p. Compiled with -mavx512f -mfma, called only on the AVX-512 path (conv_taps_f32()).
// Includes nothing but intrinsics, so no shared inline code gets AVX-512 flags.
#include <immintrin.h>
#include <cstdint>
#include "kernels/conv_simd.h"

namespace fastnn {
namespace {

constexpr int kPanel = kConvTileRows;  // rows of a packed A panel

inline __mmask16 upto(std::int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}

// rows <= MR: rows past `rows` are not read (row rows - 1 is used again, never stored).
// The epilogue (ConvTapsTile in conv_simd.h): + C when `add`, + bias, ReLU, then the `valid`
// lanes stored side by side.
// kPacked: A is a panel, a[p·12 + i] (arow unused): one pointer for all the broadcasts, where
// 12 row pointers do not fit the general registers (GCC's loop then reloads 9–50 of them from
// the stack per two steps of p; measured, the forward of 32 → 64 channels on 14×14, 128
// samples, one thread: ~7.9 → ~7.3 ms, within this machine's noise of ±10%).
template <int MR, bool kFull, bool kPacked>
inline void tile(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a, const std::int64_t* arow,
                 const std::int64_t* taps, const float* src, float* c, std::int64_t ldc, int rows, int cols,
                 std::uint32_t valid, bool add, const float* bias, bool relu) {
  __m512 acc[MR][2];
  const float* ar[MR];
  for (int i = 0; i < MR; ++i) {
    acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    ar[i] = kPacked ? a : a + arow[i < rows ? i : rows - 1];
  }
  const __mmask16 m0 = upto(cols), m1 = upto(cols - 16);
  for (std::int64_t s0 = 0; s0 < k; s0 += stride) {
    const std::int64_t end = s0 + seg < k ? s0 + seg : k;
#pragma GCC unroll 2
    for (std::int64_t p = s0; p < end; ++p) {
      const float* b = src + taps[p];
      const __m512 b0 = kFull ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(m0, b);
      const __m512 b1 = kFull ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(m1, b + 16);
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(kPacked ? a[p * kPanel + i] : ar[i][p]);
        acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
      }
    }
  }
  const __mmask16 v0 = __mmask16(valid & m0), v1 = __mmask16((valid >> 16) & m1);
  const int n0 = __builtin_popcount(v0), n1 = __builtin_popcount(v1);
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < rows; ++i) {
    __m512 r0 = acc[i][0], r1 = acc[i][1];
    float* ci = c + i * ldc;
    if (add) {  // (only with every lane kept)
      r0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, ci), r0);
      r1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, ci + 16), r1);
    }
    if (bias) {
      const __m512 bi = _mm512_set1_ps(bias[i]);
      r0 = _mm512_add_ps(r0, bi), r1 = _mm512_add_ps(r1, bi);
    }
    if (relu) {  // x < 0 ? 0 : x, as relu() (NaN and -0 pass)
      r0 = _mm512_mask_mov_ps(r0, _mm512_cmp_ps_mask(r0, zero, _CMP_LT_OQ), zero);
      r1 = _mm512_mask_mov_ps(r1, _mm512_cmp_ps_mask(r1, zero, _CMP_LT_OQ), zero);
    }
    if (v0 == m0 && v1 == m1) {  // every lane kept: plain stores
      _mm512_mask_storeu_ps(ci, m0, r0);
      _mm512_mask_storeu_ps(ci + 16, m1, r1);
    } else {  // compressed in registers, then stored (the memory form of compress is far slower)
      _mm512_mask_storeu_ps(ci, upto(n0), _mm512_maskz_compress_ps(v0, r0));
      _mm512_mask_storeu_ps(ci + n0, upto(n1), _mm512_maskz_compress_ps(v1, r1));
    }
  }
}

template <int MR>
void tile_any(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a, const std::int64_t* arow,
              const std::int64_t* taps, const float* src, float* c, std::int64_t ldc, int rows, int cols,
              std::uint32_t valid, bool add, const float* bias, bool relu) {
  if (!arow) {
    if (cols >= 32) tile<MR, true, true>(k, seg, stride, a, arow, taps, src, c, ldc, rows, cols, valid, add, bias, relu);
    else tile<MR, false, true>(k, seg, stride, a, arow, taps, src, c, ldc, rows, cols, valid, add, bias, relu);
  } else {
    if (cols >= 32) tile<MR, true, false>(k, seg, stride, a, arow, taps, src, c, ldc, rows, cols, valid, add, bias, relu);
    else tile<MR, false, false>(k, seg, stride, a, arow, taps, src, c, ldc, rows, cols, valid, add, bias, relu);
  }
}

}  // namespace

// One tile of at most 12 rows and 32 columns.
void conv_taps_tile_avx512(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                           const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                           std::int64_t ldc, int rows, int cols, std::uint32_t valid, bool add, const float* bias,
                           bool relu) {
  if (rows > 8) tile_any<12>(k, seg, stride, a, arow, taps, src, c, ldc, rows, cols, valid, add, bias, relu);
  else if (rows > 4) tile_any<8>(k, seg, stride, a, arow, taps, src, c, ldc, rows, cols, valid, add, bias, relu);
  else tile_any<4>(k, seg, stride, a, arow, taps, src, c, ldc, rows, cols, valid, add, bias, relu);
}

}  // namespace fastnn


namespace fastnn {
namespace {

// 16 × 16 lane sums -> the 16 sums, in one fixed tree: each 512-bit sum folded to 256 bits,
// then three rounds of horizontal adds (as sdot8 in gemm/ukernel_avx512.cpp).
inline void sum16(const __m512 (&acc)[16], float* out) {
  for (int half = 0; half < 2; ++half) {
    __m256 h[8];
    for (int j = 0; j < 8; ++j) {
      const __m512 a = acc[8 * half + j];
      h[j] = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    }
    const __m256 t0 = _mm256_hadd_ps(h[0], h[1]), t1 = _mm256_hadd_ps(h[2], h[3]);
    const __m256 t2 = _mm256_hadd_ps(h[4], h[5]), t3 = _mm256_hadd_ps(h[6], h[7]);
    const __m256 s0 = _mm256_hadd_ps(t0, t1), s1 = _mm256_hadd_ps(t2, t3);
    _mm256_storeu_ps(out + 8 * half,
                     _mm256_add_ps(_mm256_permute2f128_ps(s0, s1, 0x20), _mm256_permute2f128_ps(s0, s1, 0x31)));
  }
}

template <bool kTail>
inline void dot_step(const float* const* ar, const float* const* br, std::int64_t j, __mmask16 m, __m512 (&acc)[16]) {
  __m512 av[4], bv[4];
  for (int i = 0; i < 4; ++i) av[i] = kTail ? _mm512_maskz_loadu_ps(m, ar[i] + j) : _mm512_loadu_ps(ar[i] + j);
  for (int q = 0; q < 4; ++q) bv[q] = kTail ? _mm512_maskz_loadu_ps(m, br[q] + j) : _mm512_loadu_ps(br[q] + j);
  for (int i = 0; i < 4; ++i)
    for (int q = 0; q < 4; ++q) acc[4 * i + q] = _mm512_fmadd_ps(av[i], bv[q], acc[4 * i + q]);
}

}  // namespace

void conv_taps_dot_avx512(std::int64_t n, const float* a, std::int64_t lda, const std::int64_t* taps, const float* src,
                          float* c, std::int64_t ldc, int rows, int cols, bool add) {
  const float* ar[4];
  const float* br[4];
  for (int i = 0; i < 4; ++i) ar[i] = a + (i < rows ? i : rows - 1) * lda;
  for (int q = 0; q < 4; ++q) br[q] = src + taps[q < cols ? q : cols - 1];
  __m512 acc[16];
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  std::int64_t j = 0;
  for (; j + 16 <= n; j += 16) dot_step<false>(ar, br, j, __mmask16(0xFFFF), acc);
  if (j < n) dot_step<true>(ar, br, j, upto(n - j), acc);
  float sums[16];
  sum16(acc, sums);
  for (int i = 0; i < rows; ++i)
    for (int q = 0; q < cols; ++q) c[i * ldc + q] = add ? c[i * ldc + q] + sums[4 * i + q] : sums[4 * i + q];
}

}  // namespace fastnn

namespace fastnn {

namespace {

// The 16 × 16 floats r[i] lane j -> r[j] lane i, in registers: three rounds of shuffles
inline void transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0x88);
    t[k + 4] = _mm512_shuffle_f32x4(r[k], r[k + 4], 0xdd);
    t[k + 8] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0x88);
    t[k + 12] = _mm512_shuffle_f32x4(r[k + 8], r[k + 12], 0xdd);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
    r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xdd);
    r[k + 4] = _mm512_shuffle_f32x4(t[k + 4], t[k + 12], 0x88);
    r[k + 12] = _mm512_shuffle_f32x4(t[k + 4], t[k + 12], 0xdd);
  }
}

}  // namespace

// dst[j·ldd + i] = src[i·lds + j] for i < rows, j < cols, in blocks of 16 × 16 transposed in
// registers (three rounds of shuffles); edges by masked loads and stores.
void conv_transpose_avx512(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t lds, float* dst,
                           std::int64_t ldd) {
  for (std::int64_t i0 = 0; i0 < rows; i0 += 16)
    for (std::int64_t j0 = 0; j0 < cols; j0 += 16) {
      const __mmask16 mc = upto(cols - j0), mr = upto(rows - i0);
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i0 + i < rows ? _mm512_maskz_loadu_ps(mc, src + (i0 + i) * lds + j0) : _mm512_setzero_ps();
      transpose16(r);
      for (int j = 0; j < 16 && j0 + j < cols; ++j) _mm512_mask_storeu_ps(dst + (j0 + j) * ldd + i0, mr, r[j]);
    }
}

}  // namespace fastnn

namespace fastnn {

// ConvRows (conv_simd.h): per row, 16 lanes at a time, the lanes in [lead, lead + n) loaded
// (masked: the others are not read) and all lanes below width stored. ReLU's mask multiplies,
// as relu_grad does (x·0 keeps x's sign and NaN): relu_grad(y) is 1 unless y <= 0.
void conv_rows_avx512(float* dst, std::int64_t ldd, const float* src, std::int64_t lds, const float* mask,
                      std::int64_t rows, std::int64_t lead, std::int64_t n, std::int64_t width) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (std::int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * ldd;
    for (std::int64_t j = 0; j < width; j += 16) {
      // lanes l with lead <= j + l < lead + n, read at src row offset j + l − lead
      const __mmask16 in = __mmask16(upto(lead + n - j) & ~upto(lead - j));
      const std::int64_t at = r * lds + j - lead;
      __m512 v = _mm512_maskz_loadu_ps(in, src + at);
      if (mask) {
        const __m512 m = _mm512_maskz_loadu_ps(in, mask + at);
        v = _mm512_mul_ps(v, _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m, zero, _CMP_LE_OQ), one, zero));
      }
      _mm512_mask_storeu_ps(d + j, upto(width - j), v);
    }
  }
}

}  // namespace fastnn

namespace fastnn {
namespace {

// PX pixels × 16·NV output channels: acc[j][v] = Σ_p w[p·ldw + 16v + lane] · src[taps[p] + j]
template <int PX, int NV>
void oc_tile(std::int64_t k, const float* w, std::int64_t ldw, const std::int64_t* taps, const float* src,
             float* out, std::int64_t ldo, int px, const float* bias, bool relu) {
  __m512 acc[PX][NV];
  for (int j = 0; j < PX; ++j)
    for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    __m512 wv[NV];
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_loadu_ps(w + p * ldw + 16 * v);
    const float* b = src + taps[p];
    for (int j = 0; j < PX; ++j) {
      const __m512 x = _mm512_set1_ps(b[j]);
      for (int v = 0; v < NV; ++v) acc[j][v] = _mm512_fmadd_ps(x, wv[v], acc[j][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  const __mmask16 keep = upto(px);
  for (int v = 0; v < NV; ++v) {
    __m512 r[16];
    const __m512 bi = bias ? _mm512_loadu_ps(bias + 16 * v) : zero;
    for (int j = 0; j < 16; ++j) {
      if (j >= PX) {
        r[j] = zero;
        continue;
      }
      __m512 a = acc[j][v];
      if (bias) a = _mm512_add_ps(a, bi);
      if (relu) a = _mm512_mask_mov_ps(a, _mm512_cmp_ps_mask(a, zero, _CMP_LT_OQ), zero);
      r[j] = a;
    }
    transpose16(r);  // r[lane] = channel 16v + lane over the pixels
    for (int l = 0; l < 16; ++l) _mm512_mask_storeu_ps(out + (16 * v + l) * ldo, keep, r[l]);
  }
}

}  // namespace

// ConvOcTile (conv_simd.h). At most 28 accumulators: with the weight vectors and the
// broadcast they fit the 32 registers (7 × 4 = 28 plus 4 + 1 did not: 12% slower than 14 × 2).
void conv_oc_tile_avx512(std::int64_t k, const float* w, std::int64_t ldw, int pixels, int nv,
                         const std::int64_t* taps, const float* src, float* out, std::int64_t ldo, int px,
                         const float* bias, bool relu) {
  if (pixels == 14) {
    if (nv == 2) oc_tile<14, 2>(k, w, ldw, taps, src, out, ldo, px, bias, relu);
    else oc_tile<14, 1>(k, w, ldw, taps, src, out, ldo, px, bias, relu);
  } else {
    if (nv == 4) oc_tile<7, 4>(k, w, ldw, taps, src, out, ldo, px, bias, relu);
    else if (nv == 2) oc_tile<7, 2>(k, w, ldw, taps, src, out, ldo, px, bias, relu);
    else oc_tile<7, 1>(k, w, ldw, taps, src, out, ldo, px, bias, relu);
  }
}

}  // namespace fastnn

namespace fastnn {

// ConvTaps64 (conv_simd.h): 6 rows × 64 columns, the rows through row pointers (6 of them stay
// in registers, where 12 did not), 4 loads of B and 6 broadcasts per 24 FMAs.
void conv_taps_tile64_avx512(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                             const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                             std::int64_t ldc, int rows, bool add) {
  constexpr int MR = 6;
  __m512 acc[MR][4];
  const float* ar[MR];
  for (int i = 0; i < MR; ++i) {
    for (int v = 0; v < 4; ++v) acc[i][v] = _mm512_setzero_ps();
    ar[i] = a + arow[i < rows ? i : rows - 1];
  }
  for (std::int64_t s0 = 0; s0 < k; s0 += stride) {
    const std::int64_t end = s0 + seg < k ? s0 + seg : k;
    for (std::int64_t p = s0; p < end; ++p) {
      const float* b = src + taps[p];
      const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
      const __m512 b2 = _mm512_loadu_ps(b + 32), b3 = _mm512_loadu_ps(b + 48);
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(ar[i][p]);
        acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
        acc[i][3] = _mm512_fmadd_ps(ai, b3, acc[i][3]);
      }
    }
  }
  for (int i = 0; i < rows; ++i)
    for (int v = 0; v < 4; ++v) {
      float* ci = c + i * ldc + 16 * v;
      _mm512_storeu_ps(ci, add ? _mm512_add_ps(_mm512_loadu_ps(ci), acc[i][v]) : acc[i][v]);
    }
}

}  // namespace fastnn

namespace fastnn {
namespace {

// ConvSparseDw for 16·CV channels: the 9·CV accumulators of one output channel o stay in
// registers while its nonzero gradient values are found 16 at a time (a compare, then the set
// bits in ascending order) and each is broadcast against its pixel's 9 taps. LDX > 0: xh's
// rows are LDX apart and the taps a 3 × 3 block (toff[t] = t / 3 · toff[3] + t % 3), so a tap
// is one of three row pointers plus a constant: ~25 instructions per nonzero value where the
// general version (LDX = 0) spent ~60 (GCC kept its nine offsets in vector registers).
template <int CV, int LDX>
void sparse_dw(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff, const float* xh,
               std::int64_t ldx, float* out, std::int64_t ldo, std::int64_t ldt, bool add) {
  const __m512 zero = _mm512_setzero_ps();
  const std::int64_t row = LDX ? toff[3] * LDX : 0;  // the next kernel row, in floats
  std::int64_t off[9];
  for (int t = 0; t < 9; ++t) off[t] = toff[t] * ldx;
  for (int o = 0; o < rows; ++o) {
    const float* go = g + o * ldg;
    __m512 acc[9][CV];
    for (int t = 0; t < 9; ++t)
      for (int v = 0; v < CV; ++v) acc[t][v] = zero;
    for (std::int64_t j0 = 0; j0 < n; j0 += 16) {
      // NaN compares unequal: it is a term, as in the dense sum
      unsigned bits = _mm512_mask_cmp_ps_mask(upto(n - j0), _mm512_maskz_loadu_ps(upto(n - j0), go + j0), zero,
                                              _CMP_NEQ_UQ);
      while (bits) {
        const int l = __builtin_ctz(bits);
        bits &= bits - 1;
        const __m512 gv = _mm512_set1_ps(go[j0 + l]);
        if constexpr (LDX > 0) {
          const float* r0 = xh + (j0 + l) * LDX;
          const float *r1 = r0 + row, *r2 = r1 + row;
          for (int kw = 0; kw < 3; ++kw)
            for (int v = 0; v < CV; ++v) {
              acc[kw][v] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(r0 + kw * LDX + 16 * v), acc[kw][v]);
              acc[3 + kw][v] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(r1 + kw * LDX + 16 * v), acc[3 + kw][v]);
              acc[6 + kw][v] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(r2 + kw * LDX + 16 * v), acc[6 + kw][v]);
            }
        } else {
          const float* px = xh + (j0 + l) * ldx;
          for (int t = 0; t < 9; ++t)
            for (int v = 0; v < CV; ++v)
              acc[t][v] = _mm512_fmadd_ps(gv, _mm512_loadu_ps(px + off[t] + 16 * v), acc[t][v]);
        }
      }
    }
    for (int t = 0; t < 9; ++t)
      for (int v = 0; v < CV; ++v) {
        float* d = out + o * ldo + t * ldt + 16 * v;
        _mm512_storeu_ps(d, add ? _mm512_add_ps(_mm512_loadu_ps(d), acc[t][v]) : acc[t][v]);
      }
  }
}

// Whether the 9 taps' offsets are a 3 × 3 block, toff[t] = t / 3 · toff[3] + t % 3 (no
// dilation): the sparse kernels then reach a tap through one of three row pointers.
bool taps_3x3_block(const std::int64_t* toff) {
  for (int t = 0; t < 9; ++t)
    if (toff[t] != t / 3 * toff[3] + t % 3) return false;
  return true;
}

// ConvSparseDx: the 9 weight vectors of one output channel o stay in registers while its
// nonzero gradient values are found 16 at a time (a compare, then the set bits from the
// highest down) and each is scattered through the 9 taps into the channel-last input gradient:
// a load, an FMA and a store per tap, where the dense kernel spends 1/density FMAs per kept
// one. BLOCK: the taps a 3 × 3 block (toff[t] = t / 3 · toff[3] + t % 3), so a tap is one of
// three row pointers plus a constant (as in sparse_dw).
template <bool BLOCK>
void sparse_dx(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff, const float* w,
               std::int64_t ldw, float* dxh) {
  const __m512 zero = _mm512_setzero_ps();
  const std::int64_t row = 16 * toff[3];  // the next kernel row, in floats (BLOCK)
  const std::int64_t last = (n - 1) / 16 * 16;  // the last block of 16 values
  for (int o = 0; o < rows; ++o) {
    const float* go = g + o * ldg;
    __m512 wv[9];
    for (int t = 0; t < 9; ++t) wv[t] = _mm512_loadu_ps(w + (o * 9 + t) * ldw);
    for (std::int64_t j0 = last; j0 >= 0; j0 -= 16) {
      // NaN compares unequal: it is a term, as in the dense sum
      unsigned bits = _mm512_mask_cmp_ps_mask(upto(n - j0), _mm512_maskz_loadu_ps(upto(n - j0), go + j0), zero,
                                              _CMP_NEQ_UQ);
      while (bits) {
        const int l = 31 - __builtin_clz(bits);
        bits &= ~(1u << l);
        const __m512 gv = _mm512_set1_ps(go[j0 + l]);
        float* px = dxh + (j0 + l) * 16;
        if constexpr (BLOCK) {
          float *r1 = px + row, *r2 = r1 + row;
          for (int kw = 0; kw < 3; ++kw) {
            float *p0 = px + 16 * kw, *p1 = r1 + 16 * kw, *p2 = r2 + 16 * kw;
            _mm512_storeu_ps(p0, _mm512_fmadd_ps(gv, wv[kw], _mm512_loadu_ps(p0)));
            _mm512_storeu_ps(p1, _mm512_fmadd_ps(gv, wv[3 + kw], _mm512_loadu_ps(p1)));
            _mm512_storeu_ps(p2, _mm512_fmadd_ps(gv, wv[6 + kw], _mm512_loadu_ps(p2)));
          }
        } else {
          for (int t = 0; t < 9; ++t) {
            float* p = px + 16 * toff[t];
            _mm512_storeu_ps(p, _mm512_fmadd_ps(gv, wv[t], _mm512_loadu_ps(p)));
          }
        }
      }
    }
  }
}

}  // namespace

// ConvSparseDx (conv_simd.h)
void conv_sparse_dx_avx512(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                           const float* w, std::int64_t ldw, float* dxh) {
  if (n <= 0) return;
  const bool block = taps_3x3_block(toff);
  if (block) sparse_dx<true>(n, g, ldg, rows, toff, w, ldw, dxh);
  else sparse_dx<false>(n, g, ldg, rows, toff, w, ldw, dxh);
}

// ConvSparseDw (conv_simd.h)
void conv_sparse_dw_avx512(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                           const float* xh, std::int64_t ldx, int cv, float* out, std::int64_t ldo, std::int64_t ldt,
                           bool add) {
  const bool block = taps_3x3_block(toff);
  if (block && cv == 2 && ldx == 32) return sparse_dw<2, 32>(n, g, ldg, rows, toff, xh, ldx, out, ldo, ldt, add);
  if (block && cv == 2 && ldx == 64) return sparse_dw<2, 64>(n, g, ldg, rows, toff, xh, ldx, out, ldo, ldt, add);
  if (block && cv == 1 && ldx == 16) return sparse_dw<1, 16>(n, g, ldg, rows, toff, xh, ldx, out, ldo, ldt, add);
  if (cv == 2) sparse_dw<2, 0>(n, g, ldg, rows, toff, xh, ldx, out, ldo, ldt, add);
  else sparse_dw<1, 0>(n, g, ldg, rows, toff, xh, ldx, out, ldo, ldt, add);
}

}  // namespace fastnn

namespace fastnn {
namespace {

// ConvPlane's block of MO output channels × MV vectors of 16 pixels of one output row (the
// AVX2 build's plane_block in zmm: the same FMA chain per value, so its bits). MO·MV
// accumulators (8 × 2 = 16: the FMAs of one tap never wait on each other), MV loads and MO
// broadcasts per tap. The vectors start at 16·v but the last, at `last`, which stores nl lanes.
template <int MO, int MV>
void plane_block(std::int64_t k, const float* w, const std::int64_t* taps, const float* src, float* out,
                 std::int64_t ldo, std::int64_t last, std::int64_t nl, const float* bias, bool relu) {
  __m512 acc[MO][MV];
#pragma GCC unroll 12
  for (int o = 0; o < MO; ++o)
#pragma GCC unroll 2
    for (int v = 0; v < MV; ++v) acc[o][v] = _mm512_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    const float* b = src + taps[p];
    __m512 x[MV];
#pragma GCC unroll 2
    for (int v = 0; v < MV; ++v) x[v] = _mm512_loadu_ps(b + (v < MV - 1 ? 16 * v : last));
#pragma GCC unroll 12
    for (int o = 0; o < MO; ++o) {
      const __m512 wv = _mm512_set1_ps(w[o * k + p]);
#pragma GCC unroll 2
      for (int v = 0; v < MV; ++v) acc[o][v] = _mm512_fmadd_ps(x[v], wv, acc[o][v]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 12
  for (int o = 0; o < MO; ++o) {
    const __m512 bi = bias ? _mm512_set1_ps(bias[o]) : zero;
#pragma GCC unroll 2
    for (int v = 0; v < MV; ++v) {
      __m512 r = acc[o][v];
      if (bias) r = _mm512_add_ps(r, bi);
      if (relu) r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(r, zero, _CMP_LT_OQ), zero);  // (relu8's)
      if (v < MV - 1) _mm512_storeu_ps(out + o * ldo + 16 * v, r);
      else _mm512_mask_storeu_ps(out + o * ldo + last, upto(nl), r);
    }
  }
}

// the last r < R channels of a row in one block
template <int R, int MV>
void plane_rest(std::int64_t r, std::int64_t k, const float* w, const std::int64_t* taps, const float* src,
                float* out, std::int64_t ldo, std::int64_t last, std::int64_t nl, const float* bias, bool relu) {
  if constexpr (R > 0) {
    if (r == R) return plane_block<R, MV>(k, w, taps, src, out, ldo, last, nl, bias, relu);
    plane_rest<R - 1, MV>(r, k, w, taps, src, out, ldo, last, nl, bias, relu);
  }
}

// n pixels of one row from ow on (MV = ⌈n/16⌉ vectors), every channel: blocks of MO, then the
// rest in one. Where the row has 16 pixels before the run's end, its last vector ends there
// (overlapping the one before it: the same FMA chains again) and is stored whole.
template <int MO, int MV>
void plane_row(std::int64_t k, const float* w, std::int64_t noc, const std::int64_t* taps, const float* src,
               float* out, std::int64_t ldo, std::int64_t ow, std::int64_t n, const float* bias, bool relu) {
  const std::int64_t last = ow + n >= 16 ? n - 16 : 16 * (MV - 1), nl = ow + n >= 16 ? 16 : n - last;
  std::int64_t o = 0;
  for (; o + MO <= noc; o += MO)
    plane_block<MO, MV>(k, w + o * k, taps, src, out + o * ldo, ldo, last, nl, bias ? bias + o : nullptr, relu);
  plane_rest<MO - 1, MV>(noc - o, k, w + o * k, taps, src, out + o * ldo, ldo, last, nl, bias ? bias + o : nullptr,
                         relu);
}

}  // namespace

// ConvPlane (conv_simd.h): row by row, its pixels in runs of up to 2 vectors (32 pixels), 8
// channels at a time beside 2 vectors, 12 beside one. Each row's vectors read up to 15 values
// past OW (the padded plane's slack).
void conv_plane_avx512(std::int64_t k, const float* w, std::int64_t noc, const std::int64_t* taps, const float* src,
                       std::int64_t Wp, std::int64_t OH, std::int64_t OW, float* out, std::int64_t ldo,
                       const float* bias, bool relu) {
  for (std::int64_t oh = 0; oh < OH; ++oh)
    for (std::int64_t ow = 0; ow < OW; ow += 32) {
      const std::int64_t n = OW - ow < 32 ? OW - ow : 32;
      const float* s = src + oh * Wp + ow;
      float* o = out + oh * OW + ow;
      if (n > 16) plane_row<8, 2>(k, w, noc, taps, s, o, ldo, ow, n, bias, relu);
      else plane_row<12, 1>(k, w, noc, taps, s, o, ldo, ow, n, bias, relu);
    }
}

}  // namespace fastnn
