// The vector kernel of the convolution's GEMM with an implicit im2col (conv_avx512.cpp),
// chosen at run time with the SIMD path (gemm/ukernel_select.cpp); conv.cpp drives it.
#pragma once
#include <cstdint>

namespace fastnn {

// C[i, j] = Σ_p a[arow[i] + p] · src[taps[p] + j] for i < rows (<= 12), j < cols (<= 32), or,
// with arow null, Σ_p a[p·12 + i] · src[taps[p] + j] (A packed in a panel of 12 rows):
// one FMA chain per value, p in order, over the p < k in runs of `seg` starting every
// `stride` (seg = stride = k: all of them; the weight gradient skips the wide columns so). A tile of 32 columns reads src[taps[p] .. taps[p] + 32),
// a narrower one only its columns. Then, per row i: + the C already there (if add; every
// column kept then), + bias[i] (unless null), ReLU (if relu), and the columns j whose bit is
// set in `valid` are stored side by side from c + i·ldc on (the wide columns a convolution
// drops leave no gaps).
using ConvTapsTile = void (*)(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                              const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                              std::int64_t ldc, int rows, int cols, std::uint32_t valid, bool add, const float* bias,
                              bool relu);
constexpr int kConvTileRows = 12, kConvTileCols = 32;

// The weight gradient's products, 4 × 4 dots at a time: for i < rows (<= 4), q < cols (<= 4),
//   C[i·ldc + q] = (C[i·ldc + q] +) Σ_(j < n) a[i·lda + j] · src[taps[q] + j]
// (added when `add`). Each sum is 16 lane sums over j in order, then added across lanes in a
// fixed tree: no bit depends on which thread runs it.
using ConvTapsDot = void (*)(std::int64_t n, const float* a, std::int64_t lda, const std::int64_t* taps,
                             const float* src, float* c, std::int64_t ldc, int rows, int cols, bool add);
constexpr int kConvDot = 4;

// dst[j·ldd + i] = src[i·lds + j] for i < rows, j < cols
using ConvTranspose = void (*)(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t lds, float* dst,
                               std::int64_t ldd);

// Row by row (r < rows): dst[r·ldd + j] for j < width is src[r·lds + j − lead] for
// lead <= j < lead + n — times relu_grad(mask[r·lds + j − lead]) when mask is not null — and
// zero elsewhere: an image's rows into zero-padded ones, or the output gradient into the wide
// layout. (Rows of 14 or 28 values are one or two masked vectors here, where the compiler's
// 16-wide loops leave them to scalar remainders.)
using ConvRows = void (*)(float* dst, std::int64_t ldd, const float* src, std::int64_t lds, const float* mask,
                          std::int64_t rows, std::int64_t lead, std::int64_t n, std::int64_t width);

// A direct convolution's tile with vectors over output channels: for px (<= pixels, 7 or 14)
// pixels j of one output row and 16·nv output channels o (nv of 1, 2 or 4; nv·pixels <= 28),
//   out[o·ldo + j] = act(Σ_p w[p·ldw + o] · src[taps[p] + j] + bias[o])
// one FMA chain over p in order per value, then + bias (unless null), ReLU (if relu): the bits
// of ConvTapsTile's. w is the weight transposed, (K, OC) in rows ldw apart. All `pixels` are
// read from src (past px too).
using ConvOcTile = void (*)(std::int64_t k, const float* w, std::int64_t ldw, int pixels, int nv,
                            const std::int64_t* taps, const float* src, float* out, std::int64_t ldo, int px,
                            const float* bias, bool relu);

// A direct convolution of one input plane (a group of one input channel: an image net's first
// layer, a depthwise convolution), vectors over an output row's pixels: for o < noc, output
// rows oh < OH and pixels ow < OW,
//   out[o·ldo + oh·OW + ow] = act(Σ_p w[o·k + p] · src[taps[p] + oh·Wp + ow] + bias[o])
// one FMA chain over p in order, then + bias (unless null), ReLU (if relu): the bits of
// ConvOcTile's and ConvTapsTile's. Each row's pixels are read in whole vectors of 8 (AVX2) or
// 16 (AVX-512): up to 15 past OW, the padded plane's slack. Its stores run along the planes' rows, where ConvOcTile's
// go to 8–16 planes at once and transpose in registers first.
using ConvPlane = void (*)(std::int64_t k, const float* w, std::int64_t noc, const std::int64_t* taps, const float* src,
                           std::int64_t Wp, std::int64_t OH, std::int64_t OW, float* out, std::int64_t ldo,
                           const float* bias, bool relu);

// As ConvTapsTile over rows <= 6 (through arow) and 64 columns, every one kept, C added to when
// `add`, no bias or ReLU: the weight gradient's tiles when the output channels come in 64s.
using ConvTaps64 = void (*)(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                            const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                            std::int64_t ldc, int rows, bool add);

// The weight gradient of a 3 × 3 convolution from a sparse output gradient (a max pool's
// keeps one value in four): for rows o < rows, the 9 taps t and the channels c < 16·cv (cv 1
// or 2),
//   out[o·ldo + t·ldt + c] (+)= Σ_(j < n, g[o·ldg + j] ≠ 0, j ascending) g[o·ldg + j] · xh[(j + toff[t])·ldx + c]
// one FMA chain per value over the nonzero j in order from zero, then added to out when `add`.
// xh holds the padded input channel-last (a pixel's channels side by side). A zero term
// changes no finite sum, so these are the bits of ConvTaps64 over every j (finite xh).
using ConvSparseDw = void (*)(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                              const float* xh, std::int64_t ldx, int cv, float* out, std::int64_t ldo,
                              std::int64_t ldt, bool add);

// The input gradient of a 3 × 3, stride-1 convolution from a sparse output gradient, scattered:
// for 16 channels c, every o < rows in order, its nonzero g[o·ldg + j] (j < n) from the highest
// j down, and the 9 taps t,
//   dxh[(j + toff[t])·16 + c] = fma(g[o·ldg + j], w[(o·9 + t)·ldw + c], dxh[(j + toff[t])·16 + c])
// dxh holds the 16 channels' input gradient channel-last on the padded grid (zeroed by the
// caller; j is an output pixel's wide column oh·Wp + ow, j + toff[t] the input pixel it reaches
// through tap t). Each value then gets the dense kernel's FMA chain over (o, kh, kw) (in which
// the output pixels come in descending order) without its zero terms: the same bits for a
// finite weight.
using ConvSparseDx = void (*)(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                              const float* w, std::int64_t ldw, float* dxh);

// Winograd F(2×2, 3×3) (winograd_avx512.cpp): the weight transformed, from the weight transposed
// (wt[(c·9 + kh·3 + kw)·OC + o]) into U[(ξ·C + c)·OC + o] for the 16 positions ξ; then one
// sample's convolution from its input channel-last on the zero-padded grid (Wq columns, C
// channels per pixel) to y[(oh·OW + ow)·noc + o] = act(conv + bias[o]) channel-last, for the
// output channels of U's columns [0, noc) (U's rows ldu apart), tiles in blocks of `block`
// through the scratch V (16·block·C floats) and M (16·block·noc); y may be null, and with
// `pooled` the 2 × 2 max pool of each whole tile goes to pooled and argmax (channel-last, OHp ×
// OWp), as maxpool2d_forward makes them. C and noc multiples of 16.
using ConvWinoWeights = void (*)(const float* wt, std::int64_t C, std::int64_t OC, float* U);
using ConvWino = void (*)(const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OH, std::int64_t OW,
                          const float* U, std::int64_t ldu, std::int64_t noc, const float* bias, bool relu, float* y,
                          float* pooled, std::int32_t* argmax, std::int64_t OHp, std::int64_t OWp, float* V, float* M,
                          std::int64_t block);

// The weight gradient by Winograd: per sample, the transformed sums
//   M[(ξ·OC + o)·C + c] (+)= Σ_tiles (A g Aᵀ)[ξ](o) · (Bᵀ d B)[ξ](c)
// (from zero when `first`; gh the output gradient channel-last on a grid of 2·TW columns, zeros
// past OH × OW; xh the input as for ConvWino; V, Gt scratch of 16·block·C and 16·block·OC), then
// out[o·ldo + tap·ldt + c] = (Gᵀ M[o][c] G)[tap]. C in 16s, OC in 2s.
using ConvWinoDw = void (*)(const float* gh, const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OC,
                            std::int64_t OH, std::int64_t OW, float* M, bool first, float* V, float* Gt,
                            std::int64_t block);
using ConvWinoDwFinish = void (*)(const float* M, std::int64_t C, std::int64_t OC, float* out, std::int64_t ldo,
                                  std::int64_t ldt);

struct ConvTaps {
  ConvTapsTile tile;
  ConvTaps64 tile64;
  ConvTapsDot dot;
  ConvTranspose transpose;
  ConvRows rows;
  ConvOcTile oc_tile;
  ConvPlane plane;
  ConvSparseDw sparse_dw;
  ConvSparseDx sparse_dx;
  ConvWinoWeights wino_weights;
  ConvWino wino;
  ConvWinoDw wino_dw;
  ConvWinoDwFinish wino_dw_finish;
};
// For the SIMD path in use (AVX-512 or AVX2: the same bits); null on the portable path (conv.cpp
// then builds im2col for the GEMM).
const ConvTaps* conv_taps_f32();

#ifdef FASTNN_X86_KERNELS
void conv_taps_tile_avx512(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                           const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                           std::int64_t ldc, int rows, int cols, std::uint32_t valid, bool add, const float* bias,
                           bool relu);
void conv_transpose_avx512(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t lds, float* dst,
                           std::int64_t ldd);
void conv_oc_tile_avx512(std::int64_t k, const float* w, std::int64_t ldw, int pixels, int nv,
                         const std::int64_t* taps, const float* src, float* out, std::int64_t ldo, int px,
                         const float* bias, bool relu);
void conv_taps_tile64_avx512(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                             const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                             std::int64_t ldc, int rows, bool add);
void conv_rows_avx512(float* dst, std::int64_t ldd, const float* src, std::int64_t lds, const float* mask,
                      std::int64_t rows, std::int64_t lead, std::int64_t n, std::int64_t width);
void conv_sparse_dw_avx512(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                           const float* xh, std::int64_t ldx, int cv, float* out, std::int64_t ldo, std::int64_t ldt,
                           bool add);
void conv_sparse_dx_avx512(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                           const float* w, std::int64_t ldw, float* dxh);
void conv_plane_avx512(std::int64_t k, const float* w, std::int64_t noc, const std::int64_t* taps, const float* src,
                       std::int64_t Wp, std::int64_t OH, std::int64_t OW, float* out, std::int64_t ldo,
                       const float* bias, bool relu);
void conv_wino_weights_avx512(const float* wt, std::int64_t C, std::int64_t OC, float* U);
void conv_wino_avx512(const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OH, std::int64_t OW,
                      const float* U, std::int64_t ldu, std::int64_t noc, const float* bias, bool relu, float* y,
                      float* pooled, std::int32_t* argmax, std::int64_t OHp, std::int64_t OWp, float* V, float* M,
                      std::int64_t block);
void conv_wino_dw_avx512(const float* gh, const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OC,
                         std::int64_t OH, std::int64_t OW, float* M, bool first, float* V, float* Gt,
                         std::int64_t block);
void conv_wino_dw_finish_avx512(const float* M, std::int64_t C, std::int64_t OC, float* out, std::int64_t ldo,
                                std::int64_t ldt);
void conv_taps_dot_avx512(std::int64_t n, const float* a, std::int64_t lda, const std::int64_t* taps, const float* src,
                          float* c, std::int64_t ldc, int rows, int cols, bool add);
// the AVX2 + FMA builds (conv_avx2.cpp, winograd_avx2.cpp): the same contracts and bits
void conv_taps_tile_avx2(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                           const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                           std::int64_t ldc, int rows, int cols, std::uint32_t valid, bool add, const float* bias,
                           bool relu);
void conv_transpose_avx2(const float* src, std::int64_t rows, std::int64_t cols, std::int64_t lds, float* dst,
                           std::int64_t ldd);
void conv_oc_tile_avx2(std::int64_t k, const float* w, std::int64_t ldw, int pixels, int nv,
                         const std::int64_t* taps, const float* src, float* out, std::int64_t ldo, int px,
                         const float* bias, bool relu);
void conv_taps_tile64_avx2(std::int64_t k, std::int64_t seg, std::int64_t stride, const float* a,
                             const std::int64_t* arow, const std::int64_t* taps, const float* src, float* c,
                             std::int64_t ldc, int rows, bool add);
void conv_rows_avx2(float* dst, std::int64_t ldd, const float* src, std::int64_t lds, const float* mask,
                      std::int64_t rows, std::int64_t lead, std::int64_t n, std::int64_t width);
void conv_sparse_dw_avx2(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                           const float* xh, std::int64_t ldx, int cv, float* out, std::int64_t ldo, std::int64_t ldt,
                           bool add);
void conv_sparse_dx_avx2(std::int64_t n, const float* g, std::int64_t ldg, int rows, const std::int64_t* toff,
                           const float* w, std::int64_t ldw, float* dxh);
void conv_wino_weights_avx2(const float* wt, std::int64_t C, std::int64_t OC, float* U);
void conv_wino_avx2(const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OH, std::int64_t OW,
                      const float* U, std::int64_t ldu, std::int64_t noc, const float* bias, bool relu, float* y,
                      float* pooled, std::int32_t* argmax, std::int64_t OHp, std::int64_t OWp, float* V, float* M,
                      std::int64_t block);
void conv_wino_dw_avx2(const float* gh, const float* xh, std::int64_t Wq, std::int64_t C, std::int64_t OC,
                         std::int64_t OH, std::int64_t OW, float* M, bool first, float* V, float* Gt,
                         std::int64_t block);
void conv_wino_dw_finish_avx2(const float* M, std::int64_t C, std::int64_t OC, float* out, std::int64_t ldo,
                                std::int64_t ldt);
void conv_taps_dot_avx2(std::int64_t n, const float* a, std::int64_t lda, const std::int64_t* taps, const float* src,
                          float* c, std::int64_t ldc, int rows, int cols, bool add);
void conv_plane_avx2(std::int64_t k, const float* w, std::int64_t noc, const std::int64_t* taps, const float* src,
                     std::int64_t Wp, std::int64_t OH, std::int64_t OW, float* out, std::int64_t ldo, const float* bias,
                     bool relu);
#endif

}  // namespace fastnn
