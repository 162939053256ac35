// The micro-kernel contract (as BLIS) and run-time selection of the SIMD path.
//
//   C[0:MR, 0:NR] = alpha * Apanel · Bpanel + beta * C[0:MR, 0:NR]
//
//   a: packed MR×k panel, k-major:   a[p*MR + i]   (rows past the edge are zero-padded)
//   b: packed k×NR panel, k-major:   b[p*NR + j]   (columns past the edge are zero-padded)
//   c: row-major, row stride ldc; always a full MR×NR tile (edge tiles go through a buffer).
//   beta == 0 overwrites C without reading it, so NaN/garbage in C never leaks into the result.
#pragma once
#include <cstdint>

namespace fastnn {

template <class T>
using UKernelFn = void (*)(std::int64_t k, const T* a, const T* b, T* c, std::int64_t ldc,
                           T alpha, T beta);

template <class T>
struct UKernel {
  int mr, nr;
  UKernelFn<T> fn;
};

enum class Simd { Portable = 0, AVX2 = 1, AVX512 = 2 };

Simd simd_best();              // the best path this CPU (and this build) supports
Simd simd_path();              // the path in use (FASTNN_SIMD env var, else the best)
bool set_simd_path(Simd s);    // false if this CPU/build cannot run it
const char* simd_name(Simd s);

UKernel<float> ukernel_f32(std::int64_t N);  // for the path in use and a C with N columns
UKernel<double> ukernel_f64();

// Unpacked ("sup") kernel for small float GEMMs: C[0:rows, 0:cols] = alpha * A·B + beta * C,
// A(i, p) = a[i*rsa + p*csa] with rsa == 1 or csa == 1, B(p, j) = b[p*ldb + j]; all MR rows of
// A and NR columns of B must be readable (edges are packed into padded buffers by the caller).
using SupFn = void (*)(std::int64_t k, const float* a, std::int64_t rsa, std::int64_t csa,
                       const float* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha,
                       float beta, int rows, int cols);
struct SupKernel {
  int mr, nr;
  SupFn fn;  // null on the portable path: small GEMMs there use the packed loops
  // The same kernel for the last rows of A when there are exactly 8 or 4 of them (null where
  // there is none): it reads them in place instead of a packed, zero-padded MR-row sliver.
  SupFn rows8 = nullptr, rows4 = nullptr;
};
SupKernel sup_kernel_f32(std::int64_t N);

// Dot product of two float rows for the path in use (gemm_small_m); null for the portable path.
using SDot = float (*)(std::int64_t k, const float* a, const float* b);
SDot sdot_f32();
// Eight dot products of one row a against rows b, b + ldb, ..., b + 7*ldb into out[0:8], with
// the same bits on the AVX-512 and AVX2 paths; null on the portable path.
using SDot8 = void (*)(std::int64_t k, const float* a, const float* b, std::int64_t ldb, float* out);
SDot8 sdot8_f32();

// Transposing pack of float rows (gemm_pack.h): d[p*mr + i] = src[i*rs + p] for i < rows,
// p < kc; null on the portable path (the SSE2 4×4 loop in gemm_pack.h runs instead).
using PackT = void (*)(std::int64_t rows, std::int64_t kc, const float* src, std::int64_t rs,
                       int mr, float* d);
PackT pack_transposed_f32();

// The FMA limit of one core on the path in use, in GFLOP/s (2 per multiply-add and lane): the best
// of runs of 12 independent FMA chains, timed for about `seconds` in all. The benchmarks divide
// by it, since it differs between CPUs with the same SIMD path (one 512-bit FMA per cycle on AMD
// Zen 4, two on Intel's server cores).
double fma_probe_gflops(double seconds);
// Whether this CPU's 512-bit FMAs carry about twice the 256-bit ones' FLOPs (two 512-bit FMA
// units, Intel's server cores), rather than the same (AMD Zen 4 runs a 512-bit FMA as two
// halves): measured once, on first use (~1 ms). False without AVX-512. Kernels that trade
// FMAs for loads and stores (the sparse input gradient, conv.cpp) pay only where it is false.
bool fma512_full_rate();

#ifdef FASTNN_X86_KERNELS
float fma_chains_avx512(std::int64_t n);  // (their sum, so the chains are not optimised away)
float fma_chains_avx2(std::int64_t n);
void pack_transposed_avx2(std::int64_t rows, std::int64_t kc, const float* src, std::int64_t rs,
                          int mr, float* d);
// Defined in their own files, compiled with -mavx2 -mfma / -mavx512f -mfma.
void sgemm_ukernel_avx2_6x16(std::int64_t k, const float* a, const float* b, float* c,
                             std::int64_t ldc, float alpha, float beta);
void sgemm_ukernel_avx512_12x16(std::int64_t k, const float* a, const float* b, float* c,
                                std::int64_t ldc, float alpha, float beta);
void sgemm_ukernel_avx512_12x32(std::int64_t k, const float* a, const float* b, float* c,
                                std::int64_t ldc, float alpha, float beta);
void sgemm_sup_avx2_6x16(std::int64_t k, const float* a, std::int64_t rsa, std::int64_t csa,
                         const float* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha,
                         float beta, int rows, int cols);
// MR rows (12, 8 or 4) × 16·NV columns (NV = 1 or 2).
template <int MR, int NV>
void sgemm_sup_avx512(std::int64_t k, const float* a, std::int64_t rsa, std::int64_t csa,
                      const float* b, std::int64_t ldb, float* c, std::int64_t ldc, float alpha,
                      float beta, int rows, int cols);
void sdot8_avx512(std::int64_t k, const float* a, const float* b, std::int64_t ldb, float* out);
void sdot8_avx2(std::int64_t k, const float* a, const float* b, std::int64_t ldb, float* out);
float sdot_avx2(std::int64_t k, const float* a, const float* b);
#endif

}  // namespace fastnn
