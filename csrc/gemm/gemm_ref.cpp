// The reference GEMM: three loops, no blocking, no SIMD, one thread. Slow on purpose and kept
// forever; tests compare the blocked kernel on every SIMD path against it.
#include "gemm/gemm.h"

namespace fastnn {

template <class T>
void gemm_ref(bool trans_a, bool trans_b, idx M, idx N, idx K, T alpha,
              const T* A, idx lda, const T* B, idx ldb, T beta, T* C, idx ldc,
              const T* bias, Act act) {
  for (idx i = 0; i < M; ++i) {
    for (idx j = 0; j < N; ++j) {
      T acc = 0;
      for (idx p = 0; p < K; ++p) {
        const T a = trans_a ? A[p * lda + i] : A[i * lda + p];
        const T b = trans_b ? B[j * ldb + p] : B[p * ldb + j];
        acc += a * b;
      }
      T v = alpha * acc;
      if (beta != T(0)) v += beta * C[i * ldc + j];
      if (bias) v += bias[j];
      C[i * ldc + j] = apply_act(act, v);
    }
  }
}

template void gemm_ref<float>(bool, bool, idx, idx, idx, float, const float*, idx, const float*,
                              idx, float, float*, idx, const float*, Act);
template void gemm_ref<double>(bool, bool, idx, idx, idx, double, const double*, idx,
                               const double*, idx, double, double*, idx, const double*, Act);

}  // namespace fastnn
