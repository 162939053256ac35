// The blocked GEMM (BLIS loop structure):
//   for jc in N by NC:            B block  KC×NC  packed once, shared by all threads (L3)
//     for pc in K by KC:
//       for ic in M by MC:        A block  MC×KC  packed (L2)
//         for (jr, ir) tiles:     micro-kernel on an MR×NR tile of C (registers)
// Threads split only the packing slivers and the output tiles, and every tile sums over K in
// the same order whatever the thread count, so 1 and N threads give bitwise-equal results.
// The epilogue (bias, activation) runs on each tile right after its last K block, while the
// tile is still in cache.
#include <vector>
#include "gemm/gemm.h"
#include "gemm/gemm_pack.h"
#include "gemm/ukernel.h"

namespace fastnn {

namespace {

constexpr idx KC = 256;
constexpr idx MC_TILES = 12;   // MC = MC_TILES * MR
constexpr idx NC_MAX = 4096;
// Below this many multiply-adds a GEMM runs on one thread: waking threads costs more.
constexpr idx kMinMacsPerThread = 1 << 17;

template <class T> UKernel<T> ukernel();
template <> UKernel<float> ukernel<float>() { return ukernel_f32(); }
template <> UKernel<double> ukernel<double>() { return ukernel_f64(); }

template <class T>
void epilogue(T* c, idx ldc, idx rows, idx cols, const T* bias, Act act) {
  for (idx i = 0; i < rows; ++i) {
    T* ci = c + i * ldc;
    if (bias)
      for (idx j = 0; j < cols; ++j) ci[j] += bias[j];
    if (act != Act::None)
      for (idx j = 0; j < cols; ++j) ci[j] = apply_act(act, ci[j]);
  }
}

// C = beta*C (+ bias, act) for K == 0.
template <class T>
void scale_only(idx M, idx N, T beta, T* C, idx ldc, const T* bias, Act act) {
  for (idx i = 0; i < M; ++i)
    for (idx j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
  epilogue(C, ldc, M, N, bias, act);
}

}  // namespace

template <class T>
void gemm(bool trans_a, bool trans_b, idx M, idx N, idx K, T alpha,
          const T* A, idx lda, const T* B, idx ldb, T beta, T* C, idx ldc,
          const T* bias, Act act) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc, bias, act);

  const UKernel<T> uk = ukernel<T>();
  const int mr = uk.mr, nr = uk.nr;
  // Element (i, p) of op(A) is A[i*rsa + p*csa]; element (j, p) of op(B)ᵀ is B[j*rsb + p*csb],
  // so B is packed exactly like A, with N in the role of M.
  const idx rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
  const idx rsb = trans_b ? ldb : 1, csb = trans_b ? 1 : ldb;

  const idx MC = MC_TILES * mr;
  const idx NC = std::min<idx>(NC_MAX, (N + nr - 1) / nr * nr);
  const idx kc_max = std::min<idx>(KC, K);
  // Allocated before the parallel region: nothing inside it may throw.
  std::vector<T> apack((size_t)(MC * kc_max)), bpack((size_t)(NC * kc_max));
  T* const ap = apack.data();
  T* const bp = bpack.data();

  const int nt = threads_for(M * N * K, kMinMacsPerThread);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    alignas(64) T edge[16 * 32];  // one MR×NR tile; the largest kernel is 12×32
    for (idx jc = 0; jc < N; jc += NC) {
      const idx nc = std::min(NC, N - jc);
      const idx n_jr = (nc + nr - 1) / nr;
      for (idx pc = 0; pc < K; pc += KC) {
        const idx kc = std::min(KC, K - pc);
        const T beta_k = pc == 0 ? beta : T(1);
        const bool last_k = pc + kc == K;
#pragma omp for schedule(static)
        for (idx s = 0; s < n_jr; ++s)
          pack_panel(B + jc * rsb + pc * csb, rsb, csb, nc, kc, nr, s, s + 1, bp);
        for (idx ic = 0; ic < M; ic += MC) {
          const idx mc = std::min(MC, M - ic);
          const idx n_ir = (mc + mr - 1) / mr;
#pragma omp for schedule(static)
          for (idx s = 0; s < n_ir; ++s)
            pack_panel(A + ic * rsa + pc * csa, rsa, csa, mc, kc, mr, s, s + 1, ap);
#pragma omp for schedule(static)
          for (idx t = 0; t < n_jr * n_ir; ++t) {
            const idx jr = t / n_ir, ir = t % n_ir;
            const idx i0 = ic + ir * mr, j0 = jc + jr * nr;
            const idx rows = std::min<idx>(mr, M - i0), cols = std::min<idx>(nr, N - j0);
            T* c = C + i0 * ldc + j0;
            const T* a = ap + ir * mr * kc;
            const T* b = bp + jr * nr * kc;
            if (rows == mr && cols == nr) {
              uk.fn(kc, a, b, c, ldc, alpha, beta_k);
            } else {  // edge tile: compute the full tile into a buffer, merge the valid part
              uk.fn(kc, a, b, edge, nr, alpha, T(0));
              for (idx i = 0; i < rows; ++i)
                for (idx j = 0; j < cols; ++j)
                  c[i * ldc + j] = beta_k == T(0) ? edge[i * nr + j]
                                                  : edge[i * nr + j] + beta_k * c[i * ldc + j];
            }
            if (last_k) epilogue(c, ldc, rows, cols, bias ? bias + j0 : nullptr, act);
          }
        }
      }
    }
  }
}

template void gemm<float>(bool, bool, idx, idx, idx, float, const float*, idx, const float*, idx,
                          float, float*, idx, const float*, Act);
template void gemm<double>(bool, bool, idx, idx, idx, double, const double*, idx, const double*,
                           idx, double, double*, idx, const double*, Act);

}  // namespace fastnn
