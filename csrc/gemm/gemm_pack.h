// Packing: copy a block of op(A) or op(B) into the micro-kernel's panel layout (ukernel.h),
// zero-padding past the edges. Strided reads handle every transpose case.
// Two source layouts matter:
//   - columns contiguous (cs == 1 is false, rs == 1): each k-step is a contiguous copy;
//   - rows contiguous (cs == 1): a transpose, done in 8×8 AVX2 blocks when the SIMD path allows
//     and in 4×4 SSE blocks otherwise (SSE2 is the x86-64 baseline, so no extra ISA flags) — it
//     dominates packing for X·Wᵀ otherwise.
#pragma once
#include <cstring>
#include <type_traits>
#include "core/common.h"
#include "gemm/ukernel.h"
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

namespace fastnn {

// d[p*mr + i] = src[i*rs + p] for i < rows, p < kc: rows of src are contiguous along p.
// Float rows go to the AVX2 8×8 kernel when the SIMD path has one (ukernel_avx2.cpp).
template <class T>
void pack_transposed(const T* src, idx rs, idx rows, idx kc, int mr, T* d) {
  idx i = 0;
  if constexpr (std::is_same_v<T, float>) {
    if (const PackT fast = pack_transposed_f32()) return fast(rows, kc, src, rs, mr, d);
  }
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 4 <= rows; i += 4) {
      const float* r0 = src + i * rs;
      const float *r1 = r0 + rs, *r2 = r1 + rs, *r3 = r2 + rs;
      idx p = 0;
      for (; p + 4 <= kc; p += 4) {
        __m128 a = _mm_loadu_ps(r0 + p), b = _mm_loadu_ps(r1 + p);
        __m128 c = _mm_loadu_ps(r2 + p), e = _mm_loadu_ps(r3 + p);
        _MM_TRANSPOSE4_PS(a, b, c, e);
        _mm_storeu_ps(d + (p + 0) * mr + i, a);
        _mm_storeu_ps(d + (p + 1) * mr + i, b);
        _mm_storeu_ps(d + (p + 2) * mr + i, c);
        _mm_storeu_ps(d + (p + 3) * mr + i, e);
      }
      for (; p < kc; ++p)
        for (idx q = 0; q < 4; ++q) d[p * mr + i + q] = src[(i + q) * rs + p];
    }
  }
#endif
  for (; i < rows; ++i)
    for (idx p = 0; p < kc; ++p) d[p * mr + i] = src[i * rs + p];
}

// Packs rows [0, mc) × cols [0, kc) of a matrix whose element (i, p) is src[i*rs + p*cs], as
// MR-row slivers: dst[s*MR*kc + p*MR + i]. Only slivers [s0, s1) are written (for threading).
// kc steps of R contiguous values, cs apart, to d (mr apart)
template <int R, class T>
void copy_steps(const T* base, idx cs, idx kc, int mr, T* d) {
  for (idx p = 0; p < kc; ++p) std::memcpy(d + p * mr, base + p * cs, R * sizeof(T));
}

template <class T>
void pack_panel(const T* src, idx rs, idx cs, idx mc, idx kc, int mr, idx s0, idx s1, T* dst) {
  for (idx s = s0; s < s1; ++s) {
    const idx i0 = s * mr, rows = std::min<idx>(mr, mc - i0);
    T* d = dst + s * mr * kc;
    const T* base = src + i0 * rs;
    // An edge sliver is zeroed whole first: zeroing its last mr - rows lanes per k step
    // compiled to one small memset call per step, which cost more than the copy itself.
    if (rows < mr) std::fill_n(d, mr * kc, T(0));
    if (cs == 1) {
      pack_transposed(base, rs, rows, kc, mr, d);
    } else if (rs == 1) {  // walk k outer: each step copies `rows` contiguous values
      // (a copy of a constant size compiles to vector moves, a variable one to a memmove call
      // per step: 15% of a Linear layer's 128 × 128 · 128 × 3136 weight gradient)
      switch (rows) {
        case 32: copy_steps<32>(base, cs, kc, mr, d); break;
        case 16: copy_steps<16>(base, cs, kc, mr, d); break;
        case 12: copy_steps<12>(base, cs, kc, mr, d); break;
        case 8: copy_steps<8>(base, cs, kc, mr, d); break;
        case 6: copy_steps<6>(base, cs, kc, mr, d); break;
        case 4: copy_steps<4>(base, cs, kc, mr, d); break;
        default:
          for (idx p = 0; p < kc; ++p) std::copy(base + p * cs, base + p * cs + rows, d + p * mr);
      }
    } else {
      for (idx p = 0; p < kc; ++p)
        for (idx i = 0; i < rows; ++i) d[p * mr + i] = base[i * rs + p * cs];
    }
  }
}

}  // namespace fastnn
