// Vectorised float sigmoid, tanh and softmax for the elementwise kernels (activations.cpp), and
// the exponentials of cross_entropy_forward (losses.cpp).
// The math is written once in vmath_impl.h and built for AVX2 and AVX-512 in vmath_avx2.cpp and
// vmath_avx512.cpp; the portable path keeps the scalar std::exp / std::tanh loops.
#pragma once
#include <cstdint>

namespace fastnn {

struct VMath {
  void (*sigmoid)(float* out, const float* x, std::int64_t n);
  void (*tanh)(float* out, const float* x, std::int64_t n);
  void (*softmax_rows)(float* out, const float* x, std::int64_t rows, std::int64_t C);
  // Per row: max[r] and sum[r] = Σ e^(x - max); unless d is null, d = softmax(x) * scale with
  // scale subtracted at target[r] (cross_entropy_forward's gradient).
  void (*cross_entropy_rows)(float* d, float* max, float* sum, const float* x,
                             const std::int64_t* target, std::int64_t rows, std::int64_t C,
                             float scale);
};

// For the SIMD path in use (gemm/ukernel_select.cpp); null on the portable path.
const VMath* vmath_f32();

#ifdef FASTNN_X86_KERNELS
void sigmoid_f32_avx2(float* out, const float* x, std::int64_t n);
void tanh_f32_avx2(float* out, const float* x, std::int64_t n);
void softmax_rows_f32_avx2(float* out, const float* x, std::int64_t rows, std::int64_t C);
void cross_entropy_rows_f32_avx2(float* d, float* max, float* sum, const float* x,
                                 const std::int64_t* target, std::int64_t rows, std::int64_t C,
                                 float scale);
void sigmoid_f32_avx512(float* out, const float* x, std::int64_t n);
void tanh_f32_avx512(float* out, const float* x, std::int64_t n);
void softmax_rows_f32_avx512(float* out, const float* x, std::int64_t rows, std::int64_t C);
void cross_entropy_rows_f32_avx512(float* d, float* max, float* sum, const float* x,
                                 const std::int64_t* target, std::int64_t rows, std::int64_t C,
                                 float scale);
#endif

}  // namespace fastnn
