// Max and average pooling over NCHW images. Every (sample, channel) plane is independent, so
// threads take whole planes and nothing depends on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include "kernels/kernels.h"

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

// One image plane of a max pool without padding: every window lies in the image and starts at
// its first offset; the other offsets follow in row-major order. The loop runs along an output
// row and updates with selects, not branches (the comparison is a coin toss on real data).
template <class T>
void max_plane(T* __restrict o, std::int32_t* __restrict a, const T* __restrict in, const Pool2d& s) {
  const idx OW = s.OW, SW = s.SW, W = s.W;
  for (idx oh = 0; oh < s.OH; ++oh, o += OW, a += OW) {
    const idx h0 = oh * s.SH;
    if (s.KH == 2 && s.KW == 2 && SW == 2) {  // the common 2×2 window, its four values at once
      const T* r0 = in + h0 * W;
      const T* r1 = r0 + W;
      for (idx ow = 0; ow < OW; ++ow) {
        const idx i = 2 * ow;
        T best = r0[i];
        std::int32_t at = (std::int32_t)(h0 * W + i);
        const T v1 = r0[i + 1], v2 = r1[i], v3 = r1[i + 1];
        bool take = v1 > best || v1 != v1;
        best = take ? v1 : best, at = take ? at + 1 : at;
        take = v2 > best || v2 != v2;
        best = take ? v2 : best, at = take ? (std::int32_t)((h0 + 1) * W + i) : at;
        take = v3 > best || v3 != v3;
        best = take ? v3 : best, at = take ? (std::int32_t)((h0 + 1) * W + i + 1) : at;
        o[ow] = best, a[ow] = at;
      }
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

}  // namespace

// Without padding, a plane at a time (max_plane); with padding, window by window, each started
// at its first in-image value.
template <class T>
void maxpool2d_forward(T* out, std::int32_t* argmax, const T* x, const Pool2d& s) {
  const bool padded = s.PH > 0 || s.PW > 0;
  over_planes(s, [&](idx p) {
    const T* in = x + p * s.H * s.W;
    T* o = out + p * s.OH * s.OW;
    std::int32_t* a = argmax + p * s.OH * s.OW;
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

template <class T>
void maxpool2d_backward(T* dx, const T* dout, const std::int32_t* argmax, const Pool2d& s) {
  over_planes(s, [&](idx p) {
    T* d = dx + p * s.H * s.W;
    std::fill(d, d + s.H * s.W, T(0));
    const T* g = dout + p * s.OH * s.OW;
    const std::int32_t* a = argmax + p * s.OH * s.OW;
    for (idx i = 0; i < s.OH * s.OW; ++i) d[a[i]] += g[i];
  });
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
  template void avgpool2d_forward<T>(T*, const T*, const Pool2d&);                             \
  template void avgpool2d_backward<T>(T*, const T*, const Pool2d&);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
