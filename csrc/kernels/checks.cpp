// Input checks that run over whole datasets (fit validates X before its first step).
#include <vector>
#include "kernels/kernels.h"

namespace fastnn {

// Blocks of 4096 values are tested with a branch-free reduction the compiler vectorises
// (x - x is 0 for every finite x, NaN for NaN and ±inf); only a block that fails is searched
// value by value. Chunks of blocks are split across threads, each records its own first failing
// index, and the first chunk with one wins: the answer does not depend on the thread count.
// (built for AVX-512 and AVX2 too: conv2d_backward scans each chunk of its input with it)
template <class T>
FASTNN_ELEMENTWISE_CLONES
int any_nonfinite(const T* x, idx n) {
  int bad = 0;
  for (idx i = 0; i < n; ++i) bad |= !(x[i] - x[i] == T(0));
  return bad;
}

template <class T>
idx first_nonfinite(const T* x, idx n) {
  constexpr idx kBlock = 4096, kBlocksPerChunk = 16;
  const idx nblocks = (n + kBlock - 1) / kBlock;
  const idx nchunks = (nblocks + kBlocksPerChunk - 1) / kBlocksPerChunk;
  std::vector<idx> first(nchunks, -1);  // per chunk, so no thread writes another's answer
  parallel_chunks(nblocks, kBlocksPerChunk, [&](idx b0, idx b1) {
    for (idx b = b0; b < b1; ++b) {
      const idx s = b * kBlock, e = std::min(n, s + kBlock);
      if (!any_nonfinite(x + s, e - s)) continue;
      idx i = s;
      while (x[i] - x[i] == T(0)) ++i;
      first[b0 / kBlocksPerChunk] = i;
      return;  // later blocks of this chunk hold only larger indices
    }
  });
  for (idx c = 0; c < nchunks; ++c)
    if (first[c] >= 0) return first[c];
  return -1;
}

template idx first_nonfinite<float>(const float*, idx);
template idx first_nonfinite<double>(const double*, idx);

}  // namespace fastnn
