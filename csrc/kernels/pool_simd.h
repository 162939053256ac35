// The vector builds of the 2×2, stride-2 max pool over one float image plane (pool_avx512.cpp,
// pool_avx2.cpp), chosen at run time with the SIMD path (gemm/ukernel_select.cpp). pool.cpp holds the scalar
// code they must match bit for bit, and the rest of pooling.
#pragma once
#include <cstdint>

namespace fastnn {

struct MaxPool2x2 {
  // out, argmax (OH, OW) from the plane `in` with rows of W values
  void (*forward)(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                  std::int64_t W);
  // Writes rows 0 .. 2·OH of dx (W values each, rows ldx apart; an odd last column is left to
  // the caller): each dout at its argmax, zeros elsewhere; with relu_of (the pool's output),
  // dout · relu_grad(relu_of) (a ReLU before the pool, its mask taken from the pooled values).
  // False, with dx partly written, if an argmax lies outside its window (the caller then
  // scatters the plane the general way).
  bool (*backward)(float* dx, std::int64_t ldx, const float* dout, const float* relu_of, const std::int32_t* argmax,
                   std::int64_t OH, std::int64_t OW, std::int64_t W);
  // forward of the plane normalized on the fly: each value v pooled as relu((v − m)·scale + b)
  // with `relu`, else (v − m)·scale + b, with batchnorm_forward's bits (the plan's
  // batchnorm+relu+maxpool2d: no normalized copy written and read back)
  void (*forward_affine)(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                         std::int64_t W, float m, float scale, float b, bool relu);
};

// The backward builds ask for the pooled gradient, argmax (and pooled values) this many values
// ahead of the row they read: the planes after it, in the order the plan's fused passes
// (BatchNorm → ReLU → max pool) take them. Those arrays stream from memory, a few hundred bytes
// per plane, and without it most of the kernel's time was waiting on their loads (the fused
// BatchNorm's backward passes ~35% faster with it).
constexpr std::int64_t kPoolAhead = 1024;

// For the SIMD path in use; null where there is no vector build (the scalar code runs).
const MaxPool2x2* maxpool_2x2_f32();

#ifdef FASTNN_X86_KERNELS
void maxpool_2x2_plane_avx512(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                              std::int64_t W);
void maxpool_2x2_plane_affine_avx512(float* out, std::int32_t* argmax, const float* in, std::int64_t OH,
                                     std::int64_t OW, std::int64_t W, float m, float scale, float b, bool relu);
bool maxpool_2x2_plane_backward_avx512(float* dx, std::int64_t ldx, const float* dout, const float* relu_of,
                                       const std::int32_t* argmax, std::int64_t OH, std::int64_t OW, std::int64_t W);
// the AVX2 build (pool_avx2.cpp): the same bits
void maxpool_2x2_plane_avx2(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                            std::int64_t W);
void maxpool_2x2_plane_affine_avx2(float* out, std::int32_t* argmax, const float* in, std::int64_t OH, std::int64_t OW,
                                   std::int64_t W, float m, float scale, float b, bool relu);
bool maxpool_2x2_plane_backward_avx2(float* dx, std::int64_t ldx, const float* dout, const float* relu_of,
                                     const std::int32_t* argmax, std::int64_t OH, std::int64_t OW, std::int64_t W);
#endif

}  // namespace fastnn
