// The blocked GEMM (BLIS loop structure):
//   for jc in N by NC:            B block  KC×NC  packed once, shared by all threads (L3)
//     for pc in K by KC:
//       for ic in M by MC:        A block  MC×KC  packed (L2)
//         for (jr, ir) tiles:     micro-kernel on an MR×NR tile of C (registers)
// Threads share the packing of B and split the MR-row slivers of A (and so the output tiles);
// every tile sums over K in the same order whatever the thread count, so 1 and N threads give
// bitwise-equal results.
// The epilogue (bias, activation) runs on each tile right after its last K block, while the
// tile is still in cache.
#include <memory>
#include <type_traits>
#include "gemm/gemm.h"
#include "gemm/gemm_pack.h"
#include "gemm/ukernel.h"

namespace fastnn {

namespace {

constexpr idx KC = 256;
constexpr idx MC_TILES = 12;   // MC = MC_TILES * MR
constexpr idx NC_MAX = 4096;
// Below this many multiply-adds per thread a GEMM runs on one thread. Measured on 2 cores:
// shapes of <= 3.3M multiply-adds (100×256×128, 100×128×64) lose 10-20% to a second thread;
// the 10M MLP shapes (100×784×128, 128×100×784) gain 1.35-1.8×, 256³ 1.5×.
constexpr idx kMinMacsPerThread = idx(1) << 22;
// The unpacked loops share no packed panel and have no barrier per K block, so a second
// thread pays off sooner (measured on 2 cores: 100x64·64x128 and 64x100·100x128, 0.8M
// multiply-adds, run 1.3x faster; 100x784·(128x784)ᵀ 1.6x).
constexpr idx kSupMinMacsPerThread = idx(1) << 18;
// From this many rows, a transposed B is packed whole by each thread and C split by rows
// (gemm_sup explains; measured on 2 threads: equal at 256 and 512 rows, 1.5x faster at 1000
// rows of 1000x64·(10x64)ᵀ, slower at 100 rows).
constexpr idx kSupPrivateBRows = 256;
// The packed loops' B block width when each thread packs its own B: KC×NC floats (1 MB) stay
// in the core's L2 beside its A block.
constexpr idx kPrivateNC = 1024;

// GEMMs up to this many multiply-adds skip packing (gemm_sup). Measured on one AVX-512 core:
// unpacked is 1.1-2x faster for every MLP shape and square sizes up to 256 (packing is a large
// share of a small product), and 3-10% slower at 512³, where rereading unpacked A and B from L2
// costs more than packing them once. Tests move the limit to run every shape both ways.
constexpr idx kSupMaxMacsDefault = idx(1) << 24;
idx g_sup_max_macs = kSupMaxMacsDefault;
// Beyond that, a C at most this wide (8 panels of 32) with A stored untransposed still skips
// packing: each A sliver serves so few B panels that packing it costs more than reading it in
// place from L2 (measured, 2 threads: 1000x784·(128x784)ᵀ 794 -> 632 µs, 512x784·(128x784)ᵀ
// 420 -> 330, 20000x784·(128x784)ᵀ 20.1 -> 17.4 ms, 1000x784·(256x784)ᵀ 1470 -> 1361; 1 thread
// 12-18% faster at 128 columns; square shapes, where A serves 16 and more panels, are 7%
// slower unpacked on 1 thread). A transposed A read in place is slower (1000x784ᵀ·784x128
// 734 -> 781 µs), so it stays packed. Only while the limit above is the default: tests
// that move it force one path for every shape. A transposed B is packed whole by each thread
// there, so K is bounded too (256 x 8192 floats: 8 MB per thread).
constexpr idx kSupMaxColsAnySize = 256;
constexpr idx kSupMaxPackedB = idx(1) << 21;

template <class T> UKernel<T> ukernel(idx N);
template <> UKernel<float> ukernel<float>(idx N) { return ukernel_f32(N); }
template <> UKernel<double> ukernel<double>(idx) { return ukernel_f64(); }

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

// C = X·Wᵀ for a handful of rows (inference at batch 1): each output is a dot product of two
// contiguous rows, so packing W would cost more than the arithmetic. 16 partial sums per dot
// product (added up in a fixed order) let the compiler use vector registers without
// reordering any one sum; outputs are split across threads, so the thread count changes nothing.
template <class T>
void gemm_small_m(idx M, idx N, idx K, T alpha, const T* A, idx lda, const T* B, idx ldb, T beta,
                  T* C, idx ldc, const T* bias, Act act) {
  constexpr int U = 16;
  const SDot sdot = sdot_f32();
  const SDot8 sdot8 = sdot8_f32();
  // Outputs split evenly across the threads worth using (>= 32k multiply-adds each), in chunks
  // of a multiple of 8, so each output goes through the same dot kernel whatever the count.
  const int nt = threads_for(M * N * K, idx(1) << 15);
  const idx chunk = ((N + nt - 1) / nt + 7) / 8 * 8;
  parallel_chunks(N, chunk, [&](idx j0, idx j1) {
    for (idx i = 0; i < M; ++i) {
      const T* a = A + i * lda;
      T* c = C + i * ldc;
      idx j = j0;
      if constexpr (std::is_same_v<T, float>) {
        if (sdot8) {
          alignas(32) float s8[8];
          for (; j + 8 <= j1; j += 8) {
            sdot8(K, a, B + j * ldb, ldb, s8);
            for (int u = 0; u < 8; ++u)
              c[j + u] = beta == T(0) ? alpha * s8[u] : alpha * s8[u] + beta * c[j + u];
          }
        }
      }
      for (; j < j1; ++j) {
        const T* b = B + j * ldb;
        if constexpr (std::is_same_v<T, float>) {
          if (sdot) {
            const T s = sdot(K, a, b);
            c[j] = beta == T(0) ? alpha * s : alpha * s + beta * c[j];
            continue;
          }
        }
        T acc[U] = {};
        idx k = 0;
        for (; k + U <= K; k += U)
          for (int u = 0; u < U; ++u) acc[u] += a[k + u] * b[k + u];
        T s = 0;
        for (int u = 0; u < U; ++u) s += acc[u];
        for (; k < K; ++k) s += a[k] * b[k];
        c[j] = beta == T(0) ? alpha * s : alpha * s + beta * c[j];
      }
    }
    for (idx i = 0; i < M; ++i)
      epilogue(C + i * ldc + j0, ldc, 1, j1 - j0, bias ? bias + j0 : nullptr, act);
  });
}

// Packing buffers are reused across calls (one pair per calling thread) instead of being
// allocated and zero-filled every time: small GEMMs are dominated by such fixed costs.
template <class T>
struct Scratch {
  std::unique_ptr<T[]> data;
  size_t capacity = 0;
  T* get(size_t n) {  // may throw std::bad_alloc: called before any parallel region
    if (n > capacity) {
      data.reset(new T[n]);
      capacity = n;
    }
    return data.get();
  }
};

// Small float GEMMs without packing (BLIS calls these "sup"): the micro-kernel reads A and B
// where they lie and keeps each C tile in registers over all of K. Only what the kernel cannot
// read in place is packed: a last A sliver of fewer than MR rows, a last B panel narrower than
// NR columns, and B when it is stored transposed (X·Wᵀ: W's rows run along K, not along N).
// Tiles are split across threads whole, so the thread count never changes a result.
void gemm_sup(const SupKernel& sk, bool trans_a, bool trans_b, idx M, idx N, idx K, float alpha,
              const float* A, idx lda, const float* B, idx ldb, float beta, float* C, idx ldc,
              const float* bias, Act act, Scratch<float>& abuf, Scratch<float>& bbuf) {
  const int mr = sk.mr, nr = sk.nr;
  const idx rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
  const idx n_jr = (N + nr - 1) / nr, n_ir = (M + mr - 1) / mr;
  const idx full_jr = trans_b ? 0 : N / nr;     // B panels read in place
  const idx full_ir = M / mr;                   // A slivers read in place
  // The last sliver is read in place too when the kernel has a variant for its row count
  // (8 or 4 of 12); otherwise it is packed, zero-padded, for the full kernel. Measured on 2
  // threads: 32x784·(128x784)ᵀ, whose last sliver has 8 rows, took 48.6 µs with that sliver
  // packed (one copy shared by the threads, as then), more than 36 rows (37 µs); 35 µs read in
  // place.
  const idx edge_rows = M - full_ir * mr;
  const SupFn edge_fn = edge_rows == 8 ? sk.rows8 : edge_rows == 4 ? sk.rows4 : nullptr;
  // Packed B panels are stored K block by K block ([block][panel][p][j]), so packing writes
  // stay within one L1-sized block (measured: packing all of K at once took 1.6x as long).
  const idx packed_jr = n_jr - full_jr;
  const size_t b_size = (size_t)(packed_jr * nr * K + 15) / 16 * 16;  // whole cache lines
  // Threads split C into whole rows when B is read in place (row boundaries chosen so the row
  // counts balance): rows share no cache line, and nothing a thread writes is read by another.
  // A transposed B must be packed. For a tall C each thread packs all of it into its own
  // buffer and takes a range of rows, so no core reads panels packed in the other's cache; for
  // a short C that repacking would cost a large share of the work, so threads split whole
  // column panels instead, each packing its own (measured, 2 threads: 100x128·(64x128)ᵀ 19 µs
  // by rows reading shared panels, 13 µs by panels; 1000x128·(64x128)ᵀ 60 µs by panels, 56 µs
  // by rows with private panels).
  const bool private_b = trans_b && M >= kSupPrivateBRows;
  const int nt_max = threads_for(M * N * K, kSupMinMacsPerThread);
  // Row ranges are whole slivers, so a short C splits unevenly (32 rows on 2 threads: 12 and
  // 20); with B read in place, whole column panels may balance better and cost nothing extra.
  // The split with the smaller largest share (rows times columns) wins.
  auto row_bound = [&](idx k, idx team) {
    return k == 0 ? 0 : k == team ? n_ir : std::min(n_ir, (M * k / team + mr / 2) / mr);
  };
  bool by_rows = !trans_b || private_b;
  if (!trans_b && nt_max > 1) {
    const idx tr = std::min<idx>(nt_max, n_ir), tc = std::min<idx>(nt_max, n_jr);
    idx rows_max = 0, cols_max = 0;
    for (idx t = 0; t < tr; ++t)
      rows_max = std::max(rows_max, std::min(M, row_bound(t + 1, tr) * mr) - row_bound(t, tr) * mr);
    for (idx t = 0; t < tc; ++t)
      cols_max = std::max(cols_max, std::min(N, n_jr * (t + 1) / tc * nr) - n_jr * t / tc * nr);
    by_rows = 8 * M * cols_max >= 7 * rows_max * N;
  }
  const int nt = (int)std::min<idx>(nt_max, by_rows ? n_ir : n_jr);
  // Each thread packs what it reads into its own part of the buffers (a packed A edge sliver,
  // B panels or a B edge panel): a panel packed by another core would be fetched from that
  // core's cache on every call (measured, 2 threads: 30x784·(128x784)ᵀ, whose 6-row edge
  // sliver is packed, took 49.6 µs with one shared copy and 40 µs with one per thread).
  const bool a_edge_packed = full_ir < n_ir && !edge_fn;
  const size_t a_size = a_edge_packed ? (size_t)(mr * K + 15) / 16 * 16 : 0;
  float* const bp = bbuf.get(b_size * (by_rows ? (size_t)nt : 1));
  float* const ap = abuf.get(a_size * (size_t)nt);
  // Packs B panels [jr0, jr1) (those not read in place), every K block, into dst.
  auto pack_b = [&](float* dst, idx jr0, idx jr1) {
    for (idx pc = 0; pc < K; pc += KC) {
      const idx kc = std::min(KC, K - pc);
      float* d = dst + pc * packed_jr * nr;
      for (idx jr = std::max(jr0, full_jr); jr < jr1; ++jr) {
        const idx s = jr - full_jr;
        if (trans_b) pack_panel(B + pc, ldb, idx(1), N, kc, nr, s, s + 1, d);
        else pack_panel(B + pc * ldb + full_jr * nr, idx(1), ldb, N - full_jr * nr, kc, nr, 0, 1, d);
      }
    }
  };
  // Packs the last A sliver, all of K, into dst[p*mr + i] (at most 11 rows).
  auto pack_a_edge = [&](float* dst) {
    pack_panel(A + full_ir * mr * rsa, rsa, csa, M - full_ir * mr, K, mr, 0, 1, dst);
  };
  // The tiles of slivers [ir0, ir1) x panels [jr0, jr1), K block by K block (as the packed
  // loops do) so the slice of each B panel in use stays in L1 across the A slivers; a packed A
  // edge sliver is read from apk, packed B panels from bpk.
  auto run_tiles = [&](const float* apk, const float* bpk, idx ir0, idx ir1, idx jr0, idx jr1) {
    for (idx pc = 0; pc < K; pc += KC) {
      const idx kc = std::min(KC, K - pc);
      const float beta_k = pc == 0 ? beta : 1.0f;
      for (idx jr = jr0; jr < jr1; ++jr) {
        for (idx ir = ir0; ir < ir1; ++ir) {
          const idx i0 = ir * mr, j0 = jr * nr;
          const int rows = (int)std::min<idx>(mr, M - i0), cols = (int)std::min<idx>(nr, N - j0);
          const bool a_in_place = ir < full_ir || edge_fn, b_in_place = jr < full_jr;
          const SupFn fn = ir < full_ir || !edge_fn ? sk.fn : edge_fn;
          const float* a = a_in_place ? A + i0 * rsa + pc * csa : apk + pc * mr;
          const float* b = b_in_place ? B + pc * ldb + j0
                                      : bpk + pc * packed_jr * nr + (jr - full_jr) * nr * kc;
          float* c = C + i0 * ldc + j0;
          fn(kc, a, a_in_place ? rsa : 1, a_in_place ? csa : mr, b, b_in_place ? ldb : nr, c,
             ldc, alpha, beta_k, rows, cols);
          if (pc + kc == K) epilogue(c, ldc, rows, cols, bias ? bias + j0 : nullptr, act);
        }
      }
    }
  };
  if (nt == 1) {  // no OpenMP call at all: even a one-thread region costs ~0.1 µs
    if (a_edge_packed) pack_a_edge(ap);
    pack_b(bp, 0, n_jr);
    return run_tiles(ap, bp, 0, n_ir, 0, n_jr);
  }
#pragma omp parallel num_threads(nt)
  {
#ifdef _OPENMP
    const idx tid = omp_get_thread_num(), team = omp_get_num_threads();  // may be < nt
#else
    const idx tid = 0, team = 1;
#endif
    float* const my_a = ap + tid * a_size;
    if (by_rows) {  // B: every panel (a transposed B) or at most the last, partial one
      float* const my_b = bp + tid * b_size;
      pack_b(my_b, 0, n_jr);
      const idx ir0 = row_bound(tid, team), ir1 = row_bound(tid + 1, team);
      if (a_edge_packed && ir0 < n_ir && ir1 == n_ir) pack_a_edge(my_a);
      run_tiles(my_a, my_b, ir0, ir1, 0, n_jr);
    } else {
      const idx jr0 = n_jr * tid / team, jr1 = n_jr * (tid + 1) / team;
      pack_b(bp, jr0, jr1);
      if (a_edge_packed) pack_a_edge(my_a);
      run_tiles(my_a, bp, 0, n_ir, jr0, jr1);
    }
  }
}

template <class T>
struct Problem {
  UKernel<T> uk;
  idx M, N, K, rsa, csa, rsb, csb, ldc, MC, NC;
  T alpha, beta;
  const T *A, *B, *bias;
  T* C;
  Act act;
  T *ap, *bp;
  bool solo = false;  // run by one thread inside another parallel region: no team, no barriers
};

// The loop nest, run by every thread of the team (or by the caller alone). B blocks are packed
// by all threads together and shared; each thread owns a contiguous range of MR-row slivers of
// every A block, packs exactly those rows and computes every tile in them, so its packed A
// never leaves its own core's cache and needs no barrier. One barrier per K block keeps a
// thread from repacking B while another still reads it.
template <class T>
void run_loops(const Problem<T>& shared) {
  // Each thread reads its own copy of the problem, never the caller's stack frame (measured:
  // sharing it made one 2-thread AVX2 shape run at half speed).
  const Problem<T> P = shared;
#ifdef _OPENMP
  const idx tid = P.solo ? 0 : omp_get_thread_num(), nt = P.solo ? 1 : omp_get_num_threads();
#else
  const idx tid = 0, nt = 1;
#endif
  const int mr = P.uk.mr, nr = P.uk.nr;
  alignas(64) T edge[16 * 32];  // one MR×NR tile; the largest kernel is 12×32
  for (idx jc = 0; jc < P.N; jc += P.NC) {
    const idx nc = std::min(P.NC, P.N - jc);
    const idx n_jr = (nc + nr - 1) / nr;
    for (idx pc = 0; pc < P.K; pc += KC) {
      const idx kc = std::min(KC, P.K - pc);
      const T beta_k = pc == 0 ? P.beta : T(1);
      const bool last_k = pc + kc == P.K;
      if (P.solo) {
        pack_panel(P.B + jc * P.rsb + pc * P.csb, P.rsb, P.csb, nc, kc, nr, 0, n_jr, P.bp);
      } else {
#pragma omp for schedule(static)
        for (idx s = 0; s < n_jr; ++s)
          pack_panel(P.B + jc * P.rsb + pc * P.csb, P.rsb, P.csb, nc, kc, nr, s, s + 1, P.bp);
      }
      for (idx ic = 0; ic < P.M; ic += P.MC) {
        const idx mc = std::min(P.MC, P.M - ic);
        const idx n_ir = (mc + mr - 1) / mr;
        const idx ir0 = n_ir * tid / nt, ir1 = n_ir * (tid + 1) / nt;  // this thread's rows
        // Each thread packs its slivers into its own region of the A buffer: sliver ranges change
        // with the (shorter) last block, so a shared buffer would let one thread overwrite rows
        // another is still multiplying.
        T* const ap = P.ap + tid * P.MC * kc;
        pack_panel(P.A + ic * P.rsa + pc * P.csa + ir0 * mr * P.rsa, P.rsa, P.csa, mc - ir0 * mr,
                   kc, mr, 0, ir1 - ir0, ap);
        for (idx jr = 0; jr < n_jr; ++jr) {
          for (idx ir = ir0; ir < ir1; ++ir) {
            const idx i0 = ic + ir * mr, j0 = jc + jr * nr;
            const idx rows = std::min<idx>(mr, P.M - i0), cols = std::min<idx>(nr, P.N - j0);
            T* c = P.C + i0 * P.ldc + j0;
            const T* a = ap + (ir - ir0) * mr * kc;
            const T* b = P.bp + jr * nr * kc;
            // Ask for the next tile's C rows (into L2) while this one computes: a large C does
            // not stay in cache between K blocks, and the micro-kernel would otherwise wait for
            // each row at its end (measured, 2048³ on 2 threads: 69 -> 61 ms; no change at
            // 1024³). Prefetching inside the micro-kernel made GCC spill its accumulators.
            if (ir + 1 < ir1) {
              const T* next = c + mr * P.ldc;
              for (int i = 0; i < mr; ++i) {
                for (int j = 0; j < nr; j += 64 / (int)sizeof(T))
                  __builtin_prefetch(next + i * P.ldc + j, 0, 2);  // prefetcht1 on x86
                __builtin_prefetch(next + i * P.ldc + nr - 1, 0, 2);  // a row off the line boundary spans one more
              }
            }
            if (rows == mr && cols == nr) {
              P.uk.fn(kc, a, b, c, P.ldc, P.alpha, beta_k);
            } else {  // edge tile: compute the full tile into a buffer, merge the valid part
              P.uk.fn(kc, a, b, edge, nr, P.alpha, T(0));
              for (idx i = 0; i < rows; ++i)
                for (idx j = 0; j < cols; ++j)
                  c[i * P.ldc + j] = beta_k == T(0) ? edge[i * nr + j]
                                                    : edge[i * nr + j] + beta_k * c[i * P.ldc + j];
            }
            if (last_k) epilogue(c, P.ldc, rows, cols, P.bias ? P.bias + j0 : nullptr, P.act);
          }
        }
      }
      if (!P.solo) {
#pragma omp barrier
      }
    }
  }
}

// Rows [i0, i1) x columns [j0, j1) of the problem on the calling thread, with that thread's
// own packing buffers.
template <class T>
void gemm_one_thread(const Problem<T>& whole, idx i0, idx i1, idx j0, idx j1) {
  Problem<T> P = whole;
  P.M = i1 - i0;
  P.N = j1 - j0;
  P.A = whole.A + i0 * whole.rsa;
  P.B = whole.B + j0 * whole.rsb;
  P.C = whole.C + i0 * whole.ldc + j0;
  P.bias = whole.bias ? whole.bias + j0 : nullptr;
  P.NC = std::min<idx>(whole.NC, (P.N + P.uk.nr - 1) / P.uk.nr * P.uk.nr);
  static thread_local Scratch<T> apack, bpack;
  const idx kc_max = std::min<idx>(KC, P.K);
  P.ap = apack.get((size_t)(P.MC * kc_max));
  P.bp = bpack.get((size_t)(P.NC * kc_max));
  P.solo = true;
  run_loops(P);
}

}  // namespace

idx set_gemm_sup_max_macs(idx n) {
  const idx old = g_sup_max_macs;
  g_sup_max_macs = n < 0 ? kSupMaxMacsDefault : n;
  return old;
}

template <class T>
void gemm(bool trans_a, bool trans_b, idx M, idx N, idx K, T alpha,
          const T* A, idx lda, const T* B, idx ldb, T beta, T* C, idx ldc,
          const T* bias, Act act) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc, bias, act);
  if (M <= 4 && !trans_a && trans_b)
    return gemm_small_m(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, act);

  if constexpr (std::is_same_v<T, float>) {
    const SupKernel sk = sup_kernel_f32(N);
    const bool narrow = g_sup_max_macs == kSupMaxMacsDefault && !trans_a &&
                        N <= kSupMaxColsAnySize && N * K <= kSupMaxPackedB;
    if (sk.fn && (M * N * K <= g_sup_max_macs || narrow)) {
      static thread_local Scratch<float> abuf, bbuf;
      return gemm_sup(sk, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                             bias, act, abuf, bbuf);
    }
  }
  Problem<T> P;
  P.uk = ukernel<T>(N);
  // Element (i, p) of op(A) is A[i*rsa + p*csa]; element (j, p) of op(B)ᵀ is B[j*rsb + p*csb],
  // so B is packed exactly like A, with N in the role of M.
  P.rsa = trans_a ? 1 : lda, P.csa = trans_a ? lda : 1;
  P.rsb = trans_b ? ldb : 1, P.csb = trans_b ? 1 : ldb;
  P.M = M, P.N = N, P.K = K, P.ldc = ldc;
  P.MC = MC_TILES * P.uk.mr;
  P.NC = std::min<idx>(NC_MAX, (N + P.uk.nr - 1) / P.uk.nr * P.uk.nr);
  P.alpha = alpha, P.beta = beta, P.A = A, P.B = B, P.bias = bias, P.C = C, P.act = act;
  static thread_local Scratch<T> apack, bpack;
  // Threads split MR-row slivers, so more threads than slivers would idle.
  const idx slivers = (std::min(M, P.MC) + P.uk.mr - 1) / P.uk.mr;
  // Every K block costs a barrier and a hand-off of the shared packed B between cores, so a
  // GEMM with several K blocks needs twice the work per thread before a second thread pays
  // (measured: 100×784×128 runs 0.91× as fast on 2 threads, 200×784×128 1.31× faster).
  const idx min_work = K > KC ? 2 * kMinMacsPerThread : kMinMacsPerThread;
  // Short, wide outputs split by columns instead: each thread runs the whole K loop on its own
  // column range with its own packed B, so no barrier per K block and no B hand-off between
  // cores (measured: X·W1ᵀ 100×784·784×128 1.5× faster on 2 threads than on 1, where the row
  // split lost 10%). Each element still sums over K in the same order: bitwise the same result.
  const int nt_cols = threads_for(M * N * K, kMinMacsPerThread);
  if (nt_cols > 1 && M <= P.MC && N >= 2 * nt_cols * P.uk.nr) {  // one A block: repacking it per thread is cheap
    const idx step = ((N + nt_cols - 1) / nt_cols + P.uk.nr - 1) / P.uk.nr * P.uk.nr;  // covers N
#pragma omp parallel for schedule(static, 1) num_threads(nt_cols)
    for (int t = 0; t < nt_cols; ++t) {
      const idx j0 = t * step, j1 = std::min(N, j0 + step);
      if (j0 < j1) gemm_one_thread(P, 0, M, j0, j1);
    }
    return;
  }
  // Tall outputs split by rows, each thread running the whole loop nest on its own rows with
  // its own packed B: no barrier per K block and no core reading B panels packed in the
  // other's cache, for the price of packing B once per thread (small next to at least one
  // full A block of work per thread). Measured on 2 threads: 1024³ 7.25 ms against 7.52 ms
  // with a shared B, 512³ 0.91 against 0.97 ms, 1000×784·(128×784)ᵀ 725 against 765 µs.
  if (nt_cols > 1 && M >= nt_cols * P.MC) {
    const idx n_ir = (M + P.uk.mr - 1) / P.uk.mr;
    P.NC = std::min<idx>(P.NC, kPrivateNC);
#pragma omp parallel for schedule(static, 1) num_threads(nt_cols)
    for (int t = 0; t < nt_cols; ++t) {
      const idx i0 = std::min(M, n_ir * t / nt_cols * P.uk.mr);
      const idx i1 = std::min(M, n_ir * (t + 1) / nt_cols * P.uk.mr);
      if (i0 < i1) gemm_one_thread(P, i0, i1, 0, N);
    }
    return;
  }
  const int nt = (int)std::min<idx>(threads_for(M * N * K, min_work), slivers);
  const idx kc_max = std::min<idx>(KC, K);
  P.ap = apack.get((size_t)(nt * P.MC * kc_max));
  P.bp = bpack.get((size_t)(P.NC * kc_max));
  if (nt == 1) {  // no team: also right when called inside another parallel region (a SerialScope)
    P.solo = true;
    return run_loops(P);
  }
#pragma omp parallel num_threads(nt)
  run_loops(P);
}

template void gemm<float>(bool, bool, idx, idx, idx, float, const float*, idx, const float*, idx,
                          float, float*, idx, const float*, Act);
template void gemm<double>(bool, bool, idx, idx, idx, double, const double*, idx, const double*,
                           idx, double, double*, idx, const double*, Act);

}  // namespace fastnn
