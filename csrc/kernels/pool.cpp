// Max and average pooling over NCHW images. Every (sample, channel) plane is independent, so
// threads take whole planes and nothing depends on the thread count.
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

template <class T>
void maxpool2d_forward(T* out, std::int32_t* argmax, const T* x, const Pool2d& s) {
  over_planes(s, [&](idx p) {
    const T* in = x + p * s.H * s.W;
    T* o = out + p * s.OH * s.OW;
    std::int32_t* a = argmax + p * s.OH * s.OW;
    for (idx oh = 0; oh < s.OH; ++oh)
      for (idx ow = 0; ow < s.OW; ++ow) {
        const idx h0 = oh * s.SH - s.PH, w0 = ow * s.SW - s.PW;
        T best = -INFINITY;
        idx at = -1;
        for (idx kh = 0; kh < s.KH; ++kh) {
          const idx ih = h0 + kh;
          if (ih < 0 || ih >= s.H) continue;
          for (idx kw = 0; kw < s.KW; ++kw) {
            const idx iw = w0 + kw;
            if (iw < 0 || iw >= s.W) continue;
            const T v = in[ih * s.W + iw];
            if (v > best || std::isnan(v) || at < 0) {  // the first in-image value starts the window
              best = v;
              at = ih * s.W + iw;
            }
          }
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
