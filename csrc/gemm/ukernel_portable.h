// Portable micro-kernel: plain loops the compiler vectorizes for whatever baseline ISA it
// targets (SSE2 on x86-64, NEON on arm64). Used for float64 always and for float32 when no
// SIMD path is available or FASTNN_SIMD=portable forces it.
#pragma once
#include <cstdint>

namespace fastnn {

template <class T, int MR, int NR>
void ukernel_portable(std::int64_t k, const T* a, const T* b, T* c, std::int64_t ldc,
                      T alpha, T beta) {
  T acc[MR][NR] = {};
  for (std::int64_t p = 0; p < k; ++p) {
    for (int i = 0; i < MR; ++i) {
      const T ai = a[p * MR + i];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * b[p * NR + j];
    }
  }
  for (int i = 0; i < MR; ++i) {
    T* ci = c + i * ldc;
    if (beta == T(0)) {
      for (int j = 0; j < NR; ++j) ci[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < NR; ++j) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
  }
}

}  // namespace fastnn
