// Chooses the micro-kernel at run time from CPUID. FASTNN_SIMD=portable|avx2|avx512 caps the
// choice (CI runs the suite on every path); set_simd_path lets tests switch in-process.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include "gemm/ukernel.h"
#include "gemm/ukernel_portable.h"
#include "kernels/conv_simd.h"
#include "kernels/pool_simd.h"
#include "vmath/vmath.h"

namespace fastnn {

static bool cpu_has(Simd s) {
  if (s == Simd::Portable) return true;
#if defined(FASTNN_X86_KERNELS) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (s == Simd::AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (s == Simd::AVX512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
  return false;
}

Simd simd_best() {
  for (Simd s : {Simd::AVX512, Simd::AVX2})
    if (cpu_has(s)) return s;
  return Simd::Portable;
}

const char* simd_name(Simd s) {
  switch (s) {
    case Simd::AVX512: return "avx512";
    case Simd::AVX2: return "avx2";
    default: return "portable";
  }
}

static Simd initial_path() {
  Simd s = simd_best();
  if (const char* env = std::getenv("FASTNN_SIMD")) {
    // An unknown or unsupported request falls back to the best path below it, never above.
    if (std::strcmp(env, "portable") == 0) s = Simd::Portable;
    else if (std::strcmp(env, "avx2") == 0 && cpu_has(Simd::AVX2)) s = Simd::AVX2;
  }
  return s;
}

static Simd g_path = initial_path();

Simd simd_path() { return g_path; }

bool set_simd_path(Simd s) {
  if (!cpu_has(s)) return false;
  g_path = s;
  return true;
}

UKernel<float> ukernel_f32(std::int64_t N) {
  switch (g_path) {
#ifdef FASTNN_X86_KERNELS
    case Simd::AVX512:
      // A C at most 16 wide would waste over half of every 32-wide tile.
      if (N <= 16) return {12, 16, sgemm_ukernel_avx512_12x16};
      return {12, 32, sgemm_ukernel_avx512_12x32};
    case Simd::AVX2: return {6, 16, sgemm_ukernel_avx2_6x16};
#endif
    default: return {4, 8, ukernel_portable<float, 4, 8>};
  }
}

UKernel<double> ukernel_f64() { return {4, 4, ukernel_portable<double, 4, 4>}; }

SupKernel sup_kernel_f32(std::int64_t N) {
  switch (g_path) {
#ifdef FASTNN_X86_KERNELS
    case Simd::AVX512:
      if (N <= 16) return {12, 16, sgemm_sup_avx512<12, 1>, sgemm_sup_avx512<8, 1>, sgemm_sup_avx512<4, 1>};
      return {12, 32, sgemm_sup_avx512<12, 2>, sgemm_sup_avx512<8, 2>, sgemm_sup_avx512<4, 2>};
    case Simd::AVX2: return {6, 16, sgemm_sup_avx2_6x16};
#endif
    default: return {0, 0, nullptr};
  }
}

const VMath* vmath_f32() {
#ifdef FASTNN_X86_KERNELS
  static const VMath avx512{sigmoid_f32_avx512, tanh_f32_avx512, softmax_rows_f32_avx512,
                            cross_entropy_rows_f32_avx512};
  static const VMath avx2{sigmoid_f32_avx2, tanh_f32_avx2, softmax_rows_f32_avx2,
                          cross_entropy_rows_f32_avx2};
  if (g_path == Simd::AVX512) return &avx512;
  if (g_path == Simd::AVX2) return &avx2;
#endif
  return nullptr;
}

const MaxPool2x2* maxpool_2x2_f32() {
#ifdef FASTNN_X86_KERNELS
  static const MaxPool2x2 avx512{maxpool_2x2_plane_avx512, maxpool_2x2_plane_backward_avx512,
                                  maxpool_2x2_plane_affine_avx512};
  static const MaxPool2x2 avx2{maxpool_2x2_plane_avx2, maxpool_2x2_plane_backward_avx2, maxpool_2x2_plane_affine_avx2};
  if (g_path == Simd::AVX512) return &avx512;
  if (g_path == Simd::AVX2) return &avx2;
#endif
  return nullptr;
}

const ConvTaps* conv_taps_f32() {
#ifdef FASTNN_X86_KERNELS
  static const ConvTaps avx512{conv_taps_tile_avx512, conv_taps_tile64_avx512, conv_taps_dot_avx512, conv_transpose_avx512, conv_rows_avx512,
                                      conv_oc_tile_avx512, conv_plane_avx512, conv_sparse_dw_avx512, conv_sparse_dx_avx512,
                                      conv_wino_weights_avx512, conv_wino_avx512, conv_wino_dw_avx512,
                                      conv_wino_dw_finish_avx512};
  static const ConvTaps avx2{conv_taps_tile_avx2, conv_taps_tile64_avx2, conv_taps_dot_avx2, conv_transpose_avx2,
                             conv_rows_avx2, conv_oc_tile_avx2, conv_plane_avx2, conv_sparse_dw_avx2, conv_sparse_dx_avx2,
                             conv_wino_weights_avx2, conv_wino_avx2, conv_wino_dw_avx2, conv_wino_dw_finish_avx2};
  if (g_path == Simd::AVX512) return &avx512;
  if (g_path == Simd::AVX2) return &avx2;
#endif
  return nullptr;
}

SDot8 sdot8_f32() {
#ifdef FASTNN_X86_KERNELS
  if (simd_path() == Simd::AVX512) return sdot8_avx512;
  if (simd_path() == Simd::AVX2) return sdot8_avx2;  // (the same bits)
#endif
  return nullptr;
}

SDot sdot_f32() {
#ifdef FASTNN_X86_KERNELS
  if (simd_path() != Simd::Portable) return sdot_avx2;  // AVX-512 CPUs run AVX2 too
#endif
  return nullptr;
}

PackT pack_transposed_f32() {
#ifdef FASTNN_X86_KERNELS
  if (simd_path() != Simd::Portable) return pack_transposed_avx2;
#endif
  return nullptr;
}

// (the portable path: 12 chains of 4 lanes, as the compiler vectorises them with the baseline ISA)
static float fma_chains_portable(std::int64_t n) {
  float acc[12][4];
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < 4; ++l) acc[i][l] = (float)i;
  for (std::int64_t p = 0; p < n; ++p)
    for (int i = 0; i < 12; ++i)
      for (int l = 0; l < 4; ++l) acc[i][l] = acc[i][l] * 0.5f + 1.0f;
  float s = 0;
  for (int i = 0; i < 12; ++i)
    for (int l = 0; l < 4; ++l) s += acc[i][l];
  return s;
}

// GFLOP/s of one timed run of n steps of 12 FMA chains of `lanes` lanes
static double chains_gflops(float (*chains)(std::int64_t), int lanes, std::int64_t n) {
  static volatile float sink = 0;  // (the sums, so the chains are not optimised away)
  const auto t0 = std::chrono::steady_clock::now();
  sink = sink + chains(n);
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return t > 0 ? 2.0 * lanes * 12 * (double)n / t / 1e9 : 0.0;
}

bool fma512_full_rate() {
  static const bool full = [] {
#ifdef FASTNN_X86_KERNELS
    if (!cpu_has(Simd::AVX512)) return false;
    double wide = 0, narrow = 0;  // the best of 5 runs of ~50-100 µs each, in turns
    for (int r = 0; r < 5; ++r) {
      wide = std::max(wide, chains_gflops(fma_chains_avx512, 16, 1 << 14));
      narrow = std::max(narrow, chains_gflops(fma_chains_avx2, 8, 1 << 14));
    }
    return wide > 1.5 * narrow;
#else
    return false;
#endif
  }();
  return full;
}

double fma_probe_gflops(double seconds) {
  float (*chains)(std::int64_t) = fma_chains_portable;
  int lanes = 4;
#ifdef FASTNN_X86_KERNELS
  if (g_path == Simd::AVX512) chains = fma_chains_avx512, lanes = 16;
  else if (g_path == Simd::AVX2) chains = fma_chains_avx2, lanes = 8;
#endif
  const std::int64_t n = 1 << 18;  // ~1 ms per run at the AVX-512 limit of a 3 GHz core
  double best = 0, spent = 0;
  do {
    const auto t0 = std::chrono::steady_clock::now();
    best = std::max(best, chains_gflops(chains, lanes, n));
    spent += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  } while (spent < seconds);
  return best;
}

}  // namespace fastnn
