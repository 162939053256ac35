// AVX-512F kernels of the Winograd F(2×2, 3×3) convolution (conv.cpp, winograd_forward): a 3×3,
// stride-1 convolution computed 2×2 output pixels (a tile) at a time from the 4×4 input patch
// under them, with 16 multiplies per input and output channel pair where the direct sum takes
// 36 (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015):
//   Y = Aᵀ [ Σ_c (G g_(o,c) Gᵀ) ⊙ (Bᵀ d_c B) ] A
//        Bᵀ = | 1  0 -1  0 |     G = | 1    0    0  |     Aᵀ = | 1  1  1  0 |
//             | 0  1  1  0 |         | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
//             | 0 -1  1  0 |         | 1/2 -1/2  1/2 |
//             | 0  1  0 -1 |         | 0    0    1  |
// The 16 positions ξ of the transformed tiles are 16 independent GEMMs over the input
// channels: M[ξ](tiles × OC) = V[ξ](tiles × C) · U[ξ](C × OC). Everything here runs with
// vectors over 16 channels: the input channel-last (a pixel's channels side by side), V with a
// tile's channels side by side (the GEMM broadcasts them), U and M with the output channels
// side by side (the GEMM's vectors), and the output channel-last (conv.cpp transposes it into
// planes). Each output value is one FMA chain over the input channels in order per ξ, then the
// fixed sums of the output transform: no bit depends on how tiles or channels are blocked, on
// the thread count or on the batch. Compiled with -mavx512f -mfma; includes only intrinsics.
#include <immintrin.h>
#include <cstdint>

namespace fastnn {
namespace {

// The GEMMs at one ξ, MR rows × 16·NV columns: with A's element (i, p) at a[i·ai + p·ap],
//   c[i·ldc + col] (+)= Σ_(p < k, in order) a[i·ai + p·ap] · b[p·ldb + col]
// one FMA chain per value, from zero (or, when `add`, from c). The forward's M (rows: tiles, p:
// input channels, A = V) and the weight gradient's (rows: output channels, p: tiles, A = the
// transformed gradient read down its columns).
template <int MR, int NV>
void tile(std::int64_t k, const float* a, std::int64_t ai, std::int64_t ap, const float* b, std::int64_t ldb, float* c,
          std::int64_t ldc, bool add) {
  __m512 acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = add ? _mm512_loadu_ps(c + i * ldc + 16 * j) : _mm512_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    __m512 bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(b + p * ldb + 16 * j);
    for (int i = 0; i < MR; ++i) {
      const __m512 x = _mm512_set1_ps(a[i * ai + p * ap]);
      for (int j = 0; j < NV; ++j) acc[i][j] = _mm512_fmadd_ps(x, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(c + i * ldc + 16 * j, acc[i][j]);
}

// Up to 14 rows (with NV <= 2: 28 accumulators, the B vectors and a broadcast fill the 32
// registers; 7 × 4 spills).
template <int NV>
void tile_rows(int rows, std::int64_t k, const float* a, std::int64_t ai, std::int64_t ap, const float* b,
               std::int64_t ldb, float* c, std::int64_t ldc, bool add) {
  switch (rows) {
    case 1: return tile<1, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 2: return tile<2, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 3: return tile<3, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 4: return tile<4, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 5: return tile<5, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 6: return tile<6, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 7: return tile<7, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 8: return tile<8, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 9: return tile<9, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 10: return tile<10, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 11: return tile<11, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 12: return tile<12, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    case 13: return tile<13, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
    default: return tile<14, NV>(k, a, ai, ap, b, ldb, c, ldc, add);
  }
}

// Bᵀ d B for one tile and 16 channels: d[r][k] the input at patch row r, column k.
inline void input_tile(const __m512 (&d)[4][4], __m512 (&out)[16]) {
  __m512 e[4][4];
  for (int k = 0; k < 4; ++k) {
    e[0][k] = _mm512_sub_ps(d[0][k], d[2][k]);
    e[1][k] = _mm512_add_ps(d[1][k], d[2][k]);
    e[2][k] = _mm512_sub_ps(d[2][k], d[1][k]);
    e[3][k] = _mm512_sub_ps(d[1][k], d[3][k]);
  }
  for (int i = 0; i < 4; ++i) {
    out[4 * i + 0] = _mm512_sub_ps(e[i][0], e[i][2]);
    out[4 * i + 1] = _mm512_add_ps(e[i][1], e[i][2]);
    out[4 * i + 2] = _mm512_sub_ps(e[i][2], e[i][1]);
    out[4 * i + 3] = _mm512_sub_ps(e[i][1], e[i][3]);
  }
}

// V[(ξ·nt + t)·C + c] = (Bᵀ d B)[ξ] of tile t0 + t (of TW per row), channel c, from the input
// channel-last on a grid of Wq columns (the tile (ti, tj) at row 2ti, column 2tj).
void input_tiles(const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t TW, std::int64_t t0, std::int64_t nt,
                 float* V) {
  for (std::int64_t t = 0; t < nt; ++t) {
    const std::int64_t ti = (t0 + t) / TW, tj = (t0 + t) % TW;
    const float* at = xh + (2 * ti * Wq + 2 * tj) * C;
    for (std::int64_t c = 0; c < C; c += 16) {
      __m512 d[4][4], v[16];
      for (int r = 0; r < 4; ++r)
        for (int k = 0; k < 4; ++k) d[r][k] = _mm512_loadu_ps(at + (r * Wq + k) * C + c);
      input_tile(d, v);
      for (int x = 0; x < 16; ++x) _mm512_storeu_ps(V + (x * nt + t) * C + c, v[x]);
    }
  }
}

}  // namespace

// U[(ξ·C + c)·OC + o] = (G g Gᵀ)[ξ] of the 3×3 kernel g of output channel o and input channel c,
// from the weight transposed: wt[(c·9 + kh·3 + kw)·OC + o]. OC a multiple of 16.
void conv_wino_weights_avx512(const float* wt, std::int64_t C, std::int64_t OC, float* U) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (std::int64_t c = 0; c < C; ++c)
    for (std::int64_t o = 0; o < OC; o += 16) {
      __m512 g[3][3], t[4][3];
      for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) g[r][k] = _mm512_loadu_ps(wt + (c * 9 + r * 3 + k) * OC + o);
      for (int k = 0; k < 3; ++k) {  // t = G g
        t[0][k] = g[0][k];
        t[1][k] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(g[0][k], g[1][k]), g[2][k]), half);
        t[2][k] = _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(g[0][k], g[1][k]), g[2][k]), half);
        t[3][k] = g[2][k];
      }
      for (int i = 0; i < 4; ++i) {  // U = t Gᵀ
        const __m512 u[4] = {t[i][0], _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2]), half),
                             _mm512_mul_ps(_mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2]), half), t[i][2]};
        for (int j = 0; j < 4; ++j) _mm512_storeu_ps(U + ((4 * i + j) * C + c) * OC + o, u[j]);
      }
    }
}

// One sample's convolution for the output channels [0, noc) of U's columns: the input xh
// channel-last on a zero-padded grid of Wq columns (C channels per pixel; the tile (ti, tj)
// reads rows 2ti .. 2ti + 3 and columns 2tj .. 2tj + 3), U[(ξ·C + c)·ldu + o], then
// y[(oh·OW + ow)·noc + o] = act(Y + bias[o]) channel-last. Tiles go in blocks of `block`
// (flattened, row by row): V (16 × block × C) and M (16 × block × noc) are the caller's scratch.
// y may be null (not stored). With `pooled`, each tile that is a whole 2 × 2 window of the max
// pool (ti < OHp, tj < OWp) also gives pooled[(ti·OWp + tj)·noc + o] and its argmax in the
// output plane (2ti + i)·OW + 2tj + j, as maxpool2d_forward finds them. C and noc in 16s.
void conv_wino_avx512(const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OH, std::int64_t OW,
                      const float* U, std::int64_t ldu, std::int64_t noc, const float* bias, bool relu, float* y,
                      float* pooled, std::int32_t* argmax, std::int64_t OHp, std::int64_t OWp, float* V, float* M,
                      std::int64_t block) {
  const std::int64_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, tiles = TH * TW;
  const __m512 zero = _mm512_setzero_ps();
  const int nv = noc % 32 == 0 ? 2 : 1;
  for (std::int64_t t0 = 0; t0 < tiles; t0 += block) {
    const std::int64_t nt = tiles - t0 < block ? tiles - t0 : block;
    input_tiles(xh, Wq, C, TW, t0, nt, V);
    // M[(ξ·nt + t)·noc + o] = Σ_c V[ξ][t][c] · U[ξ][c][o]
    for (int x = 0; x < 16; ++x)
      for (std::int64_t t = 0; t < nt; t += 14) {
        const int rows = nt - t < 14 ? (int)(nt - t) : 14;
        const float* v = V + (x * nt + t) * C;
        for (std::int64_t o = 0; o < noc; o += 16 * nv) {
          const float* u = U + x * C * ldu + o;
          float* m = M + (x * nt + t) * noc + o;
          if (nv == 2) tile_rows<2>(rows, C, v, C, 1, u, ldu, m, noc, false);
          else tile_rows<1>(rows, C, v, C, 1, u, ldu, m, noc, false);
        }
      }
    // y = act(Aᵀ M A + bias) for the tile's pixels inside the output
    for (std::int64_t t = 0; t < nt; ++t) {
      const std::int64_t ti = (t0 + t) / TW, tj = (t0 + t) % TW;
      const bool down = 2 * ti + 1 < OH, right = 2 * tj + 1 < OW, pool = pooled && ti < OHp && tj < OWp;
      float* out = y ? y + (2 * ti * OW + 2 * tj) * noc : nullptr;
      for (std::int64_t o = 0; o < noc; o += 16) {
        __m512 m[16], s[2][4], r[4];
        for (int x = 0; x < 16; ++x) m[x] = _mm512_loadu_ps(M + (x * nt + t) * noc + o);
        for (int k = 0; k < 4; ++k) {  // Aᵀ M
          s[0][k] = _mm512_add_ps(_mm512_add_ps(m[k], m[4 + k]), m[8 + k]);
          s[1][k] = _mm512_sub_ps(_mm512_sub_ps(m[4 + k], m[8 + k]), m[12 + k]);
        }
        for (int i = 0; i < 2; ++i) {  // (Aᵀ M) A
          r[2 * i] = _mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]);
          r[2 * i + 1] = _mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]);
        }
        const __m512 b = bias ? _mm512_loadu_ps(bias + o) : zero;
        for (int q = 0; q < 4; ++q) {
          if (bias) r[q] = _mm512_add_ps(r[q], b);
          if (relu) r[q] = _mm512_mask_mov_ps(r[q], _mm512_cmp_ps_mask(r[q], zero, _CMP_LT_OQ), zero);
        }
        if (y) {
          _mm512_storeu_ps(out + o, r[0]);
          if (right) _mm512_storeu_ps(out + noc + o, r[1]);
          if (down) {
            _mm512_storeu_ps(out + OW * noc + o, r[2]);
            if (right) _mm512_storeu_ps(out + (OW + 1) * noc + o, r[3]);
          }
        }
        if (pool) {  // the 2 × 2 window is the tile: maxpool_2x2_plane_avx512's comparisons, in its order
          __m512 best = r[0];
          __m512i at = _mm512_setzero_si512();
          for (int q = 1; q < 4; ++q) {
            const __mmask16 take = _mm512_cmp_ps_mask(r[q], best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(r[q], r[q], _CMP_UNORD_Q);
            best = _mm512_mask_mov_ps(best, take, r[q]);
            at = _mm512_mask_mov_epi32(at, take, _mm512_set1_epi32((int)((q >> 1) * OW + (q & 1))));
          }
          at = _mm512_add_epi32(at, _mm512_set1_epi32((int)(2 * ti * OW + 2 * tj)));
          _mm512_storeu_ps(pooled + (ti * OWp + tj) * noc + o, best);
          _mm512_storeu_si512(argmax + (ti * OWp + tj) * noc + o, at);
        }
      }
    }
  }
}

// The weight gradient's transformed sums for one sample: with the output gradient channel-last
// on a grid of 2·TW columns (zeros past OH × OW; gh[(r·2TW + col)·OC + o]) and the input as for
// conv_wino_avx512,
//   M[(ξ·OC + o)·C + c] (+)= Σ_tiles (A g Aᵀ)[ξ](o) · (Bᵀ d B)[ξ](c)
// tiles in order, from zero when `first`. V (16·block·C) and Gt (16·block·OC) are scratch. C in
// 16s, OC in 2s.
void conv_wino_dw_avx512(const float* gh, const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OC,
                         std::int64_t OH, std::int64_t OW, float* M, bool first, float* V, float* Gt,
                         std::int64_t block) {
  const std::int64_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, tiles = TH * TW, Wg = 2 * TW;
  for (std::int64_t t0 = 0; t0 < tiles; t0 += block) {
    const std::int64_t nt = tiles - t0 < block ? tiles - t0 : block;
    input_tiles(xh, Wq, C, TW, t0, nt, V);
    // Gt[(ξ·nt + t)·OC + o] = (A g Aᵀ)[ξ], g the tile's 2 × 2 gradient of channel o
    for (std::int64_t t = 0; t < nt; ++t) {
      const std::int64_t ti = (t0 + t) / TW, tj = (t0 + t) % TW;
      const float* at = gh + (2 * ti * Wg + 2 * tj) * OC;
      for (std::int64_t o = 0; o < OC; o += 16) {
        const __mmask16 m = OC - o >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (OC - o)) - 1);
        __m512 g[2][2], u[4][2];
        for (int r = 0; r < 2; ++r)
          for (int k = 0; k < 2; ++k) g[r][k] = _mm512_maskz_loadu_ps(m, at + (r * Wg + k) * OC + o);
        for (int k = 0; k < 2; ++k) {  // A g
          u[0][k] = g[0][k];
          u[1][k] = _mm512_add_ps(g[0][k], g[1][k]);
          u[2][k] = _mm512_sub_ps(g[0][k], g[1][k]);
          u[3][k] = _mm512_sub_ps(_mm512_setzero_ps(), g[1][k]);
        }
        for (int i = 0; i < 4; ++i) {  // (A g) Aᵀ
          const __m512 w[4] = {u[i][0], _mm512_add_ps(u[i][0], u[i][1]), _mm512_sub_ps(u[i][0], u[i][1]),
                               _mm512_sub_ps(_mm512_setzero_ps(), u[i][1])};
          for (int j = 0; j < 4; ++j) _mm512_mask_storeu_ps(Gt + ((4 * i + j) * nt + t) * OC + o, m, w[j]);
        }
      }
    }
    const bool from_zero = first && t0 == 0;
    for (int x = 0; x < 16; ++x)
      for (std::int64_t o = 0; o < OC; o += 14) {
        const int rows = OC - o < 14 ? (int)(OC - o) : 14;
        const float* gt = Gt + x * nt * OC + o;
        const float* v = V + x * nt * C;
        for (std::int64_t c = 0; c < C; c += 32) {
          float* m = M + (x * OC + o) * C + c;
          if (C - c >= 32) tile_rows<2>(rows, nt, gt, 1, OC, v + c, C, m, C, !from_zero);
          else tile_rows<1>(rows, nt, gt, 1, OC, v + c, C, m, C, !from_zero);
        }
      }
  }
}

// The weight gradient from the transformed sums: out[o·ldo + tap·ldt + c] = (Gᵀ M[o][c] G)[tap],
// the 3 × 3 taps in rows, for o < OC and c < C (in 16s).
void conv_wino_dw_finish_avx512(const float* M, std::int64_t C, std::int64_t OC, float* out, std::int64_t ldo,
                                std::int64_t ldt) {
  const __m512 half = _mm512_set1_ps(0.5f);
  for (std::int64_t o = 0; o < OC; ++o)
    for (std::int64_t c = 0; c < C; c += 16) {
      __m512 m[16], z[3][4];
      for (int x = 0; x < 16; ++x) m[x] = _mm512_loadu_ps(M + (x * OC + o) * C + c);
      for (int k = 0; k < 4; ++k) {  // Gᵀ M
        const __m512 sum = _mm512_mul_ps(_mm512_add_ps(m[4 + k], m[8 + k]), half);
        z[0][k] = _mm512_add_ps(m[k], sum);
        z[1][k] = _mm512_mul_ps(_mm512_sub_ps(m[4 + k], m[8 + k]), half);
        z[2][k] = _mm512_add_ps(sum, m[12 + k]);
      }
      for (int r = 0; r < 3; ++r) {  // (Gᵀ M) G
        const __m512 sum = _mm512_mul_ps(_mm512_add_ps(z[r][1], z[r][2]), half);
        const __m512 w[3] = {_mm512_add_ps(z[r][0], sum), _mm512_mul_ps(_mm512_sub_ps(z[r][1], z[r][2]), half),
                             _mm512_add_ps(sum, z[r][3])};
        for (int k = 0; k < 3; ++k) _mm512_storeu_ps(out + o * ldo + (3 * r + k) * ldt + c, w[k]);
      }
    }
}

}  // namespace fastnn
