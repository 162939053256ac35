// One GEMM entry for every caller, plus the reference kernel it is tested against.
//
//   C = act(alpha * op(A) · op(B) + beta * C + bias)
//
// op(A) is M×K (A is stored K×M when trans_a), op(B) is K×N (B is stored N×K when trans_b),
// C is M×N row-major with row stride ldc, bias is N values added to every row (or null).
// beta == 0 overwrites C without reading it. Row-major storage throughout (lda/ldb/ldc = row
// strides). The three transpose cases of a Linear layer:
//   forward   Y  = X · Wᵀ      gemm(false, true,  N, OC, C,  X,  W)
//   backward  dX = dY · W      gemm(false, false, N, C,  OC, dY, W)
//             dW += dYᵀ · X    gemm(true,  false, OC, C, N,  dY, X, beta = 1)
#pragma once
#include "core/common.h"
#include "kernels/scalar_ops.h"

namespace fastnn {

template <class T>
void gemm(bool trans_a, bool trans_b, idx M, idx N, idx K, T alpha,
          const T* A, idx lda, const T* B, idx ldb, T beta, T* C, idx ldc,
          const T* bias, Act act);

// Float GEMMs of at most this many multiply-adds (M*N*K) run unpacked on the SIMD paths;
// returns the previous limit. n < 0 restores the default; 0 sends every shape through packing.
// For tests, which run every shape both ways.
idx set_gemm_sup_max_macs(idx n);

// Triple loop, kept forever: the blocked kernel is tested against it.
template <class T>
void gemm_ref(bool trans_a, bool trans_b, idx M, idx N, idx K, T alpha,
              const T* A, idx lda, const T* B, idx ldb, T beta, T* C, idx ldc,
              const T* bias, Act act);

}  // namespace fastnn
