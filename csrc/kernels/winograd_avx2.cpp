// AVX2 + FMA builds of the Winograd F(2×2, 3×3) kernels (conv_simd.h; the algorithm and the
// layouts in winograd_avx512.cpp), for CPUs without AVX-512: 8 channels per vector, GEMM tiles
// of up to 6 rows × 16 columns for the 16 ymm registers. Every value is computed as the AVX-512
// kernels compute it — the same transforms in the same order per channel, one FMA chain over
// the input channels (or tiles) in order per transformed value — so both paths give the same
// bits. Compiled with -mavx2 -mfma; includes only intrinsics.
#include <immintrin.h>
#include <cstdint>
#include "kernels/avx2_lanes.h"

namespace fastnn {
namespace {

// The GEMMs at one ξ, MR rows × 16 columns: with A's element (i, p) at a[i·ai + p·ap],
//   c[i·ldc + col] (+)= Σ_(p < k, in order) a[i·ai + p·ap] · b[p·ldb + col]
// one FMA chain per value, from zero (or, when `add`, from c), as winograd_avx512.cpp's tile.
template <int MR>
void tile(std::int64_t k, const float* a, std::int64_t ai, std::int64_t ap, const float* b, std::int64_t ldb, float* c,
          std::int64_t ldc, bool add) {
  __m256 acc[MR][2];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < 2; ++j) acc[i][j] = add ? _mm256_loadu_ps(c + i * ldc + 8 * j) : _mm256_setzero_ps();
  for (std::int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);
    for (int i = 0; i < MR; ++i) {
      const __m256 x = _mm256_set1_ps(a[i * ai + p * ap]);
      acc[i][0] = _mm256_fmadd_ps(x, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(x, b1, acc[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < 2; ++j) _mm256_storeu_ps(c + i * ldc + 8 * j, acc[i][j]);
}

// `rows` rows × `cols` (a multiple of 16) columns in tiles of up to 6 × 16
void gemm(int rows, int cols, std::int64_t k, const float* a, std::int64_t ai, std::int64_t ap, const float* b,
          std::int64_t ldb, float* c, std::int64_t ldc, bool add) {
  for (int i = 0; i < rows; i += 6) {
    const float* ar = a + i * ai;
    float* cr = c + i * ldc;
    for (int j = 0; j < cols; j += 16) switch (rows - i < 6 ? rows - i : 6) {
        case 1: tile<1>(k, ar, ai, ap, b + j, ldb, cr + j, ldc, add); break;
        case 2: tile<2>(k, ar, ai, ap, b + j, ldb, cr + j, ldc, add); break;
        case 3: tile<3>(k, ar, ai, ap, b + j, ldb, cr + j, ldc, add); break;
        case 4: tile<4>(k, ar, ai, ap, b + j, ldb, cr + j, ldc, add); break;
        case 5: tile<5>(k, ar, ai, ap, b + j, ldb, cr + j, ldc, add); break;
        default: tile<6>(k, ar, ai, ap, b + j, ldb, cr + j, ldc, add);
      }
  }
}

// Bᵀ d B for one tile and 8 channels: d[r][k] the input at patch row r, column k.
inline void input_tile(const __m256 (&d)[4][4], __m256 (&out)[16]) {
  __m256 e[4][4];
  for (int k = 0; k < 4; ++k) {
    e[0][k] = _mm256_sub_ps(d[0][k], d[2][k]);
    e[1][k] = _mm256_add_ps(d[1][k], d[2][k]);
    e[2][k] = _mm256_sub_ps(d[2][k], d[1][k]);
    e[3][k] = _mm256_sub_ps(d[1][k], d[3][k]);
  }
  for (int i = 0; i < 4; ++i) {
    out[4 * i + 0] = _mm256_sub_ps(e[i][0], e[i][2]);
    out[4 * i + 1] = _mm256_add_ps(e[i][1], e[i][2]);
    out[4 * i + 2] = _mm256_sub_ps(e[i][2], e[i][1]);
    out[4 * i + 3] = _mm256_sub_ps(e[i][1], e[i][3]);
  }
}

// V[(ξ·nt + t)·C + c] = (Bᵀ d B)[ξ] of tile t0 + t, as in winograd_avx512.cpp
void input_tiles(const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t TW, std::int64_t t0, std::int64_t nt,
                 float* V) {
  for (std::int64_t t = 0; t < nt; ++t) {
    const std::int64_t ti = (t0 + t) / TW, tj = (t0 + t) % TW;
    const float* at = xh + (2 * ti * Wq + 2 * tj) * C;
    for (std::int64_t c = 0; c < C; c += 8) {
      __m256 d[4][4], v[16];
      for (int r = 0; r < 4; ++r)
        for (int k = 0; k < 4; ++k) d[r][k] = _mm256_loadu_ps(at + (r * Wq + k) * C + c);
      input_tile(d, v);
      for (int x = 0; x < 16; ++x) _mm256_storeu_ps(V + (x * nt + t) * C + c, v[x]);
    }
  }
}

}  // namespace

// ConvWinoWeights (conv_simd.h)
void conv_wino_weights_avx2(const float* wt, std::int64_t C, std::int64_t OC, float* U) {
  const __m256 half = _mm256_set1_ps(0.5f);
  for (std::int64_t c = 0; c < C; ++c)
    for (std::int64_t o = 0; o < OC; o += 8) {
      __m256 g[3][3], t[4][3];
      for (int r = 0; r < 3; ++r)
        for (int k = 0; k < 3; ++k) g[r][k] = _mm256_loadu_ps(wt + (c * 9 + r * 3 + k) * OC + o);
      for (int k = 0; k < 3; ++k) {  // t = G g
        t[0][k] = g[0][k];
        t[1][k] = _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(g[0][k], g[1][k]), g[2][k]), half);
        t[2][k] = _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(g[0][k], g[1][k]), g[2][k]), half);
        t[3][k] = g[2][k];
      }
      for (int i = 0; i < 4; ++i) {  // U = t Gᵀ
        const __m256 u[4] = {t[i][0], _mm256_mul_ps(_mm256_add_ps(_mm256_add_ps(t[i][0], t[i][1]), t[i][2]), half),
                             _mm256_mul_ps(_mm256_add_ps(_mm256_sub_ps(t[i][0], t[i][1]), t[i][2]), half), t[i][2]};
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(U + ((4 * i + j) * C + c) * OC + o, u[j]);
      }
    }
}

// ConvWino (conv_simd.h; conv_wino_avx512 describes it)
void conv_wino_avx2(const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OH, std::int64_t OW,
                    const float* U, std::int64_t ldu, std::int64_t noc, const float* bias, bool relu, float* y,
                    float* pooled, std::int32_t* argmax, std::int64_t OHp, std::int64_t OWp, float* V, float* M,
                    std::int64_t block) {
  const std::int64_t TH = (OH + 1) / 2, TW = (OW + 1) / 2, tiles = TH * TW;
  const __m256 zero = _mm256_setzero_ps();
  for (std::int64_t t0 = 0; t0 < tiles; t0 += block) {
    const std::int64_t nt = tiles - t0 < block ? tiles - t0 : block;
    input_tiles(xh, Wq, C, TW, t0, nt, V);
    // M[(ξ·nt + t)·noc + o] = Σ_c V[ξ][t][c] · U[ξ][c][o]
    for (int x = 0; x < 16; ++x)
      gemm((int)nt, (int)noc, C, V + x * nt * C, C, 1, U + x * C * ldu, ldu, M + x * nt * noc, noc, false);
    // y = act(Aᵀ M A + bias) for the tile's pixels inside the output
    for (std::int64_t t = 0; t < nt; ++t) {
      const std::int64_t ti = (t0 + t) / TW, tj = (t0 + t) % TW;
      const bool down = 2 * ti + 1 < OH, right = 2 * tj + 1 < OW, pool = pooled && ti < OHp && tj < OWp;
      float* out = y ? y + (2 * ti * OW + 2 * tj) * noc : nullptr;
      for (std::int64_t o = 0; o < noc; o += 8) {
        __m256 m[16], s[2][4], r[4];
        for (int x = 0; x < 16; ++x) m[x] = _mm256_loadu_ps(M + (x * nt + t) * noc + o);
        for (int k = 0; k < 4; ++k) {  // Aᵀ M
          s[0][k] = _mm256_add_ps(_mm256_add_ps(m[k], m[4 + k]), m[8 + k]);
          s[1][k] = _mm256_sub_ps(_mm256_sub_ps(m[4 + k], m[8 + k]), m[12 + k]);
        }
        for (int i = 0; i < 2; ++i) {  // (Aᵀ M) A
          r[2 * i] = _mm256_add_ps(_mm256_add_ps(s[i][0], s[i][1]), s[i][2]);
          r[2 * i + 1] = _mm256_sub_ps(_mm256_sub_ps(s[i][1], s[i][2]), s[i][3]);
        }
        const __m256 b = bias ? _mm256_loadu_ps(bias + o) : zero;
        for (int q = 0; q < 4; ++q) {
          if (bias) r[q] = _mm256_add_ps(r[q], b);
          if (relu) r[q] = _mm256_blendv_ps(r[q], zero, _mm256_cmp_ps(r[q], zero, _CMP_LT_OQ));
        }
        if (y) {
          _mm256_storeu_ps(out + o, r[0]);
          if (right) _mm256_storeu_ps(out + noc + o, r[1]);
          if (down) {
            _mm256_storeu_ps(out + OW * noc + o, r[2]);
            if (right) _mm256_storeu_ps(out + (OW + 1) * noc + o, r[3]);
          }
        }
        if (pool) {  // the 2 × 2 window is the tile: maxpool2d_forward's comparisons, in its order
          __m256 best = r[0];
          __m256 at = _mm256_castsi256_ps(_mm256_setzero_si256());
          for (int q = 1; q < 4; ++q) {
            const __m256 take = _mm256_or_ps(_mm256_cmp_ps(r[q], best, _CMP_GT_OQ), _mm256_cmp_ps(r[q], r[q], _CMP_UNORD_Q));
            best = _mm256_blendv_ps(best, r[q], take);
            at = _mm256_blendv_ps(at, _mm256_castsi256_ps(_mm256_set1_epi32((int)((q >> 1) * OW + (q & 1)))), take);
          }
          const __m256i where = _mm256_add_epi32(_mm256_castps_si256(at), _mm256_set1_epi32((int)(2 * ti * OW + 2 * tj)));
          _mm256_storeu_ps(pooled + (ti * OWp + tj) * noc + o, best);
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(argmax + (ti * OWp + tj) * noc + o), where);
        }
      }
    }
  }
}

// ConvWinoDw (conv_simd.h; conv_wino_dw_avx512 describes it)
void conv_wino_dw_avx2(const float* gh, const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OC,
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
      for (std::int64_t o = 0; o < OC; o += 8) {
        const __m256i m = below(OC - o);
        __m256 g[2][2], u[4][2];
        for (int r = 0; r < 2; ++r)
          for (int k = 0; k < 2; ++k) g[r][k] = _mm256_maskload_ps(at + (r * Wg + k) * OC + o, m);
        for (int k = 0; k < 2; ++k) {  // A g
          u[0][k] = g[0][k];
          u[1][k] = _mm256_add_ps(g[0][k], g[1][k]);
          u[2][k] = _mm256_sub_ps(g[0][k], g[1][k]);
          u[3][k] = _mm256_sub_ps(_mm256_setzero_ps(), g[1][k]);
        }
        for (int i = 0; i < 4; ++i) {  // (A g) Aᵀ
          const __m256 w[4] = {u[i][0], _mm256_add_ps(u[i][0], u[i][1]), _mm256_sub_ps(u[i][0], u[i][1]),
                               _mm256_sub_ps(_mm256_setzero_ps(), u[i][1])};
          for (int j = 0; j < 4; ++j) {
            float* to = Gt + ((4 * i + j) * nt + t) * OC + o;
            if (OC - o >= 8) {
              _mm256_storeu_ps(to, w[j]);
            } else {  // (not vmaskmovps: slow on AMD)
              alignas(32) float part[8];
              _mm256_store_ps(part, w[j]);
              for (std::int64_t l = 0; l < OC - o; ++l) to[l] = part[l];
            }
          }
        }
      }
    }
    const bool from_zero = first && t0 == 0;
    for (int x = 0; x < 16; ++x)
      gemm((int)OC, (int)C, nt, Gt + x * nt * OC, 1, OC, V + x * nt * C, C, M + x * OC * C, C, !from_zero);
  }
}

// ConvWinoDwFinish (conv_simd.h)
void conv_wino_dw_finish_avx2(const float* M, std::int64_t C, std::int64_t OC, float* out, std::int64_t ldo,
                              std::int64_t ldt) {
  const __m256 half = _mm256_set1_ps(0.5f);
  for (std::int64_t o = 0; o < OC; ++o)
    for (std::int64_t c = 0; c < C; c += 8) {
      __m256 m[16], z[3][4];
      for (int x = 0; x < 16; ++x) m[x] = _mm256_loadu_ps(M + (x * OC + o) * C + c);
      for (int k = 0; k < 4; ++k) {  // Gᵀ M
        const __m256 sum = _mm256_mul_ps(_mm256_add_ps(m[4 + k], m[8 + k]), half);
        z[0][k] = _mm256_add_ps(m[k], sum);
        z[1][k] = _mm256_mul_ps(_mm256_sub_ps(m[4 + k], m[8 + k]), half);
        z[2][k] = _mm256_add_ps(sum, m[12 + k]);
      }
      for (int r = 0; r < 3; ++r) {  // (Gᵀ M) G
        const __m256 sum = _mm256_mul_ps(_mm256_add_ps(z[r][1], z[r][2]), half);
        const __m256 w[3] = {_mm256_add_ps(z[r][0], sum), _mm256_mul_ps(_mm256_sub_ps(z[r][1], z[r][2]), half),
                             _mm256_add_ps(sum, z[r][3])};
        for (int k = 0; k < 3; ++k) _mm256_storeu_ps(out + o * ldo + (3 * r + k) * ldt + c, w[k]);
      }
    }
}

}  // namespace fastnn
