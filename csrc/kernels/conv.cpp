// 2-D convolution over NCHW images as GEMMs, one sample (and group) at a time:
//   col (C/G·KH·KW, OH·OW) = im2col(x_n)          the input patch under each output pixel
//   out_n (OC/G, OH·OW)    = weight (OC/G, C/G·KH·KW) · col  (+ bias)
// col of one sample fits in L2 (C=32, 3×3 on 14×14: 225 KB), where a whole batch's would not
// (29 MB at batch 128). A 1×1 convolution with stride 1 and no padding reads x_n as col.
// Backward: dcol = weightᵀ · dout_n scattered back by col2im into dx_n, and
// dweight = Σ_n dout_n · col_nᵀ.
//
// Threads: with at least as many samples as threads, each thread takes whole samples and runs
// its GEMMs alone (SerialScope): small per-sample GEMMs split across threads would spend more
// on fork/join than on arithmetic. With fewer samples (batch-1 inference), the GEMMs use the
// threads. Either way every value is summed in the same order: dweight is summed per fixed
// chunk of kChunk samples, then the chunks in order, so no result depends on the thread count.
#include <algorithm>
#include <cstring>
#include <vector>
#include "core/buffer.h"
#include "gemm/gemm.h"
#include "kernels/kernels.h"

namespace fastnn {
namespace {

constexpr idx kChunk = 8;  // samples per partial weight gradient

// Sizes of one sample's group.
struct Group {
  idx Cg, OCg, K, P;  // in/out channels per group, patch size Cg·KH·KW, output pixels OH·OW
};
Group group_of(const Conv2d& s) {
  const idx Cg = s.C / s.G;
  return {Cg, s.OC / s.G, Cg * s.KH * s.KW, s.OH * s.OW};
}

// x reads as col itself: a 1×1 kernel, stride 1, no padding.
bool direct(const Conv2d& s) {
  return s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && s.PH == 0 && s.PW == 0 && s.OH == s.H &&
         s.OW == s.W;
}

// col (Cg·KH·KW, OH·OW) from the Cg channels of one sample at x (H, W each).
template <class T>
void im2col(T* col, const T* x, const Conv2d& s, idx Cg) {
  for (idx c = 0; c < Cg; ++c)
    for (idx kh = 0; kh < s.KH; ++kh)
      for (idx kw = 0; kw < s.KW; ++kw) {
        T* row = col + ((c * s.KH + kh) * s.KW + kw) * s.OH * s.OW;
        const T* plane = x + c * s.H * s.W;
        const idx dw = kw * s.DW - s.PW;
        // output columns whose input column iw = ow·SW + dw lies in [0, W)
        const idx ow0 = std::min(s.OW, dw >= 0 ? 0 : (-dw + s.SW - 1) / s.SW);
        const idx ow1 = std::max(ow0, std::min(s.OW, s.W - dw > 0 ? (s.W - dw + s.SW - 1) / s.SW : 0));
        for (idx oh = 0; oh < s.OH; ++oh) {
          T* r = row + oh * s.OW;
          const idx ih = oh * s.SH - s.PH + kh * s.DH;
          if (ih < 0 || ih >= s.H) {
            std::fill(r, r + s.OW, T(0));
            continue;
          }
          const T* in = plane + ih * s.W + dw;
          std::fill(r, r + ow0, T(0));
          if (s.SW == 1) std::memcpy(r + ow0, in + ow0, sizeof(T) * (size_t)(ow1 - ow0));
          else for (idx ow = ow0; ow < ow1; ++ow) r[ow] = in[ow * s.SW];
          std::fill(r + ow1, r + s.OW, T(0));
        }
      }
}

// dx (Cg planes of H×W) += col2im(dcol): each patch value back where im2col took it from.
template <class T>
void col2im(T* dx, const T* dcol, const Conv2d& s, idx Cg) {
  for (idx c = 0; c < Cg; ++c)
    for (idx kh = 0; kh < s.KH; ++kh)
      for (idx kw = 0; kw < s.KW; ++kw) {
        const T* row = dcol + ((c * s.KH + kh) * s.KW + kw) * s.OH * s.OW;
        T* plane = dx + c * s.H * s.W;
        const idx dw = kw * s.DW - s.PW;
        const idx ow0 = std::min(s.OW, dw >= 0 ? 0 : (-dw + s.SW - 1) / s.SW);
        const idx ow1 = std::max(ow0, std::min(s.OW, s.W - dw > 0 ? (s.W - dw + s.SW - 1) / s.SW : 0));
        for (idx oh = 0; oh < s.OH; ++oh) {
          const idx ih = oh * s.SH - s.PH + kh * s.DH;
          if (ih < 0 || ih >= s.H) continue;
          const T* r = row + oh * s.OW;
          T* out = plane + ih * s.W + dw;
          for (idx ow = ow0; ow < ow1; ++ow) out[ow * s.SW] += r[ow];
        }
      }
}

// Runs f(n) for every sample: whole samples per thread with serial kernels inside when there
// are enough samples, else one sample after another with threaded kernels.
template <class F>
void over_samples(idx N, F f) {
  if (N >= num_threads() && num_threads() > 1) {
    parallel_chunks(N, 1, [&](idx n0, idx n1) {
      SerialScope serial;
      for (idx n = n0; n < n1; ++n) f(n);
    });
  } else {
    for (idx n = 0; n < N; ++n) f(n);
  }
}

}  // namespace

template <class T>
void conv2d_forward(T* out, const T* x, const T* weight, const T* bias, const Conv2d& s) {
  const Group g = group_of(s);
  const bool dir = direct(s);
  over_samples(s.N, [&](idx n) {
    thread_local Buf<T> colbuf;
    if (!dir && colbuf.size() < (size_t)(g.K * g.P)) colbuf.resize((size_t)(g.K * g.P));
    for (idx gi = 0; gi < s.G; ++gi) {
      const T* xg = x + (n * s.C + gi * g.Cg) * s.H * s.W;
      T* og = out + (n * s.OC + gi * g.OCg) * g.P;
      const T* col = xg;
      if (!dir) {
        im2col(colbuf.data(), xg, s, g.Cg);
        col = colbuf.data();
      }
      if (bias)  // out = W·col + bias: the bias first, the GEMM adds onto it (beta = 1)
        for (idx o = 0; o < g.OCg; ++o) std::fill(og + o * g.P, og + (o + 1) * g.P, bias[gi * g.OCg + o]);
      gemm<T>(false, false, g.OCg, g.P, g.K, T(1), weight + gi * g.OCg * g.K, g.K, col, g.P, bias ? T(1) : T(0), og,
              g.P, nullptr, Act::None);
    }
  });
}

template <class T>
void conv2d_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const Conv2d& s,
                     bool accumulate) {
  const Group g = group_of(s);
  const bool dir = direct(s);
  const idx wsize = s.OC * g.K;  // weight elements
  const idx nchunks = (s.N + kChunk - 1) / kChunk;
  // per chunk of samples, its weight gradient; then the chunks are summed in order
  std::vector<T, CacheLineAlloc<T>> partial((size_t)(nchunks * wsize));
  auto chunk = [&](idx c) {
    thread_local Buf<T> colbuf, dcolbuf;
    if (!dir && colbuf.size() < (size_t)(g.K * g.P)) colbuf.resize((size_t)(g.K * g.P));
    if (dx && !dir && dcolbuf.size() < (size_t)(g.K * g.P)) dcolbuf.resize((size_t)(g.K * g.P));
    T* pw = partial.data() + c * wsize;
    for (idx n = c * kChunk; n < std::min(s.N, (c + 1) * kChunk); ++n) {
      if (dx) std::fill(dx + n * s.C * s.H * s.W, dx + (n + 1) * s.C * s.H * s.W, T(0));
      for (idx gi = 0; gi < s.G; ++gi) {
        const T* xg = x + (n * s.C + gi * g.Cg) * s.H * s.W;
        const T* dog = dout + (n * s.OC + gi * g.OCg) * g.P;
        const T* wg = weight + gi * g.OCg * g.K;
        const T* col = xg;
        if (!dir) {
          im2col(colbuf.data(), xg, s, g.Cg);
          col = colbuf.data();
        }
        // dweight_g (OCg, K) (+)= dout_g (OCg, P) · colᵀ (P, K); the chunk's first sample sets it
        gemm<T>(false, true, g.OCg, g.K, g.P, T(1), dog, g.P, col, g.P, n == c * kChunk ? T(0) : T(1),
                pw + gi * g.OCg * g.K, g.K, nullptr, Act::None);
        if (dx) {
          T* dxg = dx + (n * s.C + gi * g.Cg) * s.H * s.W;
          // dcol (K, P) = weight_gᵀ (K, OCg) · dout_g (OCg, P), straight into dx when it is col
          T* dcol = dir ? dxg : dcolbuf.data();
          gemm<T>(true, false, g.K, g.P, g.OCg, T(1), wg, g.K, dog, g.P, T(0), dcol, g.P, nullptr, Act::None);
          if (!dir) col2im(dxg, dcol, s, g.Cg);
        }
      }
    }
  };
  if (nchunks >= num_threads() && num_threads() > 1) {
    parallel_chunks(nchunks, 1, [&](idx c0, idx c1) {
      SerialScope serial;
      for (idx c = c0; c < c1; ++c) chunk(c);
    });
  } else {
    for (idx c = 0; c < nchunks; ++c) chunk(c);
  }
  // sum the chunks in order, and the bias gradient over samples and pixels in order; each
  // thread owns a range of weights (of channels)
  parallel_chunks(wsize, kElementwiseChunk, [&](idx i0, idx i1) {
    for (idx i = i0; i < i1; ++i) {
      T v = nchunks ? partial[(size_t)i] : T(0);
      for (idx c = 1; c < nchunks; ++c) v += partial[(size_t)(c * wsize + i)];
      dweight[i] = accumulate ? dweight[i] + v : v;
    }
  });
  if (dbias)
    parallel_chunks(s.OC, 1, [&](idx o0, idx o1) {
      for (idx o = o0; o < o1; ++o) {
        T v = 0;
        for (idx n = 0; n < s.N; ++n) {
          const T* d = dout + (n * s.OC + o) * g.P;
          for (idx p = 0; p < g.P; ++p) v += d[p];
        }
        dbias[o] = accumulate ? dbias[o] + v : v;
      }
    });
}

#define FASTNN_INSTANTIATE(T)                                                                        \
  template void conv2d_forward<T>(T*, const T*, const T*, const T*, const Conv2d&);                 \
  template void conv2d_backward<T>(T*, T*, T*, const T*, const T*, const T*, const Conv2d&, bool);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
