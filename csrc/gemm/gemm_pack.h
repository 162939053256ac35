// Packing: copy a block of op(A) or op(B) into the micro-kernel's panel layout (ukernel.h),
// zero-padding past the edges. Strided reads handle every transpose case; the loop order is
// picked so the source is read contiguously.
#pragma once
#include "common.h"

namespace fastnn {

// Packs rows [0, mc) × cols [0, kc) of a matrix whose element (i, p) is src[i*rs + p*cs], as
// MR-row slivers: dst[s*MR*kc + p*MR + i]. Only slivers [s0, s1) are written (for threading).
template <class T>
void pack_panel(const T* src, idx rs, idx cs, idx mc, idx kc, int mr, idx s0, idx s1, T* dst) {
  for (idx s = s0; s < s1; ++s) {
    const idx i0 = s * mr, rows = std::min<idx>(mr, mc - i0);
    T* d = dst + s * mr * kc;
    const T* base = src + i0 * rs;
    if (cs == 1) {  // rows are contiguous in the source: walk each row
      for (idx i = 0; i < rows; ++i)
        for (idx p = 0; p < kc; ++p) d[p * mr + i] = base[i * rs + p];
    } else {        // columns are contiguous: walk k outer
      for (idx p = 0; p < kc; ++p)
        for (idx i = 0; i < rows; ++i) d[p * mr + i] = base[i * rs + p * cs];
    }
    for (idx p = 0; p < kc; ++p)
      for (idx i = rows; i < mr; ++i) d[p * mr + i] = T(0);
  }
}

}  // namespace fastnn
