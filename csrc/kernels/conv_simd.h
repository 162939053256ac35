// The vector kernel of the convolution's GEMM with an implicit im2col (conv_avx512.cpp),
// chosen at run time with the SIMD path (gemm/ukernel_select.cpp); conv.cpp drives it.
#pragma once
#include <cstdint>

namespace fastnn {

// C[i, j] = Σ_p A[i·lda + p] · src[taps[p] + j] for i < rows (<= 12), j < cols (<= 32): one
// FMA chain per value, p in order. A tile of 32 columns reads src[taps[p] .. taps[p] + 32), a
// narrower one only its columns. Then, per row i: + bias[i] (unless null), ReLU (if relu),
// and the columns j whose bit is set in `valid` are stored side by side from c + i·ldc on
// (the wide columns a convolution drops leave no gaps).
using ConvTapsTile = void (*)(std::int64_t k, const float* a, std::int64_t lda, const std::int64_t* taps,
                              const float* src, float* c, std::int64_t ldc, int rows, int cols, std::uint32_t valid,
                              const float* bias, bool relu);
constexpr int kConvTileRows = 12, kConvTileCols = 32;

// For the SIMD path in use; null where there is none (conv.cpp then builds im2col for the GEMM).
ConvTapsTile conv_taps_f32();

#ifdef FASTNN_X86_KERNELS
void conv_taps_tile_avx512(std::int64_t k, const float* a, std::int64_t lda, const std::int64_t* taps,
                           const float* src, float* c, std::int64_t ldc, int rows, int cols, std::uint32_t valid,
                           const float* bias, bool relu);
#endif

}  // namespace fastnn
