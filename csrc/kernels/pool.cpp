// Max and average pooling over NCHW images. Every (sample, channel) plane is independent, so
// threads take whole planes and nothing depends on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include "kernels/kernels.h"
#include "kernels/pool_simd.h"

namespace fastnn {
namespace {

// Runs f(plane) for the N·C planes, several planes per task when they are small.
template <class F>
void over_planes(const Pool2d& s, F f) {
  const idx work = std::max<idx>(1, s.H * s.W);
  parallel_chunks(s.N * s.C, std::max<idx>(1, kElementwiseChunk / work), [&](idx p0, idx p1) {
    for (idx p = p0; p < p1; ++p) f(p);
  });
}

}  // namespace

namespace {

// Branch-free selects: GCC turns `take ? a : b` on scalars into branches, which mispredict
// half the time on real data (the comparison is a coin toss): ~17 cycles per 2×2 window.
inline std::int32_t pick(bool take, std::int32_t a, std::int32_t b) {
  const std::int32_t m = -(std::int32_t)take;
  return (a & m) | (b & ~m);
}
template <class T>
T pick(bool take, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  U ua, ub;
  std::memcpy(&ua, &a, sizeof(T)), std::memcpy(&ub, &b, sizeof(T));
  const U m = -(U)take, r = (ua & m) | (ub & ~m);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// One output row of the common 2×2 window with stride 2, from input rows r0 and r1 (the row
// pair starts at plane index `base`). Rows of 7 or 14 outputs are too short for vectors, so
// this is scalar and branch-free.
template <class T>
void max_row_2x2(T* __restrict o, std::int32_t* __restrict a, const T* __restrict r0, const T* __restrict r1,
                 idx OW, std::int32_t base, std::int32_t W) {
  for (idx ow = 0; ow < OW; ++ow) {
    const T v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
    T best = v0;
    std::int32_t at = 0;
    bool take = (v1 > best) | (v1 != v1);  // PyTorch's rule: larger, or NaN
    best = pick(take, v1, best), at = pick(take, 1, at);
    take = (v2 > best) | (v2 != v2);
    best = pick(take, v2, best), at = pick(take, W, at);
    take = (v3 > best) | (v3 != v3);
    best = pick(take, v3, best), at = pick(take, W + 1, at);
    o[ow] = best, a[ow] = base + 2 * (std::int32_t)ow + at;
  }
}

// One image plane of a max pool without padding: every window lies in the image and starts at
// its first offset; the other offsets follow in row-major order.
template <class T>
void max_plane(T* __restrict o, std::int32_t* __restrict a, const T* __restrict in, const Pool2d& s) {
  const idx OW = s.OW, SW = s.SW, W = s.W;
  for (idx oh = 0; oh < s.OH; ++oh, o += OW, a += OW) {
    const idx h0 = oh * s.SH;
    if (s.KH == 2 && s.KW == 2 && SW == 2) {
      max_row_2x2(o, a, in + h0 * W, in + (h0 + 1) * W, OW, (std::int32_t)(h0 * W), (std::int32_t)W);
      continue;
    }
    const T* r = in + h0 * W;
    for (idx ow = 0; ow < OW; ++ow) {
      o[ow] = r[ow * SW];
      a[ow] = (std::int32_t)(h0 * W + ow * SW);
    }
    for (idx kh = 0; kh < s.KH; ++kh) {
      r = in + (h0 + kh) * W;
      for (idx kw = kh == 0 ? 1 : 0; kw < s.KW; ++kw) {
        const std::int32_t base = (std::int32_t)((h0 + kh) * W + kw);
        for (idx ow = 0; ow < OW; ++ow) {
          const T v = r[ow * SW + kw];
          const bool take = v > o[ow] || v != v;  // PyTorch's rule: larger, or NaN
          o[ow] = take ? v : o[ow];
          a[ow] = take ? base + (std::int32_t)(ow * SW) : a[ow];
        }
      }
    }
  }
}

// The gradient of one output row of the 2×2, stride-2 pool (max_row_2x2) into its two input
// rows d0 and d1, every value written: the windows do not overlap, so each input gets its
// window's gradient or zero. 0 + g, not g, keeps the bits of the general path's zero-fill
// then add (a gradient of -0 becomes +0 there). False if an argmax lies outside its window
// (only a hand-made one can): the caller then scatters the plane the general way.
// With vr (the pool's output, a ReLU before the pool): g · relu_grad(vr), as relu_backward.
template <class T>
FASTNN_ELEMENTWISE_CLONES
bool max_back_row_2x2(T* __restrict d0, T* __restrict d1, const T* __restrict g, const T* __restrict vr,
                      const std::int32_t* __restrict a, idx OW, std::int32_t base, std::int32_t W) {
  bool inside = true;
  for (idx ow = 0; ow < OW; ++ow) {
    const std::int32_t at = a[ow] - base - 2 * (std::int32_t)ow;
    const T v = T(0) + (vr ? g[ow] * relu_grad(vr[ow]) : g[ow]);
    d0[2 * ow] = at == 0 ? v : T(0);
    d0[2 * ow + 1] = at == 1 ? v : T(0);
    d1[2 * ow] = at == W ? v : T(0);
    d1[2 * ow + 1] = at == W + 1 ? v : T(0);
    inside &= at == 0 || at == 1 || at == W || at == W + 1;
  }
  return inside;
}

// The float vector build of the 2×2 pool for the SIMD path in use (pool_simd.h), or null.
template <class T>
const MaxPool2x2* vector_2x2() {
  if constexpr (std::is_same_v<T, float>) return maxpool_2x2_f32();
  return nullptr;
}

}  // namespace

// Without padding, a plane at a time (max_plane); with padding, window by window, each started
// at its first in-image value.
template <class T>
void maxpool2d_forward(T* out, std::int32_t* argmax, const T* x, const Pool2d& s) {
  const bool padded = s.PH > 0 || s.PW > 0;
  const MaxPool2x2* fast = vector_2x2<T>();
  over_planes(s, [&](idx p) {
    const T* in = x + p * s.H * s.W;
    T* o = out + p * s.OH * s.OW;
    std::int32_t* a = argmax + p * s.OH * s.OW;
    if (!padded && s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && fast)
      return fast->forward(reinterpret_cast<float*>(o), a, reinterpret_cast<const float*>(in), s.OH, s.OW, s.W);
    if (!padded) return max_plane(o, a, in, s);
    for (idx oh = 0; oh < s.OH; ++oh)
      for (idx ow = 0; ow < s.OW; ++ow) {
        const idx h0 = oh * s.SH - s.PH, w0 = ow * s.SW - s.PW;
        const idx h = std::max<idx>(h0, 0), w = std::max<idx>(w0, 0);
        T best = in[h * s.W + w];
        idx at = h * s.W + w;
        for (idx kh = std::max<idx>(0, -h0); kh < std::min(s.KH, s.H - h0); ++kh)
          for (idx kw = std::max<idx>(0, -w0); kw < std::min(s.KW, s.W - w0); ++kw) {
            const idx i = (h0 + kh) * s.W + w0 + kw;
            const T v = in[i];
            const bool take = v > best || v != v;
            best = take ? v : best;
            at = take ? i : at;
          }
        o[oh * s.OW + ow] = best;
        a[oh * s.OW + ow] = (std::int32_t)at;
      }
  });
}

namespace {

// maxpool2d_backward, of dout · relu_grad(vr) when vr (the pool's output) is given, into planes
// `ld` apart whose rows are `row` apart (W values each; what lies between is left alone)
template <class T>
void max_backward(T* dx, idx ld, idx row, const T* dout, const T* vr, const std::int32_t* argmax, const Pool2d& s) {
  const bool tiled = s.KH == 2 && s.KW == 2 && s.SH == 2 && s.SW == 2 && s.PH == 0 && s.PW == 0;
  const MaxPool2x2* fast = vector_2x2<T>();
  over_planes(s, [&](idx p) {
    T* d = dx + p * ld;
    const T* g = dout + p * s.OH * s.OW;
    const T* v = vr ? vr + p * s.OH * s.OW : nullptr;
    const std::int32_t* a = argmax + p * s.OH * s.OW;
    if (tiled) {  // row pairs written whole; an odd last row and column get zeros
      bool inside = true;
      if (fast) {
        inside = fast->backward(reinterpret_cast<float*>(d), row, reinterpret_cast<const float*>(g),
                                reinterpret_cast<const float*>(v), a, s.OH, s.OW, s.W);
      } else {
        for (idx oh = 0; oh < s.OH && inside; ++oh) {
          T* d0 = d + 2 * oh * row;
          inside = max_back_row_2x2(d0, d0 + row, g + oh * s.OW, v ? v + oh * s.OW : nullptr, a + oh * s.OW, s.OW,
                                    (std::int32_t)(2 * oh * s.W), (std::int32_t)s.W);
        }
      }
      if (inside) {
        if (s.W > 2 * s.OW)
          for (idx h = 0; h < 2 * s.OH; ++h) d[h * row + s.W - 1] = T(0);
        for (idx h = 2 * s.OH; h < s.H; ++h) std::fill(d + h * row, d + h * row + s.W, T(0));
        return;
      }
    }
    for (idx h = 0; h < s.H; ++h) std::fill(d + h * row, d + h * row + s.W, T(0));
    for (idx i = 0; i < s.OH * s.OW; ++i) d[a[i] / s.W * row + a[i] % s.W] += v ? g[i] * relu_grad(v[i]) : g[i];
  });
}

}  // namespace

template <class T>
void maxpool2d_backward(T* dx, const T* dout, const std::int32_t* argmax, const Pool2d& s) {
  max_backward(dx, s.H * s.W, s.W, dout, (const T*)nullptr, argmax, s);
}

template <class T>
void maxpool2d_relu_backward(T* dx, idx ld, idx row, const T* dout, const T* out, const std::int32_t* argmax,
                             const Pool2d& s) {
  max_backward(dx, ld, row, dout, out, argmax, s);
}

// count_include_pad: every window divides by KH·KW, padding counting as zeros.
template <class T>
void avgpool2d_forward(T* out, const T* x, const Pool2d& s) {
  const T scale = T(1) / T(s.KH * s.KW);
  over_planes(s, [&](idx p) {
    const T* in = x + p * s.H * s.W;
    T* o = out + p * s.OH * s.OW;
    for (idx oh = 0; oh < s.OH; ++oh)
      for (idx ow = 0; ow < s.OW; ++ow) {
        const idx h0 = oh * s.SH - s.PH, w0 = ow * s.SW - s.PW;
        T sum = 0;
        for (idx kh = std::max<idx>(0, -h0); kh < std::min(s.KH, s.H - h0); ++kh)
          for (idx kw = std::max<idx>(0, -w0); kw < std::min(s.KW, s.W - w0); ++kw) sum += in[(h0 + kh) * s.W + w0 + kw];
        o[oh * s.OW + ow] = sum * scale;
      }
  });
}

template <class T>
void avgpool2d_backward(T* dx, const T* dout, const Pool2d& s) {
  const T scale = T(1) / T(s.KH * s.KW);
  over_planes(s, [&](idx p) {
    T* d = dx + p * s.H * s.W;
    std::fill(d, d + s.H * s.W, T(0));
    const T* g = dout + p * s.OH * s.OW;
    for (idx oh = 0; oh < s.OH; ++oh)
      for (idx ow = 0; ow < s.OW; ++ow) {
        const idx h0 = oh * s.SH - s.PH, w0 = ow * s.SW - s.PW;
        const T v = g[oh * s.OW + ow] * scale;
        for (idx kh = std::max<idx>(0, -h0); kh < std::min(s.KH, s.H - h0); ++kh)
          for (idx kw = std::max<idx>(0, -w0); kw < std::min(s.KW, s.W - w0); ++kw) d[(h0 + kh) * s.W + w0 + kw] += v;
      }
  });
}

#define FASTNN_INSTANTIATE(T)                                                                   \
  template void maxpool2d_forward<T>(T*, std::int32_t*, const T*, const Pool2d&);              \
  template void maxpool2d_backward<T>(T*, const T*, const std::int32_t*, const Pool2d&);       \
  template void maxpool2d_relu_backward<T>(T*, idx, idx, const T*, const T*, const std::int32_t*, const Pool2d&); \
  template void avgpool2d_forward<T>(T*, const T*, const Pool2d&);                             \
  template void avgpool2d_backward<T>(T*, const T*, const Pool2d&);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
