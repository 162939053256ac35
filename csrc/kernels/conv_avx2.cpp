// AVX2 + FMA builds of the convolution's vector kernels (conv_simd.h), for CPUs without AVX-512
// (AMD Zen 2/3, Intel before Skylake-SP): the same contracts as conv_avx512.cpp, 8 lanes wide
// and tiled for 16 ymm registers. Every value is summed as the AVX-512 kernel sums it — one FMA
// chain over p in order, or (the dots) the same 16 lane sums and the same tree — so the two
// paths give the same bits; only how values are grouped into tiles differs, which changes none.
// Edges are partial loads and stores (avx2_lanes.h).
// Compiled with -mavx2 -mfma; includes only intrinsics.
#include <immintrin.h>
#include <cstdint>
#include "kernels/avx2_lanes.h"
#include "kernels/conv_simd.h"

namespace fastnn {
namespace {

// x < 0 ? 0 : x, as relu() (NaN and -0 pass)
inline __m256 relu8(__m256 x) {
  const __m256 zero = _mm256_setzero_ps();
  return _mm256_blendv_ps(x, zero, _mm256_cmp_ps(x, zero, _CMP_LT_OQ));
}

// r[i] lane j -> r[j] lane i for an 8 × 8 block
inline void transpose8(__m256 (&r)[8]) {
  __m256 t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    r[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
    t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
  }
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}

// MR rows × 16 columns of Σ_p a(i, p) · src[taps[p] + j] for the p < k in runs of `seg` every
// `stride`, into res (rows 32 apart): 2·MR accumulators, two loads of B and MR broadcasts per p.
// kPacked: a(i, p) = a[p·12 + i], else ar[i][p]. n0, n1: the columns read of each half.
template <int MR, bool kPacked>
inline void block16(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a, const float* const* ar,
                    const std::int64_t* taps, const float* src, std::int64_t n0, std::int64_t n1, float* res) {
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
  const bool full = n0 >= 8 && n1 >= 8;
  const __m256i m0 = below(n0), m1 = below(n1);
  for (std::int64_t s0 = 0; s0 < k; s0 += stride) {
    const std::int64_t end = s0 + seg < k ? s0 + seg : k;
    for (std::int64_t p = s0; p < end; ++p) {
      const float* b = src + taps[p];
      const __m256 b0 = full ? _mm256_loadu_ps(b) : _mm256_maskload_ps(b, m0);
      const __m256 b1 = full ? _mm256_loadu_ps(b + 8) : _mm256_maskload_ps(b + 8, m1);
      for (int i = 0; i < MR; ++i) {
        const __m256 x = _mm256_set1_ps(kPacked ? a[p * kConvTileRows + i] : ar[i][p]);
        acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
        acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm256_storeu_ps(res + i * 32, acc[i][0]);
    _mm256_storeu_ps(res + i * 32 + 8, acc[i][1]);
  }
}

// rows (<= 12) × cols (<= 32) sums into res[i·32 + j], in blocks of up to 6 rows × 16 columns
template <bool kPacked>
void sums(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a, const std::int64_t* arow,
          const std::int64_t* taps, const float* src, int rows, int cols, float* res) {
  for (int r0 = 0; r0 < rows; r0 += 6) {
    const float* ar[6];
    for (int i = 0; i < 6; ++i) ar[i] = kPacked ? a : a + arow[r0 + i < rows ? r0 + i : rows - 1];
    const float* ap = a + r0;  // (packed: the panel's row r0 on)
    for (int j0 = 0; j0 < cols; j0 += 16) {
      const std::int64_t n0 = cols - j0, n1 = cols - j0 - 8;
      float* out = res + r0 * 32 + j0;
      if (rows - r0 > 3) block16<6, kPacked>(k, seg, stride, ap, ar, taps, src + j0, n0, n1, out);
      else if (rows - r0 > 1) block16<3, kPacked>(k, seg, stride, ap, ar, taps, src + j0, n0, n1, out);
      else block16<1, kPacked>(k, seg, stride, ap, ar, taps, src + j0, n0, n1, out);
    }
  }
}

}  // namespace

// ConvTapsTile (conv_simd.h): the sums, then per row + C (when `add`), + bias, ReLU, and the
// `valid` columns stored side by side.
void conv_taps_tile_avx2(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                         const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                         std::int64_t ldc, int rows, int cols, std::uint32_t valid, bool add, const float* bias,
                         bool relu) {
  alignas(32) float res[12 * 32];
  if (arow) sums<false>(k, seg, stride, a, arow, taps, src, rows, cols, res);
  else sums<true>(k, seg, stride, a, arow, taps, src, rows, cols, res);
  const std::uint32_t all = cols >= 32 ? 0xFFFFFFFFu : (1u << cols) - 1;
  valid &= all;
  for (int i = 0; i < rows; ++i) {
    float* ci = c + i * ldc;
    const float* r = res + i * 32;
    if (valid == all) {  // every column kept: vectors
      for (int j = 0; j < cols; j += 8) {
        __m256 v = _mm256_loadu_ps(r + j);
        if (add) v = _mm256_add_ps(load_n(ci + j, cols - j), v);
        if (bias) v = _mm256_add_ps(v, _mm256_set1_ps(bias[i]));
        if (relu) v = relu8(v);
        store_n(ci + j, v, cols - j);
      }
      continue;
    }
    int at = 0;  // (at <= j: no column is written before it is read)
    for (int j = 0; j < cols; ++j)
      if (valid >> j & 1) {
        float v = add ? ci[j] + r[j] : r[j];
        if (bias) v = v + bias[i];
        if (relu) v = v < 0.0f ? 0.0f : v;
        ci[at++] = v;
      }
  }
}

// ConvTaps64 (conv_simd.h): 6 rows × 64 columns through row pointers, in 16-column blocks
void conv_taps_tile64_avx2(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                           const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                           std::int64_t ldc, int rows, bool add) {
  alignas(32) float res[6 * 32];
  const float* ar[6];
  for (int i = 0; i < 6; ++i) ar[i] = a + arow[i < rows ? i : rows - 1];
  for (int j0 = 0; j0 < 64; j0 += 16) {
    if (rows > 3) block16<6, false>(k, seg, stride, a, ar, taps, src + j0, 8, 8, res);
    else if (rows > 1) block16<3, false>(k, seg, stride, a, ar, taps, src + j0, 8, 8, res);
    else block16<1, false>(k, seg, stride, a, ar, taps, src + j0, 8, 8, res);
    for (int i = 0; i < rows; ++i)
      for (int h = 0; h < 2; ++h) {
        float* ci = c + i * ldc + j0 + 8 * h;
        const __m256 v = _mm256_loadu_ps(res + i * 32 + 8 * h);
        _mm256_storeu_ps(ci, add ? _mm256_add_ps(_mm256_loadu_ps(ci), v) : v);
      }
  }
}

// ConvTapsDot (conv_simd.h): each dot as the AVX-512 kernel's 16 lane sums (lanes 0-7 and 8-15
// in two ymm), folded as it folds them (lo + hi, then three rounds of horizontal adds). One row
// of A at a time against the 4 columns: 8 accumulators.
void conv_taps_dot_avx2(std::int64_t n, const float* a, std::int64_t lda, const std::int64_t* taps, const float* src,
                        float* c, std::int64_t ldc, int rows, int cols, bool add) {
  const float* br[4];
  for (int q = 0; q < 4; ++q) br[q] = src + taps[q < cols ? q : cols - 1];
  for (int i = 0; i < rows; ++i) {
    const float* ai = a + i * lda;
    __m256 acc[4][2];
    for (int q = 0; q < 4; ++q) acc[q][0] = acc[q][1] = _mm256_setzero_ps();
    std::int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      const __m256 a0 = _mm256_loadu_ps(ai + j), a1 = _mm256_loadu_ps(ai + j + 8);
      for (int q = 0; q < 4; ++q) {
        acc[q][0] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(br[q] + j), acc[q][0]);
        acc[q][1] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(br[q] + j + 8), acc[q][1]);
      }
    }
    if (j < n) {  // (the masked-off lanes are zeros, added as the AVX-512 kernel adds them)
      const __m256i m0 = below(n - j), m1 = below(n - j - 8);
      const __m256 a0 = _mm256_maskload_ps(ai + j, m0), a1 = _mm256_maskload_ps(ai + j + 8, m1);
      for (int q = 0; q < 4; ++q) {
        acc[q][0] = _mm256_fmadd_ps(a0, _mm256_maskload_ps(br[q] + j, m0), acc[q][0]);
        acc[q][1] = _mm256_fmadd_ps(a1, _mm256_maskload_ps(br[q] + j + 8, m1), acc[q][1]);
      }
    }
    // sum16's tree for the 4 dots of this row (lanes of h: dot q at 2q, 2q+1 after the first
    // horizontal add, as in the AVX-512 kernel's rows of 4)
    __m256 h[4];
    for (int q = 0; q < 4; ++q) h[q] = _mm256_add_ps(acc[q][0], acc[q][1]);
    const __m256 t0 = _mm256_hadd_ps(h[0], h[1]), t1 = _mm256_hadd_ps(h[2], h[3]);
    const __m256 s0 = _mm256_hadd_ps(t0, t1);
    const __m128 r = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    alignas(16) float out[4];
    _mm_store_ps(out, r);
    for (int q = 0; q < cols; ++q) c[i * ldc + q] = add ? c[i * ldc + q] + out[q] : out[q];
  }
}

// ConvTranspose (conv_simd.h): 8 × 8 blocks in registers. With 8 rows and columns or more, the
// last block of each run is moved back to end at the edge, overlapping the one before it
// (whose values it writes again, the same): plain loads and stores only, where rows of 14
// pixels took a masked load per row and partial stores in every other block. Fewer: the
// edges masked.
void conv_transpose_avx2(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t lds, float* dst,
                         std::int64_t ldd) {
  if (rows >= 8 && cols >= 8) {
    for (std::int64_t i0 = 0; i0 < rows; i0 += 8) {
      const std::int64_t i = i0 < rows - 8 ? i0 : rows - 8;
      for (std::int64_t j0 = 0; j0 < cols; j0 += 8) {
        const std::int64_t j = j0 < cols - 8 ? j0 : cols - 8;
        __m256 r[8];
        for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + (i + k) * lds + j);
        transpose8(r);
        for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + (j + k) * ldd + i, r[k]);
      }
    }
    return;
  }
  for (std::int64_t i0 = 0; i0 < rows; i0 += 8)
    for (std::int64_t j0 = 0; j0 < cols; j0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = i0 + i < rows ? load_n(src + (i0 + i) * lds + j0, cols - j0) : _mm256_setzero_ps();
      transpose8(r);
      for (int j = 0; j < 8 && j0 + j < cols; ++j) store_n(dst + (j0 + j) * ldd + i0, r[j], rows - i0);
    }
}

// ConvRows (conv_simd.h): per row, 8 lanes at a time, the lanes in [lead, lead + n) loaded and
// every lane below width stored; ReLU's mask multiplies, as relu_grad does.
void conv_rows_avx2(float* dst, std::int64_t ldd, const float* src, std::int64_t lds, const float* mask,
                    std::int64_t rows, std::int64_t lead, std::int64_t n, std::int64_t width) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  for (std::int64_t r = 0; r < rows; ++r) {
    float* d = dst + r * ldd;
    for (std::int64_t j = 0; j < width; j += 8) {
      const __m256i in = _mm256_andnot_si256(below(lead - j), below(lead + n - j));
      const std::int64_t at = r * lds + j - lead;
      __m256 v = _mm256_maskload_ps(src + at, in);
      if (mask) {
        const __m256 m = _mm256_maskload_ps(mask + at, in);
        v = _mm256_mul_ps(v, _mm256_blendv_ps(one, zero, _mm256_cmp_ps(m, zero, _CMP_LE_OQ)));
      }
      store_n(d + j, v, width - j);
    }
  }
}

namespace {

// PB (<= 8) pixels × 8 output channels of ConvOcTile: acc[j] = Σ_p w[p·ldw + lane] · src[taps[p] + j],
// then + bias, ReLU, transposed in registers and stored as 8 channel rows of the px pixels.
template <int PB>
void oc_block(std::int64_t k, const float* w, std::int64_t ldw, const std::int64_t* taps, const float* src,
              float* out, std::int64_t ldo, std::int64_t px, const float* bias, bool relu) {
  __m256 acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = _mm256_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    const __m256 wv = _mm256_loadu_ps(w + p * ldw);
    const float* b = src + taps[p];
    for (int j = 0; j < PB; ++j) acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(b[j]), wv, acc[j]);
  }
  const __m256 bi = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
  for (int j = 0; j < PB; ++j) {
    if (bias) acc[j] = _mm256_add_ps(acc[j], bi);
    if (relu) acc[j] = relu8(acc[j]);
  }
  transpose8(acc);  // acc[l] = channel l over the pixels
  for (int l = 0; l < 8; ++l) store_n(out + l * ldo, acc[l], px < PB ? px : PB);
}

}  // namespace

// ConvOcTile (conv_simd.h): blocks of 8 pixels × 8 channels (8 accumulators: each broadcast
// feeds one FMA, which the 3 loads a cycle of these cores keep up with).
void conv_oc_tile_avx2(std::int64_t k, const float* w, std::int64_t ldw, int pixels, int nv,
                       const std::int64_t* taps, const float* src, float* out, std::int64_t ldo, int px,
                       const float* bias, bool relu) {
  for (int o = 0; o < 16 * nv; o += 8) {
    const float* wo = w + o;
    const float* bo = bias ? bias + o : nullptr;
    float* oo = out + o * ldo;
    if (pixels == 14) {
      oc_block<8>(k, wo, ldw, taps, src, oo, ldo, px, bo, relu);
      if (px > 8) oc_block<6>(k, wo, ldw, taps, src + 8, oo + 8, ldo, px - 8, bo, relu);
    } else {
      oc_block<7>(k, wo, ldw, taps, src, oo, ldo, px, bo, relu);
    }
  }
}

namespace {

// MO output channels × MV vectors of one row's pixels of ConvPlane: per tap, the smaller of the
// two sets in registers (MO weights broadcast, or MV vectors of input) and the other streamed
// against it. MO·MV accumulators: 12 where registers allow, as each chain of k FMAs is short
// (9 taps: at 8 accumulators a core waits on the FMAs' latency; 12 measured 1.3× faster), and
// at most 16 registers in all (at 17 GCC stored one to the stack after every FMA). The
// vectors start at 8·v but the last, at `last`, which stores nl lanes (plane_row).
template <int MO, int MV>
void plane_block(std::int64_t k, const float* w, const std::int64_t* taps, const float* src, float* out,
                 std::int64_t ldo, std::int64_t last, std::int64_t nl, const float* bias, bool relu) {
  static_assert(MO * MV + (MO < MV ? MO : MV) + 1 <= 16, "more registers than AVX2 has");
  __m256 acc[MO][MV];
#pragma GCC unroll 12
  for (int o = 0; o < MO; ++o)
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) acc[o][v] = _mm256_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    const float* b = src + taps[p];
    if constexpr (MO < MV) {
      __m256 wv[MO];
#pragma GCC unroll 12
      for (int o = 0; o < MO; ++o) wv[o] = _mm256_broadcast_ss(w + o * k + p);
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) {
        const __m256 x = _mm256_loadu_ps(b + (v < MV - 1 ? 8 * v : last));
#pragma GCC unroll 12
        for (int o = 0; o < MO; ++o) acc[o][v] = _mm256_fmadd_ps(x, wv[o], acc[o][v]);
      }
    } else {
      __m256 x[MV];
#pragma GCC unroll 4
      for (int v = 0; v < MV; ++v) x[v] = _mm256_loadu_ps(b + (v < MV - 1 ? 8 * v : last));
#pragma GCC unroll 12
      for (int o = 0; o < MO; ++o) {
        const __m256 wv = _mm256_broadcast_ss(w + o * k + p);
#pragma GCC unroll 4
        for (int v = 0; v < MV; ++v) acc[o][v] = _mm256_fmadd_ps(x[v], wv, acc[o][v]);
      }
    }
  }
#pragma GCC unroll 12
  for (int o = 0; o < MO; ++o) {
    const __m256 bi = bias ? _mm256_set1_ps(bias[o]) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int v = 0; v < MV; ++v) {
      __m256 r = acc[o][v];
      if (bias) r = _mm256_add_ps(r, bi);
      if (relu) r = relu8(r);
      if (v < MV - 1) _mm256_storeu_ps(out + o * ldo + 8 * v, r);
      else store_n(out + o * ldo + last, r, nl);
    }
  }
}

// The last r < MO channels of a row as one block of r
template <int R, int MV>
void plane_rest(std::int64_t r, std::int64_t k, const float* w, const std::int64_t* taps, const float* src,
                float* out, std::int64_t ldo, std::int64_t last, std::int64_t nl, const float* bias, bool relu) {
  if constexpr (R > 0) {
    if (r == R) return plane_block<R, MV>(k, w, taps, src, out, ldo, last, nl, bias, relu);
    plane_rest<R - 1, MV>(r, k, w, taps, src, out, ldo, last, nl, bias, relu);
  }
}

// n pixels of one row from ow on (MV = ⌈n/8⌉ vectors), every channel: blocks of MO, then the
// rest in one. Where the row has 8 pixels before the run's end (ow + n >= 8), its last vector
// ends there, overlapping the one before it, and is stored whole: its overlapping lanes are
// the same FMA chains again, so the same values (a partial store of 4 lanes cost ~15% more).
template <int MO, int MV>
void plane_row(std::int64_t k, const float* w, std::int64_t noc, const std::int64_t* taps, const float* src,
               float* out, std::int64_t ldo, std::int64_t ow, std::int64_t n, const float* bias, bool relu) {
  const std::int64_t last = ow + n >= 8 ? n - 8 : 8 * (MV - 1), nl = ow + n >= 8 ? 8 : n - last;
  std::int64_t o = 0;
  for (; o + MO <= noc; o += MO)
    plane_block<MO, MV>(k, w + o * k, taps, src, out + o * ldo, ldo, last, nl, bias ? bias + o : nullptr, relu);
  plane_rest<MO - 1, MV>(noc - o, k, w + o * k, taps, src, out + o * ldo, ldo, last, nl, bias ? bias + o : nullptr,
                         relu);
}

}  // namespace

// ConvPlane (conv_simd.h): row by row, its pixels in runs of up to 4 vectors (32 pixels), 3
// channels at a time beside 4 vectors, more beside fewer (plane_block).
void conv_plane_avx2(std::int64_t k, const float* w, std::int64_t noc, const std::int64_t* taps, const float* src,
                     std::int64_t Wp, std::int64_t OH, std::int64_t OW, float* out, std::int64_t ldo, const float* bias,
                     bool relu) {
  for (std::int64_t oh = 0; oh < OH; ++oh)
    for (std::int64_t ow = 0; ow < OW; ow += 32) {
      const std::int64_t n = OW - ow < 32 ? OW - ow : 32;
      const float* s = src + oh * Wp + ow;
      float* o = out + oh * OW + ow;
      switch ((n + 7) / 8) {
        case 4: plane_row<3, 4>(k, w, noc, taps, s, o, ldo, ow, n, bias, relu); break;
        case 3: plane_row<4, 3>(k, w, noc, taps, s, o, ldo, ow, n, bias, relu); break;
        case 2: plane_row<6, 2>(k, w, noc, taps, s, o, ldo, ow, n, bias, relu); break;
        default: plane_row<12, 1>(k, w, noc, taps, s, o, ldo, ow, n, bias, relu); break;
      }
    }
}

namespace {

// ConvSparseDw for 8 of the channels (the AVX-512 kernel's 16·CV, one ymm of them at a time: 9
// accumulators): per output channel o, its nonzero gradient values found 8 at a time (a compare,
// then the set bits in ascending order), each broadcast against its pixel's 9 taps. LDX > 0: the
// taps a 3 × 3 block, rows LDX apart (as there).
template <int LDX>
void sparse_dw8(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff, const float* xh,
                std::int64_t ldx, float* out, std::int64_t ldo, std::int64_t ldt, bool add) {
  const __m256 zero = _mm256_setzero_ps();
  const std::int64_t row = LDX ? toff[3] * LDX : 0;
  std::int64_t off[9];
  for (int t = 0; t < 9; ++t) off[t] = toff[t] * ldx;
  for (int o = 0; o < rows; ++o) {
    const float* go = g + o * ldg;
    __m256 acc[9];
    for (int t = 0; t < 9; ++t) acc[t] = zero;
    for (std::int64_t j0 = 0; j0 < n; j0 += 8) {
      // NaN compares unequal: it is a term, as in the dense sum
      unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(load_n(go + j0, n - j0), zero, _CMP_NEQ_UQ));
      while (bits) {
        const int l = __builtin_ctz(bits);
        bits &= bits - 1;
        const __m256 gv = _mm256_set1_ps(go[j0 + l]);
        if constexpr (LDX > 0) {
          const float* r0 = xh + (j0 + l) * LDX;
          const float *r1 = r0 + row, *r2 = r1 + row;
          for (int kw = 0; kw < 3; ++kw) {
            acc[kw] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(r0 + kw * LDX), acc[kw]);
            acc[3 + kw] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(r1 + kw * LDX), acc[3 + kw]);
            acc[6 + kw] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(r2 + kw * LDX), acc[6 + kw]);
          }
        } else {
          const float* px = xh + (j0 + l) * ldx;
          for (int t = 0; t < 9; ++t) acc[t] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(px + off[t]), acc[t]);
        }
      }
    }
    for (int t = 0; t < 9; ++t) {
      float* d = out + o * ldo + t * ldt;
      _mm256_storeu_ps(d, add ? _mm256_add_ps(_mm256_loadu_ps(d), acc[t]) : acc[t]);
    }
  }
}

bool taps_3x3_block(const std::int64_t* toff) {
  for (int t = 0; t < 9; ++t)
    if (toff[t] != t / 3 * toff[3] + t % 3) return false;
  return true;
}

// ConvSparseDx for 8 of the 16 channels (9 weight vectors in registers): the nonzero values
// from the highest j down, each scattered through the 9 taps, as the AVX-512 kernel scatters
// them (the same FMA chain for every value).
template <bool BLOCK>
void sparse_dx8(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff, const float* w,
                std::int64_t ldw, float* dxh) {
  const __m256 zero = _mm256_setzero_ps();
  const std::int64_t row = 16 * toff[3];
  const std::int64_t last = (n - 1) / 8 * 8;
  for (int o = 0; o < rows; ++o) {
    const float* go = g + o * ldg;
    __m256 wv[9];
    for (int t = 0; t < 9; ++t) wv[t] = _mm256_loadu_ps(w + (o * 9 + t) * ldw);
    for (std::int64_t j0 = last; j0 >= 0; j0 -= 8) {
      unsigned bits = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(load_n(go + j0, n - j0), zero, _CMP_NEQ_UQ));
      while (bits) {
        const int l = 31 - __builtin_clz(bits);
        bits &= ~(1u << l);
        const __m256 gv = _mm256_set1_ps(go[j0 + l]);
        float* px = dxh + (j0 + l) * 16;
        if constexpr (BLOCK) {
          float *r1 = px + row, *r2 = r1 + row;
          for (int kw = 0; kw < 3; ++kw) {
            float *p0 = px + 16 * kw, *p1 = r1 + 16 * kw, *p2 = r2 + 16 * kw;
            _mm256_storeu_ps(p0, _mm256_fmadd_ps(gv, wv[kw], _mm256_loadu_ps(p0)));
            _mm256_storeu_ps(p1, _mm256_fmadd_ps(gv, wv[3 + kw], _mm256_loadu_ps(p1)));
            _mm256_storeu_ps(p2, _mm256_fmadd_ps(gv, wv[6 + kw], _mm256_loadu_ps(p2)));
          }
        } else {
          for (int t = 0; t < 9; ++t) {
            float* p = px + 16 * toff[t];
            _mm256_storeu_ps(p, _mm256_fmadd_ps(gv, wv[t], _mm256_loadu_ps(p)));
          }
        }
      }
    }
  }
}

}  // namespace

// ConvSparseDx (conv_simd.h): the two halves of the 16 channels one after the other
void conv_sparse_dx_avx2(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                         const float* w, std::int64_t ldw, float* dxh) {
  if (n <= 0) return;
  const bool block = taps_3x3_block(toff);
  for (int h = 0; h < 16; h += 8) {
    if (block) sparse_dx8<true>(n, g, ldg, rows, toff, w + h, ldw, dxh + h);
    else sparse_dx8<false>(n, g, ldg, rows, toff, w + h, ldw, dxh + h);
  }
}

// ConvSparseDw (conv_simd.h): the 16·cv channels 8 at a time
void conv_sparse_dw_avx2(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                         const float* xh, std::int64_t ldx, int cv, float* out, std::int64_t ldo, std::int64_t ldt,
                         bool add) {
  const bool block = taps_3x3_block(toff);
  for (int h = 0; h < 16 * cv; h += 8) {
    if (block && ldx == 32) sparse_dw8<32>(n, g, ldg, rows, toff, xh + h, ldx, out + h, ldo, ldt, add);
    else if (block && ldx == 64) sparse_dw8<64>(n, g, ldg, rows, toff, xh + h, ldx, out + h, ldo, ldt, add);
    else if (block && ldx == 16) sparse_dw8<16>(n, g, ldg, rows, toff, xh + h, ldx, out + h, ldo, ldt, add);
    else sparse_dw8<0>(n, g, ldg, rows, toff, xh + h, ldx, out + h, ldo, ldt, add);
  }
}

}  // namespace fastnn
