// Shared by every kernel file: the index type, the thread-count setting, and the one parallel
// loop helper. Work is split into fixed-size chunks that do not depend on the thread count, so
// every kernel gives bitwise-identical results with 1 or N threads.
#pragma once
#include <cstdint>
#include <algorithm>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastnn {

using idx = std::int64_t;

// Marks an elementwise loop to be compiled for AVX-512 and AVX2 as well as the SSE2 baseline,
// the CPU picking one when the module loads (GCC function multi-versioning). Only for loops
// without reductions: with -ffp-contract=off every width computes the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FASTNN_ELEMENTWISE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FASTNN_ELEMENTWISE_CLONES
#endif

// Threads the kernels may use (set from Python via set_num_threads). Always >= 1; 1 inside a
// SerialScope.
int num_threads();
void set_num_threads(int n);
// In a process forked after this module loaded, kernels keep to one thread (runtime.cpp).
bool forked_child();

// A kernel that splits its own work across threads (a convolution over samples) runs the
// kernels it calls inside each worker on that worker alone: while a SerialScope lives, this
// thread's num_threads() is 1 (with on = false it changes nothing). Results never depend on it.
class SerialScope {
 public:
  explicit SerialScope(bool on = true);
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int saved_;
};

// Threads worth using for `work` units when one thread should get at least `min_work` of them.
inline int threads_for(idx work, idx min_work) {
  idx useful = min_work > 0 ? work / min_work : work;
  return (int)std::max<idx>(1, std::min<idx>(num_threads(), useful));
}

// Calls f(begin, end) over [0, n) in chunks of `chunk` items. Chunk boundaries are fixed, so a
// kernel that reduces per chunk and then combines chunks in order is thread-count independent.
// f must not throw (it runs inside an OpenMP region).
template <class F>
void parallel_chunks(idx n, idx chunk, F f) {
  if (n <= 0) return;
  const idx nchunks = (n + chunk - 1) / chunk;
  const int nt = (int)std::min<idx>(num_threads(), nchunks);
  if (nt == 1) {  // no OpenMP call at all: even a one-thread region costs ~0.1-0.3 µs
    for (idx c = 0; c < nchunks; ++c) f(c * chunk, std::min(n, (c + 1) * chunk));
    return;
  }
#pragma omp parallel for schedule(static) num_threads(nt)
  for (idx c = 0; c < nchunks; ++c) f(c * chunk, std::min(n, (c + 1) * chunk));
}

// Calls f(i) for i in [0, n), each item on one thread with one thread inside (SerialScope).
// Four items or more per thread go to whichever thread comes free first: for a batch's samples
// or chunks, where a static split waits on the thread that was slowed (the interpreter's own,
// or another process on its core: ~13% slower on a CNN's convolution); fewer are split evenly
// (a thread slow to wake would leave its share to the other). Results must not depend on which
// thread runs an item; f must not throw.
template <class F>
void parallel_items(idx n, F f) {
  if (n <= 0) return;
  const int nt = (int)std::min<idx>(num_threads(), n);
  if (nt == 1) {
    for (idx i = 0; i < n; ++i) f(i);
    return;
  }
  if (n >= 4 * nt) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (idx i = 0; i < n; ++i) {
      SerialScope serial;
      f(i);
    }
  } else {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (idx i = 0; i < n; ++i) {
      SerialScope serial;
      f(i);
    }
  }
}

// Elementwise work below this many items per thread is not worth waking a thread for.
constexpr idx kElementwiseChunk = 16384;

}  // namespace fastnn
