// Input checks that run over whole datasets (fit validates X before its first step).
#include "kernels.h"

namespace fastnn {

// Blocks of 4096 values are tested with a branch-free reduction the compiler vectorises
// (x - x is 0 for every finite x, NaN for NaN and ±inf); only a block that fails is searched
// value by value. Blocks are split across threads and the lowest failing index wins, so the
// answer does not depend on the thread count.
template <class T>
idx first_nonfinite(const T* x, idx n) {
  constexpr idx kBlock = 4096;
  const idx nblocks = (n + kBlock - 1) / kBlock;
  idx first = -1;
  parallel_chunks(nblocks, 64, [&](idx b0, idx b1) {
    for (idx b = b0; b < b1; ++b) {
      const idx s = b * kBlock, e = std::min(n, s + kBlock);
      int bad = 0;
      for (idx i = s; i < e; ++i) bad |= !(x[i] - x[i] == T(0));
      if (!bad) continue;
      for (idx i = s; i < e; ++i) {
        if (!(x[i] - x[i] == T(0))) {
#pragma omp critical(fastnn_first_nonfinite)
          if (first < 0 || i < first) first = i;
          return;  // later blocks of this chunk hold only larger indices
        }
      }
    }
  });
  return first;
}

template idx first_nonfinite<float>(const float*, idx);
template idx first_nonfinite<double>(const double*, idx);

}  // namespace fastnn
