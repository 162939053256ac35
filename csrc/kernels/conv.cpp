// 2-D convolution over NCHW images as GEMMs, one sample (and group) at a time:
//   col (C/G·KH·KW, pixels) = im2col(x_n)         the input patch under each output pixel
//   out_n (OC/G, pixels)    = weight (OC/G, C/G·KH·KW) · col  (+ bias, then ReLU if fused)
// col of one sample fits in L2 (C=32, 3×3 on 14×14: 225 KB), where a whole batch's would not
// (29 MB at batch 128). Backward: dcol = weightᵀ · dout_n scattered back by col2im into dx_n,
// and dweight = Σ_n dout_n · col_nᵀ.
//
// Loops over rows of an image (pad_planes, finish, widen) are built for the baseline ISA only:
// a row of 14 or 28 values runs as 4-wide vectors there, where a 16-wide AVX-512 build would
// run all of it in the scalar remainder (measured: widen 42 -> ~8 µs per 64×14×14 sample).
//
// Three ways to build col, by geometry:
//   direct  a 1×1 kernel, stride 1, no padding: x_n is col.
//   wide    stride 1 (the common 3×3 "same" convolution): on the zero-padded image (Hp×Wp),
//           the value under kernel offset (kh, kw) for output pixel (oh, ow) sits at
//           (oh + kh·DH)·Wp + ow + kw·DW: for the "wide" pixel index j = oh·Wp + ow it is one
//           contiguous run per offset. So col rows are single copies of OH·Wp values, and the
//           GEMMs run over OH·Wp columns, of which the last Wp − OW of each row are dropped
//           (their dout is zero in backward). Measured on 32 channels of 14×14 (Wp = 16):
//           im2col of 4,032 rows of 14 values took 18 µs per sample, 288 copies of 224 take
//           ~3 µs, and the GEMMs cost the same on 224 columns as on 196 (an edge tile of 4
//           columns costs a whole one), but for dweight's (+12%).
//   phase   any stride, on the vector paths (float, a kernel larger than 1 × 1): the padded
//           image split by stride phase, so each tap is a stride-1 offset again and the wide
//           layout applies over the phase planes' rows (Geometry, pad_phases, PhaseTaps).
//   general any stride: rows of OW values from the padded image.
//
// On the vector paths (AVX-512 and AVX2: the same bits), float convolutions of the wide
// geometry build no col at all (conv_avx512.cpp, conv_avx2.cpp, conv_simd.h). With output channels in 16s, a direct kernel computes tiles
// of 7 or 14 pixels of one output row × 16–64 channels, vectors over the channels and each
// input value broadcast (the weight transposed to (K, OC)): no wide columns computed, the
// channels transposed into planes in its stores. Else a tile kernel reads B's row (c, kh, kw)
// straight from the padded planes at that tap's offset, and its stores add the bias, apply a
// fused ReLU and drop the wide columns. Both sum each value as one chain over (c, kh, kw) in
// order, so they give the same bits. Measured (2 threads, 128 samples, the two builds
// alternating): 32 → 64 channels on 14×14 forward 3.3 → 2.8–3.0 ms, input gradient ~4.3 → ~3.7;
// 64 → 64 on 7×7 (half of its 32-wide tiles were wide columns) forward 3.3–3.7 → 1.6–2.0 ms.
// The input gradient is the same (either kernel, as the input channels allow) over the output
// gradient laid in zero-led rows with the weight transposed (DataTaps: no col2im); the weight
// gradient is the tile kernel again, transposed (A's rows the padded planes at the taps, B the
// output gradient transposed; tiles of 6 × 64 when the output channels come in 64s), skipping
// the wide columns in its depth, or dots for few taps or few output channels. Measured on one
// thread, 128 samples of 32 → 64 channels, 14×14, against im2col and the GEMM: forward 8.6 →
// 7.9 ms, backward 20.3 → 19.0 ms (weight gradient alone 11.3 → 9.8); 1 → 32 channels of 28×28:
// forward 1.49 → 1.05 ms, backward 2.8 → 2.0 ms (before the direct kernel). Where at most half
// of a chunk's output gradient is nonzero (below a max pool: a quarter at most), a 3 × 3
// convolution over input channels in 16s sums only the nonzero terms of its weight gradient
// (ConvSparseDw, the input channel-last): the dense kernel's bits, 2–3× faster at 15–25%.
//
// With one input channel per group (an image net's first layer, a depthwise convolution), the
// forward pass takes the plane kernel instead (plane_forward): vectors over output pixels.
//
// Before all of these, 3 × 3 stride-1 convolutions with channels in 16s take Winograd
// F(2×2, 3×3) on the vector paths (winograd_avx512.cpp, winograd_avx2.cpp; winograd_forward below): the forward
// pass (a following 2 × 2 max pool made in its output transform), the dense input gradient (the
// transposed convolution) and the dense weight gradient, with their own rounding.
//
// ReLU can be fused (a compiled plan's Conv2d → ReLU): the output gets relu(), and backward
// multiplies dout by relu_grad(y) from that output, which equals relu_grad(x) of the layers'
// separate ReLU for every x (NaN and ±0 included), so the results are the same bits.
//
// Threads: with at least as many samples as threads, each thread takes whole samples and runs
// its GEMMs alone (SerialScope): small per-sample GEMMs split across threads would spend more
// on fork/join than on arithmetic. With fewer samples (batch-1 inference), the GEMMs use the
// threads, and the direct kernel gives each thread whole blocks of output channels with its
// own transposed weight and padded input (direct_by_channels). Either way every value is summed
// in the same order: dweight is summed per fixed chunk of kChunk samples, then the chunks in
// order, so no result depends on the thread count.
#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>
#include "core/buffer.h"
#include "gemm/gemm.h"
#include "gemm/ukernel.h"
#include "kernels/conv_simd.h"
#include "kernels/kernels.h"

namespace fastnn {
namespace {

constexpr idx kChunk = kConvChunk;  // samples per partial weight gradient
// The direct kernel's tiles go to threads in chunks of at least this many vector FMAs
// (batch 1): a fork and join costs a few µs, the 56 tiles of a 1 → 32 channel 28×28
// convolution ~2 µs of arithmetic in all.
// Measured, batch 1, 2 threads: 1 → 32 channels 10.6 → 7.8 µs on one thread.
constexpr idx kOcTileWork = 16384;

enum class Path { Direct, Wide, Phase, General };

// One sample's group, and where its patches come from.
struct Geometry {
  Path path;
  idx Cg, OCg, K;  // in/out channels per group, patch size Cg·KH·KW
  idx Hp, Wp;      // the zero-padded image (Wide, General); Phase: PHn·PWn·Hq rows of Wq per channel
  idx Hq;          // Phase: the rows of each phase plane (Wp its columns)
  idx PHn, PWn;    // Phase: the row and column phases some tap reads
  int prow[8], pcol[8];  // Phase: a row (column) phase's rank among those, or -1 (none reads it)
  idx cols;        // GEMM columns per sample: OH·Wp (Wide, Phase) or OH·OW
  idx slack;       // zeros after the padded planes: a wide row's last columns read past them
};

// Whether the output's rows are "wide" (Wp apart, the columns past OW dropped): Wide and Phase.
bool wide(const Geometry& g) { return g.path == Path::Wide || g.path == Path::Phase; }

// phase: a strided convolution with the vector kernels (float, AVX-512 or AVX2) takes Phase.
Geometry geometry_of(const Conv2d& s, bool phase = false) {
  Geometry g{};
  g.Cg = s.C / s.G, g.OCg = s.OC / s.G, g.K = g.Cg * s.KH * s.KW;
  // rows and columns the kernel reaches below and right of the image, beyond PH/PW above/left
  g.Hp = std::max(s.H + s.PH, (s.OH - 1) * s.SH + (s.KH - 1) * s.DH + 1);
  g.Wp = std::max(s.W + s.PW, (s.OW - 1) * s.SW + (s.KW - 1) * s.DW + 1);
  const bool unpadded = s.PH == 0 && s.PW == 0 && s.OH == s.H && s.OW == s.W;
  if (s.KH == 1 && s.KW == 1 && s.SH == 1 && s.SW == 1 && unpadded) g.path = Path::Direct;
  else if (s.SH == 1 && s.SW == 1) g.path = Path::Wide;
  else g.path = phase && s.KH * s.KW > 1 && s.SH <= 8 && s.SW <= 8 ? Path::Phase : Path::General;
  if (g.path == Path::Phase) {
    // The padded image split by stride phase (space to depth): phase (ph, pw) of channel c
    // holds the padded pixels (i·SH + ph, j·SW + pw) as a plane of Hq × Wq. Tap (kh, kw) of
    // output pixel (oh, ow) then sits in phase ((kh·DH) % SH, (kw·DW) % SW) at
    // (oh + kh·DH / SH, ow + kw·DW / SW): a stride-1 read, so the wide layout and the
    // stride-1 kernels apply, over Wq-wide rows (of which the first OW are kept). Only the
    // phases some tap reads are kept (a 3 × 3 kernel of stride 4: 9 of 16), in (row phase,
    // column phase) order. A 1 × 1 kernel reads one phase, the image subsampled: it stays on
    // General, whose GEMMs over that were faster (16 -> 32 channels of 28 × 28, stride 2, 128
    // samples, 2 threads: backward 0.7–0.8 ms against 1.0–1.2 as Phase).
    g.Hq = (g.Hp + s.SH - 1) / s.SH;
    g.Wp = (g.Wp + s.SW - 1) / s.SW;
    std::fill(g.prow, g.prow + 8, -1), std::fill(g.pcol, g.pcol + 8, -1);
    for (idx kh = 0; kh < s.KH; ++kh) g.prow[kh * s.DH % s.SH] = 0;
    for (idx kw = 0; kw < s.KW; ++kw) g.pcol[kw * s.DW % s.SW] = 0;
    for (idx i = 0; i < 8; ++i) {
      if (g.prow[i] >= 0) g.prow[i] = (int)g.PHn++;
      if (g.pcol[i] >= 0) g.pcol[i] = (int)g.PWn++;
    }
    g.Hp = g.PHn * g.PWn * g.Hq;
  }
  g.cols = wide(g) ? s.OH * g.Wp : s.OH * s.OW;
  g.slack = g.path == Path::Wide ? (s.KW - 1) * s.DW : g.path == Path::Phase ? (s.KW - 1) * s.DW / s.SW : 0;
  return g;
}

idx padded_size(const Geometry& g) { return g.Cg * g.Hp * g.Wp + g.slack; }

// General with no padding (a 1 × 1 shortcut of stride 2): the padded planes are the image
// itself, so im2col reads x and col2im writes dx, with no copy between.
bool unpadded(const Conv2d& s, const Geometry& g) {
  return g.path == Path::General && s.PH == 0 && s.PW == 0 && g.Hp == s.H && g.Wp == s.W;
}

// s's geometry without wide columns: General for what would be Wide or Phase (im2col reads
// the output's own columns only).
Geometry general_of(const Conv2d& s) {
  Geometry g = geometry_of(s, false);
  if (g.path == Path::Wide) g.path = Path::General, g.cols = s.OH * s.OW, g.slack = 0;
  return g;
}

// Phase's pad_planes: the kept phase planes of each channel (Geometry), zeros where the padded
// image has them and past its edges, and `slack` zeros after the last plane.
// Each image row is dealt out to its column phases straight from x: a fixed stride of 2
// vectorises (loads and shuffles). (Through a buffer of the whole padded row, the shuffles'
// loads waited on the buffer's stores: a fifth of a stride-2 convolution's time.) Baseline ISA
// only, as pad_planes: rows of 14 or 15 values.
template <class T>
void pad_phases(T* __restrict xp, const T* __restrict x, const Conv2d& s, const Geometry& g) {
  const idx plane = g.Hq * g.Wp;
  idx j0[8], j1[8];  // per column phase pw: the columns j whose image column j·SW + pw − PW is in [0, W)
  for (idx pw = 0; pw < s.SW; ++pw) {
    j0[pw] = std::min(g.Wp, std::max<idx>(0, (s.PW - pw + s.SW - 1) / s.SW));
    j1[pw] = std::max(j0[pw], std::min(g.Wp, (s.W + s.PW - pw + s.SW - 1) / s.SW));
  }
  for (idx c = 0; c < g.Cg; ++c)
    for (idx hp = 0; hp < g.Hq * s.SH; ++hp) {
      const idx ph = hp % s.SH, i = hp / s.SH, h = hp - s.PH;
      if (g.prow[ph] < 0) continue;
      T* at = xp + c * g.Hp * g.Wp + g.prow[ph] * g.PWn * plane + i * g.Wp;  // + column phase · plane
      if (h < 0 || h >= s.H) {
        for (idx pw = 0; pw < g.PWn; ++pw) std::fill(at + pw * plane, at + pw * plane + g.Wp, T(0));
        continue;
      }
      const T* row = x + (c * s.H + h) * s.W;
      for (idx pw = 0; pw < s.SW; ++pw) {
        if (g.pcol[pw] < 0) continue;
        T* r = at + g.pcol[pw] * plane;
        const T* in = row + pw - s.PW;  // (column j at in[j·SW], read only for j in [j0, j1))
        const idx a = j0[pw], b = j1[pw];
        for (idx j = 0; j < a; ++j) r[j] = T(0);
        if (s.SW == 2)
          for (idx j = a; j < b; ++j) r[j] = in[2 * j];
        else
          for (idx j = a; j < b; ++j) r[j] = in[j * s.SW];
        for (idx j = b; j < g.Wp; ++j) r[j] = T(0);
      }
    }
  std::fill(xp + g.Cg * g.Hp * g.Wp, xp + g.Cg * g.Hp * g.Wp + g.slack, T(0));
}

// The Cg channels of one sample, zero-padded into planes of Hp×Wp with the image at (PH, PW),
// and `slack` zeros after the last plane (Phase: its phase planes). `rows`: the vector build
// of the image rows' copy.
template <class T>
void pad_planes(T* __restrict xp, const T* __restrict x, const Conv2d& s, const Geometry& g, ConvRows rows) {
  if (g.path == Path::Phase) return pad_phases(xp, x, s, g);
  for (idx c = 0; c < g.Cg; ++c) {
    T* plane = xp + c * g.Hp * g.Wp;
    const T* in = x + c * s.H * s.W;
    if constexpr (std::is_same_v<T, float>) {
      if (rows) {
        std::fill(plane, plane + s.PH * g.Wp, T(0));
        rows(plane + s.PH * g.Wp, g.Wp, in, s.W, nullptr, s.H, s.PW, s.W, g.Wp);
        std::fill(plane + (s.PH + s.H) * g.Wp, plane + g.Hp * g.Wp, T(0));
        continue;
      }
    }
    for (idx h = 0; h < g.Hp; ++h) {
      T* r = plane + h * g.Wp;
      const idx ih = h - s.PH;
      if (ih < 0 || ih >= s.H) {
        for (idx w = 0; w < g.Wp; ++w) r[w] = T(0);
        continue;
      }
      for (idx w = 0; w < s.PW; ++w) r[w] = T(0);
      for (idx w = 0; w < s.W; ++w) r[s.PW + w] = in[ih * s.W + w];
      for (idx w = s.PW + s.W; w < g.Wp; ++w) r[w] = T(0);
    }
  }
  for (idx i = 0; i < g.slack; ++i) xp[g.Cg * g.Hp * g.Wp + i] = T(0);
}

// The padded-image offset of kernel tap (c, kh, kw) for output pixel (0, 0).
idx tap(const Conv2d& s, const Geometry& g, idx c, idx kh, idx kw) {
  if (g.path == Path::Phase) {
    const idx h = kh * s.DH, w = kw * s.DW, phase = g.prow[h % s.SH] * g.PWn + g.pcol[w % s.SW];
    return c * g.Hp * g.Wp + phase * g.Hq * g.Wp + h / s.SH * g.Wp + w / s.SW;
  }
  return c * g.Hp * g.Wp + kh * s.DH * g.Wp + kw * s.DW;
}

// col (K, cols) from the padded planes: row (c, kh, kw) holds, for every output pixel, the
// input value under that kernel offset.
template <class T>
FASTNN_ELEMENTWISE_CLONES
void im2col(T* __restrict col, const T* __restrict xp, const Conv2d& s, const Geometry& g) {
  for (idx c = 0; c < g.Cg; ++c)
    for (idx kh = 0; kh < s.KH; ++kh)
      for (idx kw = 0; kw < s.KW; ++kw) {
        T* row = col + ((c * s.KH + kh) * s.KW + kw) * g.cols;
        const T* in = xp + tap(s, g, c, kh, kw);
        if (g.path == Path::Wide) {
          for (idx j = 0; j < g.cols; ++j) row[j] = in[j];
          continue;
        }
        for (idx oh = 0; oh < s.OH; ++oh)
          for (idx ow = 0; ow < s.OW; ++ow) row[oh * s.OW + ow] = in[oh * s.SH * g.Wp + ow * s.SW];
      }
}

// The padded planes (zeroed by the caller) += col2im(dcol): each patch value added back where
// im2col took it from, taps in im2col's order.
template <class T>
FASTNN_ELEMENTWISE_CLONES
void col2im(T* __restrict dxp, const T* __restrict dcol, const Conv2d& s, const Geometry& g) {
  for (idx c = 0; c < g.Cg; ++c)
    for (idx kh = 0; kh < s.KH; ++kh)
      for (idx kw = 0; kw < s.KW; ++kw) {
        const T* row = dcol + ((c * s.KH + kh) * s.KW + kw) * g.cols;
        T* out = dxp + tap(s, g, c, kh, kw);
        if (g.path == Path::Wide) {
          for (idx j = 0; j < g.cols; ++j) out[j] += row[j];
          continue;
        }
        for (idx oh = 0; oh < s.OH; ++oh)
          for (idx ow = 0; ow < s.OW; ++ow) out[oh * s.SH * g.Wp + ow * s.SW] += row[oh * s.OW + ow];
      }
}

// dx (Cg planes of H×W) = the image part of the padded planes.
template <class T>
void unpad_planes(T* dx, const T* dxp, const Conv2d& s, const Geometry& g) {
  for (idx c = 0; c < g.Cg; ++c)
    for (idx h = 0; h < s.H; ++h)
      std::memcpy(dx + (c * s.H + h) * s.W, dxp + (c * g.Hp + h + s.PH) * g.Wp + s.PW, sizeof(T) * (size_t)s.W);
}

// out (OCg, OH·OW) = act(res + bias) from the GEMM's result res (OCg, cols): the wide columns
// dropped, the bias added (the GEMM wrote beta = 0), ReLU applied when fused. res may be out
// itself (not wide: the same layout), so no __restrict here.
template <class T>
void finish(T* out, const T* res, const T* bias, Act act, const Conv2d& s, const Geometry& g) {
  const idx P = s.OH * s.OW, stride = wide(g) ? g.Wp : s.OW;
  for (idx o = 0; o < g.OCg; ++o)
    for (idx oh = 0; oh < s.OH; ++oh) {
      const T* r = res + o * g.cols + oh * stride;
      T* d = out + o * P + oh * s.OW;
      const T b = bias ? bias[o] : T(0);
      if (act == Act::ReLU)
        for (idx ow = 0; ow < s.OW; ++ow) d[ow] = relu(bias ? r[ow] + b : r[ow]);
      else
        for (idx ow = 0; ow < s.OW; ++ow) d[ow] = bias ? r[ow] + b : r[ow];
    }
}

// g (OCg, cols; rows ldg apart) = dout · relu_grad(y) when ReLU is fused, else dout; zero in
// the wide columns. `rows`: the vector build of it.
template <class T>
void widen(T* __restrict gw, idx ldg, const T* __restrict dout, const T* __restrict y, Act act, const Conv2d& s,
           const Geometry& g, ConvRows rows) {
  const idx P = s.OH * s.OW, stride = wide(g) ? g.Wp : s.OW;
  if constexpr (std::is_same_v<T, float>) {
    if (rows) {
      for (idx o = 0; o < g.OCg; ++o)
        rows(gw + o * ldg, stride, dout + o * P, s.OW, act == Act::ReLU ? y + o * P : nullptr, s.OH, 0, s.OW, stride);
      return;
    }
  }
  for (idx o = 0; o < g.OCg; ++o)
    for (idx oh = 0; oh < s.OH; ++oh) {
      T* d = gw + o * ldg + oh * stride;
      const T* src = dout + o * P + oh * s.OW;
      if (act == Act::ReLU) {
        const T* yr = y + o * P + oh * s.OW;
        for (idx ow = 0; ow < s.OW; ++ow) d[ow] = src[ow] * relu_grad(yr[ow]);
      } else {
        for (idx ow = 0; ow < s.OW; ++ow) d[ow] = src[ow];
      }
      for (idx ow = s.OW; ow < stride; ++ow) d[ow] = T(0);
    }
}

// Σ v[0..n) in 32 interleaved running sums (value i in sum i mod 32, the tail's in the first
// sums), added pairwise at the end (k with k + 16, then k + 8, ...): a fixed order (no
// dependence on threads) that vectorises, where one running sum waits 4 cycles per value.
// Built for AVX-512 and AVX2 too (the same sums, two or four vectors at a time).
template <class T>
FASTNN_ELEMENTWISE_CLONES
T lane_sum(const T* __restrict v, idx n) {
  constexpr int K = 32;
  T acc[K] = {};
  idx i = 0;
  for (; i + K <= n; i += K)
    for (int k = 0; k < K; ++k) acc[k] += v[i + k];
  for (idx j = i; j < n; ++j) acc[j - i] += v[j];
  for (int w = K / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  return acc[0];
}

// Runs f(i) for i in [0, n): whole items per thread with serial kernels inside when there are
// enough of them, else one after another with threaded kernels.
template <class F>
void over_items(idx n, F f) {
  if (n >= num_threads() && num_threads() > 1) {
    parallel_items(n, f);
  } else {
    for (idx i = 0; i < n; ++i) f(i);
  }
}

// Above this fraction of nonzero values, the dense weight gradient is faster: the sparse
// kernel loads one value per FMA (32 → 64 channels on 14×14, 128 samples, 2 threads: dense
// 3.6 ms; sparse 1.0 / 1.7 / 2.0 / 3.3 ms at 0 / 15 / 25 / 50% nonzero).
constexpr double kSparseMaxDensity = 0.5;
double g_sparse_max_density = kSparseMaxDensity;

// Nonzero values in v[0, n) (a NaN counts); a count, the same at any width. With y (a fused
// ReLU's output), of v·relu_grad(y): the gradient the layers' separate ReLU hands the
// convolution, so the plan and the layers pick the same kernels (and bits) by its density.
template <class T>
FASTNN_ELEMENTWISE_CLONES
idx count_nonzero(const T* v, idx n, const T* y = nullptr) {
  idx nonzero = 0;
  if (y)
    for (idx i = 0; i < n; ++i) nonzero += v[i] * relu_grad(y[i]) != T(0);
  else
    for (idx i = 0; i < n; ++i) nonzero += v[i] != T(0);
  return nonzero;
}

template <class T>
T* scratch(Buf<T>& b, idx n) {
  if (b.size() < (size_t)n) b.resize((size_t)n);
  return b.data();
}

// Whether strided convolutions take Phase (testing knob set_conv_phase; default on): float on
// the paths with the vector kernels.
bool g_phase = true;
template <class T>
bool phase_ok() {
  if constexpr (std::is_same_v<T, float>) return g_phase && conv_taps_f32() != nullptr;
  return false;
}

// The vector kernel with the implicit im2col (conv_simd.h), for float on the paths that have
// one and the wide geometry (stride 1, or strided as phases), else null: im2col and the GEMM run.
template <class T>
const ConvTaps* taps_kernel(const Geometry& g) {
  if constexpr (std::is_same_v<T, float>)
    if (wide(g)) return conv_taps_f32();
  return nullptr;
}

// The convolution's GEMM by the vector kernel: for i < M and the wide columns j < N,
//   out[i·ldo + (j / Wp)·width + (j % Wp − lo)] = act(Σ_p A[i·lda + p] · src[taps[p] + j] + bias[i])
// for the columns with lo <= j % Wp < lo + width (the others are dropped), tile by tile. Tiles
// go to threads in fixed chunks and each value is summed within one tile, so no bit depends
// on the thread count. (Inside a per-sample worker there is one thread.)
// Per tile of kConvTileCols wide columns: the bits of the columns kept and where the first
// kept one goes. The same for every sample and row block, so made once per call.
struct TapsOut {
  std::vector<std::uint32_t> valid;
  std::vector<idx> first;
  TapsOut(idx N, idx Wp, idx lo, idx width) {
    for (idx j = 0; j < N; j += kConvTileCols) {
      const idx col0 = j % Wp;
      std::uint32_t bits = 0;
      for (idx b = 0, col = col0; b < kConvTileCols; ++b, col = col + 1 == Wp ? 0 : col + 1)
        if (col >= lo && col < lo + width) bits |= 1u << b;
      valid.push_back(bits);
      first.push_back((j / Wp) * width + std::clamp<idx>(col0 - lo, 0, width));
    }
  }
};
// The first row of row block b of M rows: blocks of 12, but a remainder of 1–4 rows is not
// left to a 4-row tile (8 FMAs per 6 loads, load-bound): the last 16 rows, or 13–15, go as 8
// and the rest (as many blocks either way). (Which tile computes a value changes no bit: each
// is one chain over p.)
idx row_block_start(idx M, idx b) {
  const idx full = M / kConvTileRows, rest = M % kConvTileRows;
  if (rest == 0 || rest > 4) return b * kConvTileRows;
  const idx twelves = M >= 16 ? full - 1 : 0;  // blocks of 12 before the two of 8 (or 8 and rest)
  return b <= twelves ? b * kConvTileRows : twelves * kConvTileRows + 8;
}
idx row_blocks(idx M) { return (M + kConvTileRows - 1) / kConvTileRows; }

template <class T>
void taps_gemm(ConvTapsTile fn, idx M, idx N, idx K, const T* A, const idx* arow, const idx* taps, const T* src, T* out,
               idx ldo, const TapsOut& keep, bool add, const T* bias, Act act, idx seg = -1, idx stride = -1) {
  if (seg < 0) seg = stride = K;  // every p
  if constexpr (std::is_same_v<T, float>) {
    const idx mt = row_blocks(M), nt = (N + kConvTileCols - 1) / kConvTileCols;
    const idx per_chunk = std::max<idx>(1, 65536 / (kConvTileRows * kConvTileCols * std::max<idx>(K, 1)));
    parallel_chunks(mt * nt, per_chunk, [&](idx t0, idx t1) {
      for (idx t = t0; t < t1; ++t) {
        const idx b = t / nt, i = row_block_start(M, b), rows = (b + 1 < mt ? row_block_start(M, b + 1) : M) - i;
        const idx jt = t % nt, j = jt * kConvTileCols;
        const T* a = arow ? A : A + b * kConvTileRows * K;  // (packed: one panel per row block)
        fn(K, seg, stride, a, arow ? arow + i : nullptr, taps, src + j, out + i * ldo + keep.first[(size_t)jt], ldo, (int)rows,
           (int)std::min<idx>(kConvTileCols, N - j), keep.valid[(size_t)jt], add, bias ? bias + i : nullptr,
           act == Act::ReLU);
      }
    });
  }
}

// A (M × K, rows lda apart) as taps_gemm's panels: row block b's rows (row_block_start) side by
// side, 12 values per p (zeros past the block's rows), panel b at b·12·K.
template <class T>
std::vector<T> pack_panels(const T* A, idx lda, idx M, idx K) {
  const idx mt = row_blocks(M);
  std::vector<T> out((size_t)(mt * kConvTileRows * K), T(0));
  for (idx b = 0; b < mt; ++b) {
    const idx i0 = row_block_start(M, b), i1 = b + 1 < mt ? row_block_start(M, b + 1) : M;
    T* panel = out.data() + b * kConvTileRows * K;
    for (idx i = i0; i < i1; ++i)
      for (idx p = 0; p < K; ++p) panel[p * kConvTileRows + (i - i0)] = A[i * lda + p];
  }
  return out;
}

// 0, step, 2·step, ...: the row offsets of a matrix, or the taps of a dense one
std::vector<idx> strided(idx n, idx step) {
  std::vector<idx> v((size_t)std::max<idx>(n, 0));
  for (idx i = 0; i < n; ++i) v[(size_t)i] = i * step;
  return v;
}

// C (M × K, rows ldc apart) (+)= A (M × n, rows lda apart) · Bᵀ with B(q, j) = src[taps[q] + j]:
// the weight gradient g · colᵀ without col, block by block (blocks to threads in fixed chunks,
// each value summed within one block).
template <class T>
void taps_dot(ConvTapsDot fn, idx M, idx K, idx n, const T* A, idx lda, const idx* taps, const T* src, T* C, idx ldc,
              bool add) {
  if constexpr (std::is_same_v<T, float>) {
    const idx mt = (M + kConvDot - 1) / kConvDot, kt = (K + kConvDot - 1) / kConvDot;
    const idx per_chunk = std::max<idx>(1, 65536 / (kConvDot * kConvDot * std::max<idx>(n, 1)));
    parallel_chunks(mt * kt, per_chunk, [&](idx t0, idx t1) {
      for (idx t = t0; t < t1; ++t) {
        const idx i = (t / kt) * kConvDot, q = (t % kt) * kConvDot;
        fn(n, A + i * lda, lda, taps + q, src, C + i * ldc + q, ldc, (int)std::min<idx>(kConvDot, M - i),
           (int)std::min<idx>(kConvDot, K - q), add);
      }
    });
  }
}

// taps for the forward convolution: B(p, j) for p = (c, kh, kw) is the padded planes at
// tap(c, kh, kw) + j, which is row p of the wide im2col.
std::vector<idx> forward_taps(const Conv2d& s, const Geometry& g) {
  std::vector<idx> taps((size_t)g.K);
  for (idx c = 0; c < g.Cg; ++c)
    for (idx kh = 0; kh < s.KH; ++kh)
      for (idx kw = 0; kw < s.KW; ++kw) taps[(size_t)((c * s.KH + kh) * s.KW + kw)] = tap(s, g, c, kh, kw);
  return taps;
}

// The input gradient as a convolution too (wide geometry): with gw the wide output gradient
// (OCg × cols, zero in the wide columns), the padded input's gradient is
//   dxp[c][q] = Σ_(o, kh, kw) w[o][c][kh][kw] · gw[o][q − off(kh, kw)],  off = kh·DH·Wp + kw·DW,
// terms outside gw being zero. Each gw row is copied after `lead` = the largest off zeros
// into a row of `row` values (zeros after it), so B(p, j) for p = (o, kh, kw) is
// gpad[o·row + lead − off + PH·Wp + j] for the image's rows (j < H·Wp).
struct DataTaps {
  idx lead, row;
  std::vector<idx> taps;
  std::unique_ptr<TapsOut> keep;  // the image's columns of each row of H·Wp
  DataTaps(const Conv2d& s, const Geometry& g) : keep(std::make_unique<TapsOut>(s.H * g.Wp, g.Wp, s.PW, s.W)) {
    lead = (s.KH - 1) * s.DH * g.Wp + (s.KW - 1) * s.DW;
    row = lead + std::max(g.cols, (s.PH + s.H) * g.Wp);
    taps.resize((size_t)(g.OCg * s.KH * s.KW));
    for (idx o = 0; o < g.OCg; ++o)
      for (idx kh = 0; kh < s.KH; ++kh)
        for (idx kw = 0; kw < s.KW; ++kw)
          taps[(size_t)((o * s.KH + kh) * s.KW + kw)] = o * row + lead - kh * s.DH * g.Wp - kw * s.DW + s.PH * g.Wp;
  }
};

// The input gradient of a Phase convolution, phase plane by phase plane: with gw the wide
// output gradient (rows Wq apart, zero in the wide columns) after `lead` zeros in rows of
// `row` as for DataTaps, phase plane φ of the padded input's gradient is
//   dq_φ[c][i][j] = Σ_(o, kh, kw in φ) w[o][c][kh][kw] · gw[o][(i − a)·Wq + j − b],
// a = kh·DH / SH, b = kw·DW / SW: a stride-1 transposed convolution over the taps of that
// phase, summed in (o, kh, kw) order. Per kept phase φ (Geometry): taps[φ], the rows
// [i0, i1) and columns [j0, j1) of its plane that hold image pixels (the others are padding,
// never needed), and per group a[gi][φ]: the weight's rows (o, kh, kw) of φ, Cg values each
// (the kernel with vectors over input channels), or those transposed and packed (the tile
// kernel). rmap[h] + cmap[w]: where image pixel (h, w) sits in a channel's phase planes (-1:
// a phase no tap reads; its gradient is zero).
struct PhaseTaps {
  idx lead = 0, row = 0;
  std::vector<std::vector<idx>> taps;
  std::vector<idx> i0, i1, j0, j1, rmap, cmap;
  std::vector<std::vector<std::vector<float>>> a;
  PhaseTaps(const Conv2d& s, const Geometry& g, const float* weight, bool by_channels) {
    const idx phases = g.PHn * g.PWn, KK = s.KH * s.KW, plane = g.Hq * g.Wp;
    lead = (s.KH - 1) * s.DH / s.SH * g.Wp + (s.KW - 1) * s.DW / s.SW;
    row = lead + std::max(g.cols, g.Hq * g.Wp);
    taps.resize((size_t)phases), i0.resize((size_t)phases), i1.resize((size_t)phases);
    j0.resize((size_t)phases), j1.resize((size_t)phases);
    for (idx ph = 0; ph < s.SH; ++ph)
      for (idx pw = 0; pw < s.SW; ++pw) {
        if (g.prow[ph] < 0 || g.pcol[pw] < 0) continue;
        const size_t f = (size_t)(g.prow[ph] * g.PWn + g.pcol[pw]);
        i0[f] = std::min(g.Hq, (s.PH - ph + s.SH - 1) / s.SH), i1[f] = std::min(g.Hq, (s.H + s.PH - ph + s.SH - 1) / s.SH);
        j0[f] = std::min(g.Wp, (s.PW - pw + s.SW - 1) / s.SW), j1[f] = std::min(g.Wp, (s.W + s.PW - pw + s.SW - 1) / s.SW);
      }
    for (idx h = 0; h < s.H; ++h) {
      const idx hp = h + s.PH, r = g.prow[hp % s.SH];
      rmap.push_back(r < 0 ? -1 : r * g.PWn * plane + hp / s.SH * g.Wp);
    }
    for (idx w = 0; w < s.W; ++w) {
      const idx wp = w + s.PW, r = g.pcol[wp % s.SW];
      cmap.push_back(r < 0 ? -1 : r * plane + wp / s.SW);
    }
    std::vector<std::vector<idx>> ks((size_t)phases);  // each phase's (o, kh, kw) as o·KK + kh·KW + kw
    for (idx o = 0; o < g.OCg; ++o)
      for (idx kh = 0; kh < s.KH; ++kh)
        for (idx kw = 0; kw < s.KW; ++kw) {
          const idx h = kh * s.DH, w = kw * s.DW, ph = g.prow[h % s.SH] * g.PWn + g.pcol[w % s.SW];
          taps[(size_t)ph].push_back(o * row + lead - h / s.SH * g.Wp - w / s.SW);
          ks[(size_t)ph].push_back(o * KK + kh * s.KW + kw);
        }
    for (idx gi = 0; gi < s.G; ++gi) {
      a.emplace_back();
      for (idx ph = 0; ph < phases; ++ph) {
        const std::vector<idx>& k = ks[(size_t)ph];
        const idx n = (idx)k.size();
        std::vector<float> m((size_t)(n * g.Cg));  // (r, c) by channels, else (c, r)
        for (idx r = 0; r < n; ++r)
          for (idx c = 0; c < g.Cg; ++c) {
            const idx o = k[(size_t)r] / KK, t = k[(size_t)r] % KK;
            m[(size_t)(by_channels ? r * g.Cg + c : c * n + r)] = weight[((gi * g.OCg + o) * g.Cg + c) * KK + t];
          }
        a.back().push_back(by_channels ? std::move(m) : pack_panels(m.data(), n, g.Cg, n));  // (n > 0: a kept phase has taps)
      }
    }
  }
};

// The direct kernel when there are fewer samples than threads (batch-1 latency): each thread
// takes whole blocks of output channels of one sample and group, transposes their weight and
// pads the input into buffers of its own, then runs their tiles. Nothing one core writes is
// read by another but the input and the output: with one transposed weight and padded input
// shared by both threads, the copies and the second thread's reads of them (cache lines moving
// between the cores) took as long as the arithmetic they spared (32 → 64 channels on 14×14:
// 52 µs on one thread, 56 on two). The same tiles' FMA chains as the shared path: the same bits.
// With `pool`, each block's planes are max-pooled into pout and argmax as soon as they are made
// (conv2d_maxpool_forward).
void direct_by_channels(float* out, const float* x, const float* weight, const float* bias, const Conv2d& s,
                        const Geometry& g, const ConvTaps& fast, int pixels, int nv, Act act,
                        const Pool2d* pool = nullptr, float* pout = nullptr, std::int32_t* argmax = nullptr) {
  while (nv > 1 && g.OCg / (16 * nv) < num_threads()) nv /= 2;  // a block for every thread
  const idx oc = 16 * nv, blocks = g.OCg / oc, P = s.OH * s.OW;
  const std::vector<idx> taps = forward_taps(s, g);
  parallel_chunks(s.N * s.G * blocks, 1, [&](idx b0, idx b1) {
    thread_local Buf<float> wbuf, xbuf;
    float* w = scratch(wbuf, g.K * oc);
    float* xp = scratch(xbuf, padded_size(g) + 16);  // (a tile reads all its pixels: 16 zeros after)
    idx padded = -1;  // the sample and group in xp
    for (idx b = b0; b < b1; ++b) {
      const idx ng = b / blocks, n = ng / s.G, gi = ng % s.G, o = b % blocks * oc;
      if (padded != ng) {
        pad_planes(xp, x + (n * s.C + gi * g.Cg) * s.H * s.W, s, g, fast.rows);
        std::fill(xp + padded_size(g), xp + padded_size(g) + 16, 0.0f);
        padded = ng;
      }
      fast.transpose(weight + (gi * g.OCg + o) * g.K, oc, g.K, g.K, w, oc);
      float* og = out + (n * s.OC + gi * g.OCg + o) * P;
      const float* bg = bias ? bias + gi * g.OCg + o : nullptr;
      for (idx oh = 0; oh < s.OH; ++oh)
        for (idx ow = 0; ow < s.OW; ow += pixels)
          fast.oc_tile(g.K, w, oc, pixels, nv, taps.data(), xp + oh * g.Wp + ow, og + oh * s.OW + ow, P,
                       (int)std::min<idx>(pixels, s.OW - ow), bg, act == Act::ReLU);
      if (pool) {
        SerialScope serial;
        Pool2d pc = *pool;
        pc.N = 1, pc.C = oc;
        const idx at = (n * s.OC + gi * g.OCg + o) * pool->OH * pool->OW;
        maxpool2d_forward(pout + at, argmax + at, og, pc);
      }
    }
  });
}

// One input channel per group (an image net's first layer, a depthwise convolution), stride 1:
// the plane kernel (ConvPlane), vectors over each output row's pixels and the weights
// broadcast, its stores along the output planes' rows. The same FMA chains as the direct and
// tile kernels (the same bits); those store 8–16 planes' pixels at once, which cost most of
// their time at 1 -> 32 channels of 28 × 28 (measured in docs/performance.md). Items: a
// sample's group, or at batch 1 a block of its output channels (each thread pads the plane
// it reads: one channel, ~1 µs). With `pool`, an item's planes go to a buffer of its own and
// are max-pooled into pout and argmax from there as soon as they are made (conv2d_maxpool_forward;
// y, the caller's scratch of a chunk of 8 samples, 800 KB for 32 channels of 28 × 28, is not
// written: it left L2, and the CNN's first convolution took 1.61 → 1.38 ms a step so).
bool g_plane = true;

bool plane_ok(const Conv2d& s, const Geometry& g, const ConvTaps* fast) {
  return g_plane && fast && fast->plane && g.Cg == 1 && wide(g) && s.OH > 0 && s.OW > 0;
}

void plane_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2d& s,
                   const Geometry& g, const ConvTaps& fast, Act act, const Pool2d* pool = nullptr,
                   float* pout = nullptr, std::int32_t* argmax = nullptr) {
  const std::vector<idx> taps = forward_taps(s, g);
  const idx P = s.OH * s.OW, items = s.N * s.G;
  // fewer samples and groups than threads: each split into a block of output channels per
  // thread (as direct_by_channels splits them)
  const idx nt = num_threads();
  if (items == 0) return;
  const idx cb = items >= nt ? 1 : std::min(g.OCg, (nt + items - 1) / items);
  const idx per = (g.OCg + cb - 1) / cb;
  // item t: output channels [c0, c1) of sample n's group gi; `padded` the group whose plane xp holds
  auto one = [&](idx t, float* xp, idx& padded) {
    const idx ng = t / cb, n = ng / s.G, gi = ng % s.G, c0 = t % cb * per, c1 = std::min(g.OCg, c0 + per);
    if (c0 >= c1) return;
    if (padded != ng) {
      pad_planes(xp, x + (n * s.C + gi) * s.H * s.W, s, g, fast.rows);
      std::fill(xp + padded_size(g), xp + padded_size(g) + 16, 0.0f);
      padded = ng;
    }
    const idx o0 = n * s.OC + gi * g.OCg + c0;  // the item's first output plane
    thread_local Buf<float> ybuf;  // (pooled: the item's planes only, which stay in cache)
    float* y = pool ? scratch(ybuf, (c1 - c0) * P) : out + o0 * P;
    fast.plane(g.K, weight + (gi * g.OCg + c0) * g.K, c1 - c0, taps.data(), xp, g.Wp, s.OH, s.OW, y, P,
               bias ? bias + gi * g.OCg + c0 : nullptr, act == Act::ReLU);
    if (pool) {
      SerialScope serial;
      Pool2d pc = *pool;
      pc.N = 1, pc.C = c1 - c0;
      const idx at = o0 * pool->OH * pool->OW;
      maxpool2d_forward(pout + at, argmax + at, y, pc);
    }
  };
  thread_local Buf<float> xbuf;  // (rows are read in whole vectors: 16 zeros after the plane)
  if (cb == 1)
    return parallel_items(items, [&](idx t) {
      idx padded = -1;
      one(t, scratch(xbuf, padded_size(g) + 16), padded);
    });
  parallel_chunks(items * cb, 1, [&](idx t0, idx t1) {
    idx padded = -1;
    float* xp = scratch(xbuf, padded_size(g) + 16);
    for (idx t = t0; t < t1; ++t) one(t, xp, padded);
  });
}

// The direct kernel's tile shape for s, and whether conv2d_forward runs direct_by_channels
// (then returns the vector kernels; float only).
template <class T>
const ConvTaps* by_channels(const Conv2d& s, const Geometry& g, int& pixels, int& nv) {
  const ConvTaps* fast = taps_kernel<T>(g);
  pixels = s.OW > 7 ? 14 : 7;  // a tile's pixels, of one output row
  nv = !fast || g.OCg % 16 ? 0 : pixels == 7 && g.OCg % 64 == 0 ? 4 : g.OCg % 32 == 0 ? 2 : 1;
  return nv && s.N < num_threads() && g.OCg / 16 >= num_threads() ? fast : nullptr;
}

// Winograd F(2×2, 3×3) (winograd_avx512.cpp, winograd_avx2.cpp) for float 3×3, stride-1,
// undilated convolutions with input and output channels in 16s on the vector paths: 16 multiplies per 2×2 output
// pixels and channel pair where the direct kernel takes 36. Per sample: the input zero-padded
// to a grid of whole tiles and transposed channel-last, the tiles' transforms, the 16 GEMMs and
// the output transform (+ bias, ReLU) channel-last, transposed into planes. Its own rounding
// (not the direct kernel's bits): every value is one FMA chain per ξ over the input channels
// in order and fixed sums around it, so the same bits for any thread count, batch size or
// blocking, and on every AVX-512 or AVX2 CPU. Measured (32 → 64 channels on 14×14, 128 samples, 2
// threads, Zen 4): forward 4.8–5.0 → 2.6–2.9 ms; more in docs/performance.md.
bool g_winograd = true;
constexpr idx kWinoBlock = 14;  // tiles per block: V and M stay in L1/L2 (14 × 16 × 64 floats)
constexpr idx kWinoDwBlock = 64;  // (the weight gradient: its sums loaded and stored once per block)
constexpr double kWinoDxMinDensity = 0.1;  // (conv2d_backward)

bool winograd_ok(const Conv2d& s, const Geometry& g, const ConvTaps* fast, Act act) {
  return g_winograd && fast && fast->wino && (act == Act::None || act == Act::ReLU) && s.KH == 3 && s.KW == 3 &&
         s.SH == 1 && s.SW == 1 && s.DH == 1 && s.DW == 1 && g.Cg % 16 == 0 && g.OCg % 16 == 0 && s.OH > 0 &&
         s.OW > 0;
}

// The grid a Winograd convolution's tiles read: 2·TH + 2 rows of 2·TW + 2 (TH × TW tiles of
// 2 × 2 output pixels), the image at (PH, PW), zeros around it.
Geometry wino_grid(const Conv2d& s, const Geometry& g) {
  Geometry q = g;
  q.Hp = 2 * ((s.OH + 1) / 2) + 2, q.Wp = 2 * ((s.OW + 1) / 2) + 2, q.slack = 0;
  return q;
}

// U of each group (16·Cg·OCg floats apart) from its weight transposed, wt(gi) giving
// (c·9 + tap, o) in rows of OCg.
template <class F>
float* wino_weights(const Conv2d& s, const Geometry& g, const ConvTaps& fast, F wt) {
  thread_local Buf<float> ubuf;  // (the calling thread's; the others only read it)
  const idx usize = 16 * g.Cg * g.OCg;
  float* U = scratch(ubuf, s.G * usize);
  for (idx gi = 0; gi < s.G; ++gi) fast.wino_weights(wt(gi), g.Cg, g.OCg, U + gi * usize);
  return U;
}

// h (Hq·Wq cells × C, channel-last) = C planes (ldc apart, rows of W values ldr apart) on a zero
// grid of Hq × Wq at (top, left): each image row transposed straight into its cells (16 × 16
// blocks in registers), only the cells around the image zeroed.
void onto_grid(float* h, const float* in, idx C, idx ldc, idx ldr, idx H, idx W, idx top, idx left, idx Hq, idx Wq,
               const ConvTaps& fast) {
  std::fill(h, h + top * Wq * C, 0.0f);
  for (idx r = 0; r < H; ++r) {
    float* row = h + (top + r) * Wq * C;
    std::fill(row, row + left * C, 0.0f);
    fast.transpose(in + r * ldr, C, W, ldc, row + left * C, C);
    std::fill(row + (left + W) * C, row + Wq * C, 0.0f);
  }
  std::fill(h + (top + H) * Wq * C, h + Hq * Wq * C, 0.0f);
}

// One sample and group's Winograd convolution, for output channels o0 .. o0 + noc (U from their
// column on, rows ldu apart): the input
// (Cg planes ldc apart, rows ldr apart) onto the grid q channel-last (unless `same_input`:
// still there from the last call), the tiles, the result transposed into out's planes (unless
// out is null). With a 2 × 2 max pool (`pool`), its output and argmax too, into the planes of
// pout and pa (OHp × OWp).
struct WinoScratch {
  Buf<float> xh, v, m, y, gh, gt, dwm, py;  // (dwm: the weight gradient's sums over a chunk)
  Buf<std::int32_t> pa;
};
struct WinoPool {
  float* out;
  std::int32_t* argmax;
  idx OH, OW;
};
void wino_sample(float* out, const float* in, idx ldc, idx ldr, bool same_input, const Conv2d& s, const Geometry& g,
                 const Geometry& q, const float* U, idx ldu, idx o0, idx noc, const float* bias, Act act,
                 const ConvTaps& fast, WinoScratch& w, const WinoPool* pool = nullptr) {
  const idx P = s.OH * s.OW, Pp = pool ? pool->OH * pool->OW : 0;
  float* h = scratch(w.xh, q.Hp * q.Wp * g.Cg);
  if (!same_input) onto_grid(h, in, g.Cg, ldc, ldr, s.H, s.W, s.PH, s.PW, q.Hp, q.Wp, fast);
  float* y = out ? scratch(w.y, P * noc) : nullptr;
  float* py = pool ? scratch(w.py, Pp * noc) : nullptr;
  std::int32_t* pa = pool ? scratch(w.pa, Pp * noc) : nullptr;
  fast.wino(h, q.Wp, g.Cg, s.OH, s.OW, U, ldu, noc, bias ? bias + o0 : nullptr, act == Act::ReLU, y, py, pa,
            Pp ? pool->OH : 0, Pp ? pool->OW : 0, scratch(w.v, 16 * kWinoBlock * g.Cg),
            scratch(w.m, 16 * kWinoBlock * noc), kWinoBlock);
  if (out) fast.transpose(y, P, noc, noc, out + o0 * P, P);
  if (pool) {  // (the argmax's bits moved as floats' by the same transpose)
    fast.transpose(py, Pp, noc, noc, pool->out + o0 * Pp, Pp);
    fast.transpose(reinterpret_cast<const float*>(pa), Pp, noc, noc, reinterpret_cast<float*>(pool->argmax + o0 * Pp), Pp);
  }
}

// The U of a block of noc output channels (their weight: noc rows of Cg·9, `w`) for a thread
// that takes only that block (fewer samples than threads: predict of one image). Kept per
// thread with a copy of the weight it came from, for the last few blocks seen: while the
// weight holds the same bytes (an inference plan's predict after predict), the transform is
// not made again (the same values: each U is a function of those bytes). Comparing the 36 KB
// weight of half the CNN's second convolution costs less than a quarter of transposing and
// transforming it. Blocks of more than 64K weights (256 KB; their U 448 KB) are not kept: their
// convolution's own work dwarfs the transform, and four of them per thread would hold memory
// the user never asked for.
const float* block_u(const float* w, idx Cg, idx noc, const ConvTaps& fast) {
  struct Entry {
    const float* at = nullptr;
    const ConvTaps* fast = nullptr;
    idx Cg = 0, noc = 0;
    std::vector<float> w, u;
  };
  thread_local Entry cache[4];
  thread_local unsigned next = 0;
  thread_local Buf<float> wt, ubuf;
  const idx n = 9 * Cg * noc;
  const bool keep = n <= (idx(1) << 16);
  for (Entry& e : cache)
    if (keep && e.at == w && e.fast == &fast && e.Cg == Cg && e.noc == noc &&
        std::memcmp(e.w.data(), w, n * sizeof(float)) == 0)
      return e.u.data();
  float* u = nullptr;
  if (!keep) {
    u = scratch(ubuf, 16 * Cg * noc);
  } else {
    Entry* e = nullptr;
    for (Entry& c : cache)  // (the entry of this weight, else the next in turn)
      if (c.at == w) e = &c;
    if (!e) e = &cache[next++ % 4];
    e->at = w, e->fast = &fast, e->Cg = Cg, e->noc = noc;
    e->w.assign(w, w + n);
    e->u.resize((size_t)(16 * Cg * noc));
    u = e->u.data();
  }
  float* t = scratch(wt, n);
  fast.transpose(w, noc, 9 * Cg, 9 * Cg, t, noc);
  fast.wino_weights(t, Cg, noc, u);
  return u;
}

// With `p` (a 2 × 2, stride-2 max pool without padding of the output), its output and argmax go
// to pout and argmax and out (the unpooled output) may be null.
void winograd_forward(float* out, const float* x, const float* weight, const float* bias, const Conv2d& s,
                      const Geometry& g, const ConvTaps& fast, Act act, const Pool2d* p = nullptr,
                      float* pout = nullptr, std::int32_t* argmax = nullptr) {
  const idx P = s.OH * s.OW, usize = 16 * g.Cg * g.OCg, Pp = p ? p->OH * p->OW : 0;
  const Geometry q = wino_grid(s, g);
  // fewer samples than threads (batch 1): each thread takes a block of output channels and
  // transforms their weight itself (one U made by one thread and read by both: the CNN's
  // predict of one image 57-59 against 51-54 µs, the U's cache lines moving between the cores),
  // or takes it from block_u's cache, as one thread does for one sample (on one thread the
  // CNN's predict of one image spent ~11 of its ~94 µs transforming the same weight again)
  const int nt = num_threads();
  const idx blocks = s.N < nt && g.OCg % (16 * nt) == 0 ? nt : 1, noc = g.OCg / blocks;
  thread_local Buf<float> wtbuf;
  const float* U = nullptr;
  if (s.N >= std::max(nt, 2)) {
    float* wt = scratch(wtbuf, g.K * g.OCg);
    U = wino_weights(s, g, fast, [&](idx gi) {
      fast.transpose(weight + gi * g.OCg * g.K, g.OCg, g.K, g.K, wt, g.OCg);
      return wt;
    });
  }
  parallel_chunks(s.N * s.G * blocks, 1, [&](idx u0, idx u1) {
    thread_local WinoScratch w;
    for (idx u = u0; u < u1; ++u) {
      const idx ng = u / blocks, n = ng / s.G, gi = ng % s.G, at = n * s.OC + gi * g.OCg, o0 = u % blocks * noc;
      const float* Ug = U ? U + gi * usize + o0 : nullptr;
      if (!U) Ug = block_u(weight + (gi * g.OCg + o0) * g.K, g.Cg, noc, fast);
      const WinoPool wp{p ? pout + at * Pp : nullptr, p ? argmax + at * Pp : nullptr, p ? p->OH : 0, p ? p->OW : 0};
      wino_sample(out ? out + at * P : nullptr, x + (n * s.C + gi * g.Cg) * s.H * s.W, s.H * s.W, s.W,
                  u > u0 && (u - 1) / blocks == ng, s, g, q, Ug, U ? g.OCg : noc, o0, noc,
                  bias ? bias + gi * g.OCg : nullptr, act, fast, w, p ? &wp : nullptr);
    }
  });
}

// The input gradient of a 3 × 3, stride-1 convolution s is the convolution of the output
// gradient (OC channels of OH × OW) with the kernels turned by 180° and the channels swapped,
// padded by 2 − PH (2 − PW) before, to the input's H × W: that convolution's geometry.
Conv2d transposed_conv(const Conv2d& s) {
  Conv2d b = s;
  b.C = s.OC, b.OC = s.C, b.H = s.OH, b.W = s.OW, b.OH = s.H, b.OW = s.W, b.PH = 2 - s.PH, b.PW = 2 - s.PW;
  return b;
}
// Whether the input gradient of s can take Winograd: s's padding at most 2 on every side (the
// transposed convolution's is 2 minus it).
bool winograd_dx_ok(const Conv2d& s, const Geometry& g, const ConvTaps* fast) {
  return winograd_ok(s, g, fast, Act::None) && s.PH <= 2 && s.PW <= 2 && s.H + s.PH >= s.OH && s.W + s.PW >= s.OW;
}

}  // namespace

template <class T>
void conv2d_forward(T* out, const T* x, const T* weight, const T* bias, const Conv2d& s, Act act) {
  // No output channels: nothing to write. No input channels: every sum is empty, so the output
  // is the bias (through the activation), as the twin's GEMM over zero rows gives. (The kernels
  // below block by channel counts and would divide by zero.)
  if (s.OC == 0 || s.N == 0) return;
  if (s.C == 0) {
    for (idx r = 0; r < s.N * s.OC; ++r) {
      const T v = bias ? T(0) + bias[r % s.OC] : T(0);
      std::fill(out + r * s.OH * s.OW, out + (r + 1) * s.OH * s.OW, act == Act::ReLU ? relu(v) : v);
    }
    return;
  }
  const Geometry g = geometry_of(s, phase_ok<T>());
  if constexpr (std::is_same_v<T, float>)
    if (winograd_ok(s, g, taps_kernel<T>(g), act)) return winograd_forward(out, x, weight, bias, s, g, *conv_taps_f32(), act);
  const idx P = s.OH * s.OW;
  const ConvTaps* fast = taps_kernel<T>(g);
  if constexpr (std::is_same_v<T, float>)
    if (plane_ok(s, g, fast)) return plane_forward(out, x, weight, bias, s, g, *fast, act);
  const std::vector<idx> taps = fast ? forward_taps(s, g) : std::vector<idx>();
  // each group's weight packed for the tile kernel, when enough samples repay packing it (at
  // batch 1 the packing of 64 × 288 weights cost ~10 of the ~50 µs: read through rows there)
  const bool pack = fast && s.N >= 4;
  // The direct kernel with vectors over output channels when they come in 16s: no wide
  // columns computed and dropped; each group's weight transposed to (K, OCg) for it.
  int pixels, nv;
  if (by_channels<T>(s, g, pixels, nv)) {
    if constexpr (std::is_same_v<T, float>) return direct_by_channels(out, x, weight, bias, s, g, *fast, pixels, nv, act);
  }
  std::vector<std::vector<T>> panels;
  if (nv) {
    if constexpr (std::is_same_v<T, float>)
      for (idx gi = 0; gi < s.G; ++gi) {
        std::vector<T> w((size_t)(g.K * g.OCg));
        fast->transpose(weight + gi * g.OCg * g.K, g.OCg, g.K, g.K, w.data(), g.OCg);
        panels.push_back(std::move(w));
      }
  } else if (pack) {
    for (idx gi = 0; gi < s.G; ++gi) panels.push_back(pack_panels(weight + gi * g.OCg * g.K, g.K, g.OCg, g.K));
  }
  const std::vector<idx> rows_w = fast && !nv && !pack ? strided(g.OCg, g.K) : std::vector<idx>();
  const auto keep = fast && !nv ? std::make_unique<TapsOut>(g.cols, g.Wp, 0, s.OW) : nullptr;
  over_items(s.N, [&](idx n) {
    thread_local Buf<T> colbuf, padbuf, resbuf;
    for (idx gi = 0; gi < s.G; ++gi) {
      const T* xg = x + (n * s.C + gi * g.Cg) * s.H * s.W;
      T* og = out + (n * s.OC + gi * g.OCg) * P;
      const T* bg = bias ? bias + gi * g.OCg : nullptr;
      const T* wg = weight + gi * g.OCg * g.K;
      if (nv) {
        if constexpr (std::is_same_v<T, float>) {
          const int px = pixels;  // (a tile reads all its pixels: 16 zeros after the planes)
          T* xp = scratch(padbuf, padded_size(g) + 16);
          pad_planes(xp, xg, s, g, fast->rows);
          std::fill(xp + padded_size(g), xp + padded_size(g) + 16, T(0));
          const idx ob = g.OCg / (16 * nv), rs = (s.OW + px - 1) / px;
          const idx work = g.K * px * nv;  // vector FMAs per tile: small convolutions run on one thread
          parallel_chunks(ob * s.OH * rs, std::max<idx>(1, kOcTileWork / work), [&](idx t0, idx t1) {
            for (idx t = t0; t < t1; ++t) {
              const idx o = t / (s.OH * rs) * 16 * nv, oh = t / rs % s.OH, ow = t % rs * px;
              fast->oc_tile(g.K, panels[(size_t)gi].data() + o, g.OCg, px, nv, taps.data(), xp + oh * g.Wp + ow,
                            og + o * P + oh * s.OW + ow, P, (int)std::min<idx>(px, s.OW - ow), bg ? bg + o : nullptr,
                            act == Act::ReLU);
            }
          });
        }
        continue;
      }
      if (fast) {  // reads the padded planes where im2col would have copied them; bias and act applied
        T* xp = scratch(padbuf, padded_size(g));
        pad_planes(xp, xg, s, g, fast->rows);
        taps_gemm(fast->tile, g.OCg, g.cols, g.K, pack ? panels[(size_t)gi].data() : wg,
                  pack ? (const idx*)nullptr : rows_w.data(), taps.data(), xp, og, P, *keep, false, bg, act);
        continue;
      }
      // wide columns go to scratch; otherwise the GEMM writes the output in place
      T* res = wide(g) ? scratch(resbuf, g.OCg * g.cols) : og;
      {
        const T* col = xg;
        if (g.path != Path::Direct) {
          const T* xp = xg;
          if (!unpadded(s, g)) {
            T* p = scratch(padbuf, padded_size(g));
            pad_planes(p, xg, s, g, (ConvRows) nullptr);
            xp = p;
          }
          im2col(scratch(colbuf, g.K * g.cols), xp, s, g);
          col = colbuf.data();
        }
        gemm<T>(false, false, g.OCg, g.cols, g.K, T(1), wg, g.K, col, g.cols, T(0), res, g.cols, nullptr, Act::None);
      }
      if (res != og || bg || act != Act::None) finish(og, res, bg, act, s, g);
    }
  });
}

template <class T>
void conv2d_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight, const Conv2d& s,
                     bool accumulate, Act act, const T* y, const ConvGradSource<T>* src) {
  // No output channels: x's gradient is zero (no output reads it) and the weight and bias
  // gradients are empty. No input channels: only the bias gradient has values, Σ dout (its
  // ReLU's mask applied) per channel over the samples and pixels in order. (The kernels below
  // block by channel counts and would divide by zero.)
  if (s.OC == 0 || s.C == 0) {
    const idx P = s.OH * s.OW;
    if (dx) std::fill(dx, dx + s.N * s.C * s.H * s.W, T(0));
    if (dbias && !src)
      for (idx o = 0; o < s.OC; ++o) {
        T sum = T(0);
        for (idx n = 0; n < s.N; ++n)
          for (idx p = 0; p < P; ++p) {
            const idx at = (n * s.OC + o) * P + p;
            sum += act == Act::ReLU && y ? dout[at] * relu_grad(y[at]) : dout[at];
          }
        dbias[o] = accumulate ? dbias[o] + sum : sum;
      }
    return;
  }
  // With a non-finite weight, the input gradient's kernels would multiply it by the zeros of
  // the wide columns and of the output gradient's padding (0 · inf = NaN) where the twin
  // adds no such term, and put NaN in finite values: then im2col and the GEMM over the
  // output's own columns run instead (general_of; no vector kernels, the twin's terms).
  const idx wsize = s.OC * (s.C / s.G) * s.KH * s.KW;  // weight elements
  const bool weight_finite = first_nonfinite(weight, wsize) < 0;
  const Geometry g = weight_finite ? geometry_of(s, phase_ok<T>()) : general_of(s);
  const idx P = s.OH * s.OW;
  const idx nchunks = (s.N + kChunk - 1) / kChunk;
  // per chunk of samples, its weight and bias gradients; then the chunks are summed in order
  std::vector<T, CacheLineAlloc<T>> partial((size_t)(nchunks * wsize)), partial_b((size_t)(nchunks * s.OC));
  // The vector kernels (AVX-512 or AVX2, float, stride 1). The input gradient: below (DataTaps). The
  // weight gradient without im2col: with few taps (K < 32, an image net's first layer) or few
  // output channels (<= 16), as dots of the output gradient's rows with the padded planes at
  // the forward taps; else transposed, dwᵀ (K, OCg) = colᵀ · gᵀ, the tile kernel reading A's
  // rows from the padded planes at the taps and B from the output gradient transposed, so
  // partial holds each group's (K, OCg). Measured (one thread, 128 samples, the three
  // alternating): 1 → 32 channels of 28×28 dots 1.7 ms, GEMM 2.2; 16 → 16 of 28×28 dots 6.5,
  // transposed 15.6 (half its 32-wide tiles idle), GEMM 9.1; 32 → 64 of 14×14 transposed 9.6,
  // GEMM 10.3, dots 14.1 (16 lane sums per value cost more than over 224 columns they
  // save); 32 → 32 of 7×7 transposed 1.5, GEMM 1.9; 64 → 64 of 7×7 GEMM 6.4, transposed 7.2.
  const ConvTaps* fast = taps_kernel<T>(g);
  const bool dots = fast && (g.K < 32 || g.OCg <= 16), transposed = fast && !dots;
  const std::vector<idx> taps = fast ? forward_taps(s, g) : std::vector<idx>();
  const std::vector<idx> rows_gt = transposed ? strided(g.cols, g.OCg) : std::vector<idx>();
  const auto keep_w = transposed ? std::make_unique<TapsOut>(g.OCg, g.OCg, 0, g.OCg) : nullptr;
  const idx KK = s.KH * s.KW;
  std::vector<std::vector<T>> wt;  // each group's weight as (Cg, OCg·KH·KW), packed for the kernel
  std::unique_ptr<DataTaps> dt;
  // the input gradient by the kernel with vectors over (input) channels when they come in
  // 16s, the weight as (OCg·KH·KW, Cg) for it
  const int dx_pixels = s.W > 7 ? 14 : 7;
  const int dx_nv = !fast || !dx || g.Cg % 16 || g.path == Path::Phase ? 0
                    : dx_pixels == 7 && g.Cg % 64 == 0 ? 4 : g.Cg % 32 == 0 ? 2 : 1;
  if (dx_nv) {
    dt = std::make_unique<DataTaps>(s, g);
    if constexpr (std::is_same_v<T, float>)
      for (idx gi = 0; gi < s.G; ++gi) {
        std::vector<T> w((size_t)g.K * g.OCg);
        for (idx o = 0; o < g.OCg; ++o)  // (Cg, KK) -> (KK, Cg) per output channel
          fast->transpose(weight + (gi * g.OCg + o) * g.K, g.Cg, KK, KK, w.data() + o * KK * g.Cg, g.Cg);
        wt.push_back(std::move(w));
      }
  } else if (fast && dx && g.path == Path::Wide) {
    dt = std::make_unique<DataTaps>(s, g);
    std::vector<T> w((size_t)g.K * g.OCg);
    for (idx gi = 0; gi < s.G; ++gi) {
      for (idx o = 0; o < g.OCg; ++o)
        for (idx c = 0; c < g.Cg; ++c)
          for (idx k = 0; k < KK; ++k) w[(size_t)((c * g.OCg + o) * KK + k)] = weight[((gi * g.OCg + o) * g.Cg + c) * KK + k];
      wt.push_back(pack_panels(w.data(), g.OCg * KK, g.Cg, g.OCg * KK));
    }
  }
  // A Phase convolution's input gradient, phase by phase (PhaseTaps): by the kernel with
  // vectors over input channels when they come in 16s, else the tile kernel.
  std::unique_ptr<PhaseTaps> pt;
  const int pq_pixels = (s.W + s.SW - 1) / s.SW > 7 ? 14 : 7;  // (a plane's image columns)
  const int pq_nv = g.Cg % 16 ? 0 : pq_pixels == 7 && g.Cg % 64 == 0 ? 4 : g.Cg % 32 == 0 ? 2 : 1;
  if constexpr (std::is_same_v<T, float>)
    if (fast && dx && g.path == Path::Phase) pt = std::make_unique<PhaseTaps>(s, g, weight, pq_nv > 0);
  const idx lead = dt ? dt->lead : pt ? pt->lead : 0, grow = dt ? dt->row : pt ? pt->row : 0;
  // The weight gradient from a sparse output gradient (ConvSparseDw: below a 2 × 2 max pool
  // at most a quarter of it is nonzero) for 3 × 3 kernels over input channels in 16s, in the
  // chunks where at most half of dout is nonzero and the input is finite: the same bits (a
  // zero term changes no finite sum), with only the nonzero terms computed. The chunk's sums
  // go to spbuf as (o, tap, c), and into its partial when it ends.
  const bool sparse_ok = transposed && fast->sparse_dw && s.KH * s.KW == 9 && g.Cg % 16 == 0 && g.path == Path::Wide;
  // The input gradient too is scattered from the nonzero values (ConvSparseDx), 16 channels at
  // a time, into a channel-last copy of the padded input's grid, when the weight is finite (a
  // zero times an infinite weight is a NaN term): each value's FMA chain is the dense kernel's
  // without its zero terms, the same bits again. Its threshold is lower (0.3 by default): it
  // trades each kept FMA for a load and a store, which pays only where FMAs are the dearer.
  // With one 512-bit FMA per cycle (AMD Zen 4), 128
  // samples of 32 -> 64 channels on 14 × 14, the input gradient alone: 1 thread dense 8.6 ms,
  // sparse 5.7 / 6.6 / 7.4 ms at 20 / 25 / 30% nonzero; 2 threads dense 4.3, sparse 3.0 / 3.4 /
  // 3.8; the CNN's second convolution's backward 7.0-7.2 -> 5.6-5.8 ms. Where a core runs two
  // 512-bit FMAs per cycle the dense kernel was as fast at 15% nonzero (an earlier version of
  // this scatter), so there it runs only when the testing knob forces it (>= 1).
  const double dx_max_density = g_sparse_max_density >= 1 ? g_sparse_max_density
                                : fma512_full_rate()     ? -1.0
                                                         : 0.6 * g_sparse_max_density;
  const bool sparse_dx_ok = dx_nv && fast->sparse_dx && s.KH * s.KW == 9 && dx_max_density >= 0 && weight_finite;
  // The input gradient by Winograd (transposed_conv), in chunks where more than 10% of the
  // output gradient is nonzero: at most that, the sparse scatter or the direct kernel runs (by
  // CPU, with the same bits), so which kernel makes a chunk's bits depends on its data only.
  // Winograd's cost does not fall with the density, the scatter's does: 128 samples of 32 -> 64
  // channels on 14 × 14, one thread, AMD Zen 3 (AVX2): Winograd 7.1-8.0 ms at any density,
  // the scatter 6.4 / 8.7 / 10.2 / 12.0 / 13.3 ms at 6 / 10 / 14 / 18 / 22% nonzero (a max
  // pool's gradient: ~20%); Zen 4 (AVX-512) at 22%: Winograd 5.4-5.6, the scatter 5.6-6.5.
  const bool wino_dx_ok = dx_nv && winograd_dx_ok(s, g, fast);
  const Conv2d sb = transposed_conv(s);
  const Geometry gb = geometry_of(sb), qb = wino_grid(sb, gb);
  const float* Ub = nullptr;
  std::vector<float> wtb;
  if constexpr (std::is_same_v<T, float>)
    if (wino_dx_ok) {  // (o·9 + tap, c): the kernels turned by 180°, from wt's (o·9 + tap, c)
      wtb.resize((size_t)(gb.K * gb.OCg));
      Ub = wino_weights(sb, gb, *fast, [&](idx gi) {
        for (idx r = 0; r < g.OCg * KK; ++r) {
          const float* from = wt[(size_t)gi].data() + (r / KK * KK + KK - 1 - r % KK) * g.Cg;
          std::copy(from, from + g.Cg, wtb.data() + r * g.Cg);
        }
        return wtb.data();
      });
    }
  // The dense weight gradient by Winograd too (ConvWinoDw: the output gradient's 2 × 2 tiles
  // as the filters of the input's 4 × 4 patches, summed over a chunk's tiles in the transformed
  // domain, then turned into the 3 × 3 taps), where the sparse kernel does not run.
  const bool wino_dw_ok = transposed && winograd_ok(s, g, fast, Act::None);
  const Geometry q = wino_grid(s, g);
  std::vector<idx> toff;
  for (idx t = 0; (sparse_ok || sparse_dx_ok) && t < 9; ++t) toff.push_back(t / 3 * s.DH * g.Wp + t % 3 * s.DW);
  over_items(nchunks, [&](idx c) {
    thread_local Buf<T> colbuf, dcolbuf, padbuf, gbuf, gpadbuf, gtbuf, spbuf, xhbuf, dxhbuf, dqbuf;
    thread_local WinoScratch ws;
    T* pw = partial.data() + c * wsize;
    T* pb = partial_b.data() + c * s.OC;
    const idx n0 = c * kChunk, nn = std::min(s.N, n0 + kChunk) - n0;
    const double nonzero = (sparse_ok && g_sparse_max_density >= 0) || sparse_dx_ok || wino_dx_ok
                               ? (double)(src ? src->nonzeros(n0, nn)
                                           : count_nonzero(dout + n0 * s.OC * P, nn * s.OC * P,
                                                           act == Act::ReLU && y ? y + n0 * s.OC * P : nullptr)) /
                                     (double)std::max<idx>(1, nn * s.OC * P)
                               : 1.0;
    const bool sparse = sparse_ok && g_sparse_max_density >= 0 && nonzero <= g_sparse_max_density &&
                        first_nonfinite(x + n0 * s.C * s.H * s.W, nn * s.C * s.H * s.W) < 0;
    const bool wino_dx = wino_dx_ok && nonzero > kWinoDxMinDensity;
    const bool sparse_dx = sparse_dx_ok && !wino_dx && nonzero <= dx_max_density;
    const bool wino_dw = wino_dw_ok && !sparse;
    T* sp = sparse || wino_dw ? scratch(spbuf, wsize) : nullptr;
    float* wm = wino_dw ? scratch(ws.dwm, s.G * 16 * g.Cg * g.OCg) : nullptr;  // each group's M
    for (idx n = n0; n < n0 + nn; ++n) {
      for (idx gi = 0; gi < s.G; ++gi) {
        const T* xg = x + (n * s.C + gi * g.Cg) * s.H * s.W;
        const idx og = (n * s.OC + gi * g.OCg) * P;
        const T* wg = weight + gi * g.OCg * g.K;
        const T* col = xg;
        T* xp = nullptr;
        if (g.path != Path::Direct && !fast && unpadded(s, g)) {
          im2col(scratch(colbuf, g.K * g.cols), xg, s, g);
          col = colbuf.data();
        } else if (g.path != Path::Direct && !wino_dw) {  // (Winograd's weight gradient reads xg)
          xp = scratch(padbuf, padded_size(g));
          pad_planes(xp, xg, s, g, fast ? fast->rows : (ConvRows) nullptr);
          if (!fast) im2col(scratch(colbuf, g.K * g.cols), xp, s, g);
          col = colbuf.data();
        }
        // the gradient at the output (channels ldg apart), ReLU's mask applied when fused, zero
        // in wide columns; with the vector kernels and an input gradient to make, written
        // straight into the zero-led rows that the input gradient's kernel reads (DataTaps).
        // From src: written there by it (rows `stride` apart), then the wide columns zeroed.
        const idx stride = wide(g) ? g.Wp : s.OW;
        auto make = [&](T* dst, idx ld) {
          if (!src) return widen(dst, ld, dout + og, y ? y + og : nullptr, act, s, g, fast ? fast->rows : (ConvRows) nullptr);
          src->write(n, gi * g.OCg, g.OCg, dst, ld, stride);
          if (stride > s.OW)
            for (idx o = 0; o < g.OCg; ++o)
              for (idx r = 0; r < s.OH; ++r) std::fill(dst + o * ld + r * stride + s.OW, dst + o * ld + (r + 1) * stride, T(0));
        };
        const T* gr = src ? nullptr : dout + og;
        idx ldg = g.cols;
        T* gp = nullptr;
        if (fast && dx) {
          gp = scratch(gpadbuf, g.OCg * grow + 16);  // (16 zeros after: read by whole tiles)
          std::fill(gp + g.OCg * grow, gp + g.OCg * grow + 16, T(0));
          ldg = grow;
          for (idx o = 0; o < g.OCg; ++o) {
            T* r = gp + o * grow;
            std::fill(r, r + lead, T(0));
            std::fill(r + lead + g.cols, r + grow, T(0));
          }
          make(gp + lead, ldg);
          gr = gp + lead;
        } else if (src || act != Act::None || wide(g)) {
          make(scratch(gbuf, g.OCg * g.cols), ldg);
          gr = gbuf.data();
        }
        // dweight_g (OCg, K) (+)= g (OCg, cols) · colᵀ (cols, K); the chunk's first sample sets it
        const bool first = n == c * kChunk;
        if (dots) {
          taps_dot(fast->dot, g.OCg, g.K, g.cols, gr, ldg, taps.data(), (const T*)xp, pw + gi * g.OCg * g.K, g.K,
                   !first);
        } else if (sparse) {
          if constexpr (std::is_same_v<T, float>) {
            const idx HW = g.Hp * g.Wp;  // the padded input, channel-last
            T* xh = scratch(xhbuf, HW * g.Cg);
            fast->transpose(xp, g.Cg, HW, HW, xh, g.Cg);
            for (idx c0 = 0; c0 < g.Cg; c0 += 32)
              fast->sparse_dw(g.cols, gr, ldg, (int)g.OCg, toff.data(), xh + c0, g.Cg, (int)std::min<idx>(2, (g.Cg - c0) / 16),
                              sp + gi * g.OCg * g.K + c0, g.K, g.Cg, !first);
          }
        } else if (wino_dw) {
          if constexpr (std::is_same_v<T, float>) {
            const idx TH = (s.OH + 1) / 2, TW = (s.OW + 1) / 2;
            float* gh = scratch(ws.gh, 4 * TH * TW * g.OCg);
            onto_grid(gh, gr, g.OCg, ldg, g.Wp, s.OH, s.OW, 0, 0, 2 * TH, 2 * TW, *fast);
            float* xh = scratch(ws.xh, q.Hp * q.Wp * g.Cg);
            onto_grid(xh, xg, g.Cg, s.H * s.W, s.W, s.H, s.W, s.PH, s.PW, q.Hp, q.Wp, *fast);
            fast->wino_dw(gh, xh, q.Wp, g.Cg, g.OCg, s.OH, s.OW, wm + gi * 16 * g.Cg * g.OCg, first,
                          scratch(ws.v, 16 * kWinoDwBlock * g.Cg), scratch(ws.gt, 16 * kWinoDwBlock * g.OCg), kWinoDwBlock);
            if (n == n0 + nn - 1) fast->wino_dw_finish(wm + gi * 16 * g.Cg * g.OCg, g.Cg, g.OCg, sp + gi * g.OCg * g.K, g.K, g.Cg);
          }
        } else if (transposed) {
          if constexpr (std::is_same_v<T, float>) {
            T* gt = scratch(gtbuf, g.cols * g.OCg);
            fast->transpose(gr, g.OCg, g.cols, ldg, gt, g.OCg);
            // (the depth: the image's columns of each wide row; the others' gradient is zero)
            // output channels in 64s: tiles of 6 × 64 (ConvTaps64: its 6 row pointers stay in
            // registers; one thread, 128 samples: 32 → 64 on 14×14 7.8–8.4 → 7.4 ms, 64 → 64 on
            // 7×7 4.3–4.7 → 3.7–4.1), else the 12 × 32 tiles
            if (g.OCg % 64 == 0) {
              T* cw = pw + gi * g.OCg * g.K;
              const idx mt = (g.K + 5) / 6, nt = g.OCg / 64;
              parallel_chunks(mt * nt, std::max<idx>(1, 65536 / (6 * 64 * g.cols)), [&](idx t0, idx t1) {
                for (idx t = t0; t < t1; ++t) {
                  const idx i = t / nt * 6, j = t % nt * 64;
                  fast->tile64(g.cols, s.OW, g.Wp, (const T*)xp, taps.data() + i, rows_gt.data(), gt + j,
                               cw + i * g.OCg + j, g.OCg, (int)std::min<idx>(6, g.K - i), !first);
                }
              });
            } else {
              taps_gemm(fast->tile, g.K, g.OCg, g.cols, (const T*)xp, taps.data(), rows_gt.data(), (const T*)gt,
                        pw + gi * g.OCg * g.K, g.OCg, *keep_w, !first, (const T*)nullptr, Act::None, s.OW, g.Wp);
            }
          }
        } else
          gemm<T>(false, true, g.OCg, g.K, g.cols, T(1), gr, ldg, col, g.cols, first ? T(0) : T(1),
                  pw + gi * g.OCg * g.K, g.K, nullptr, Act::None);
        if (dbias)  // (the wide columns of g are zeros)
          for (idx o = 0; o < g.OCg; ++o) {
            const T v = lane_sum(gr + o * ldg, g.cols);
            pb[gi * g.OCg + o] = first ? v : pb[gi * g.OCg + o] + v;
          }
        if (!dx) continue;
        T* dxg = dx + (n * s.C + gi * g.Cg) * s.H * s.W;
        if (fast) {
          // dxp's image rows by the kernel, from gw in its zero-led rows
          if (pt) {  // each phase plane of dxp (dq: xp's layout), then the image's pixels from them
            if constexpr (std::is_same_v<T, float>) {
              T* dq = scratch(dqbuf, g.Cg * g.Hp * g.Wp);
              const idx plane = g.Hq * g.Wp, ldq = g.Hp * g.Wp;
              for (size_t ph = 0; ph < pt->taps.size(); ++ph) {
                const std::vector<idx>& tp = pt->taps[ph];
                const float* a = pt->a[(size_t)gi][ph].data();
                T* out = dq + (idx)ph * plane;
                const idx kq = (idx)tp.size();
                if (pq_nv) {  // the plane's pixels of the image only
                  const idx i0 = pt->i0[ph], rows = pt->i1[ph] - i0, j0 = pt->j0[ph], width = pt->j1[ph] - j0;
                  const idx cb = g.Cg / (16 * pq_nv), rs = (width + pq_pixels - 1) / pq_pixels;
                  const idx work = kq * pq_pixels * pq_nv;
                  parallel_chunks(cb * rows * rs, std::max<idx>(1, kOcTileWork / work), [&](idx t0, idx t1) {
                    for (idx t = t0; t < t1; ++t) {
                      const idx c0 = t / (rows * rs) * 16 * pq_nv, i = i0 + t / rs % rows, j = j0 + t % rs * pq_pixels;
                      fast->oc_tile(kq, a + c0, g.Cg, pq_pixels, pq_nv, tp.data(), gp + i * g.Wp + j,
                                    out + c0 * ldq + i * g.Wp + j, ldq, (int)std::min<idx>(pq_pixels, j0 + width - j),
                                    (const T*)nullptr, false);
                    }
                  });
                } else {
                  const TapsOut all(plane, g.Wp, 0, g.Wp);
                  taps_gemm(fast->tile, g.Cg, plane, kq, a, (const idx*)nullptr, tp.data(), gp, out, ldq, all, false,
                            (const T*)nullptr, Act::None);
                }
              }
              const idx* cmap = pt->cmap.data();
              for (idx c = 0; c < g.Cg; ++c)
                for (idx h = 0; h < s.H; ++h) {
                  T* to = dxg + (c * s.H + h) * s.W;
                  const idx r = pt->rmap[(size_t)h];
                  if (r < 0) {
                    std::fill(to, to + s.W, T(0));
                    continue;
                  }
                  const T* from = dq + c * ldq + r;
                  if (s.SW == 2 && g.PWn == 2) {  // two phases' rows interleaved (vectorises)
                    const T* even = from + cmap[0];
                    const T* odd = s.W > 1 ? from + cmap[1] : even;
                    for (idx k = 0; k < s.W / 2; ++k) to[2 * k] = even[k], to[2 * k + 1] = odd[k];
                    if (s.W % 2) to[s.W - 1] = even[s.W / 2];
                  } else if (g.PWn == s.SW) {  // (every column phase kept)
                    for (idx w = 0; w < s.W; ++w) to[w] = from[cmap[w]];
                  } else
                    for (idx w = 0; w < s.W; ++w) to[w] = cmap[w] < 0 ? T(0) : from[cmap[w]];
                }
            }
            continue;
          }
          if (wino_dx) {  // (gw's rows Wp apart, its image columns first)
            if constexpr (std::is_same_v<T, float>)
              wino_sample(dxg, gr, ldg, g.Wp, false, sb, gb, qb, Ub + gi * 16 * gb.Cg * gb.OCg, gb.OCg, 0, gb.OCg, nullptr,
                          Act::None, *fast, ws);
            continue;
          }
          if (sparse_dx) {
            if constexpr (std::is_same_v<T, float>) {
              // 16 channels at a time: their grid (16 KB for 14 × 14 images) stays in L1 with
              // the gradient being read (32 channels' 32 KB filled a Zen 4 core's L1: 20-40% slower)
              const idx grid = g.Hp * g.Wp;
              T* dh = scratch(dxhbuf, grid * 16);
              for (idx c0 = 0; c0 < g.Cg; c0 += 16) {
                std::fill(dh, dh + grid * 16, T(0));
                fast->sparse_dx(g.cols, gr, ldg, (int)g.OCg, toff.data(), wt[(size_t)gi].data() + c0, g.Cg, dh);
                for (idx h = 0; h < s.H; ++h)  // the image's pixels, channel-last, into planes
                  fast->transpose(dh + ((s.PH + h) * g.Wp + s.PW) * 16, s.W, 16, 16, dxg + c0 * s.H * s.W + h * s.W,
                                  s.H * s.W);
              }
            }
            continue;
          }
          if (dx_nv) {
            if constexpr (std::is_same_v<T, float>) {
              const idx cb = g.Cg / (16 * dx_nv), rs = (s.W + dx_pixels - 1) / dx_pixels, HW = s.H * s.W;
              const idx work = g.OCg * KK * dx_pixels * dx_nv;
              parallel_chunks(cb * s.H * rs, std::max<idx>(1, kOcTileWork / work), [&](idx t0, idx t1) {
                for (idx t = t0; t < t1; ++t) {
                  const idx c0 = t / (s.H * rs) * 16 * dx_nv, h = t / rs % s.H, w0 = t % rs * dx_pixels;
                  fast->oc_tile(g.OCg * KK, wt[(size_t)gi].data() + c0, g.Cg, dx_pixels, dx_nv, dt->taps.data(),
                                gp + h * g.Wp + s.PW + w0, dxg + c0 * HW + h * s.W + w0, HW,
                                (int)std::min<idx>(dx_pixels, s.W - w0), (const T*)nullptr, false);
                }
              });
            }
            continue;
          }
          taps_gemm(fast->tile, g.Cg, s.H * g.Wp, g.OCg * KK, wt[(size_t)gi].data(), (const idx*)nullptr, dt->taps.data(),
                    gp, dxg, s.H * s.W, *dt->keep, false, (const T*)nullptr, Act::None);
          continue;
        }
        // dcol (K, cols) = weight_gᵀ (K, OCg) · g (OCg, cols), straight into dx when it is col
        T* dcol = g.path == Path::Direct ? dxg : scratch(dcolbuf, g.K * g.cols);
        gemm<T>(true, false, g.K, g.cols, g.OCg, T(1), wg, g.K, gr, ldg, T(0), dcol, g.cols, nullptr, Act::None);
        if (g.path == Path::Direct) continue;
        if (unpadded(s, g)) {
          std::fill(dxg, dxg + g.Cg * s.H * s.W, T(0));
          col2im(dxg, dcol, s, g);
          continue;
        }
        T* dxp = scratch(padbuf, padded_size(g));  // x's padded copy is spent: reuse it
        std::fill(dxp, dxp + padded_size(g), T(0));
        col2im(dxp, dcol, s, g);
        unpad_planes(dxg, dxp, s, g);
      }
    }
    if (sparse || wino_dw) {  // (o, tap, c) -> the transposed partial's (k, o), k = c·9 + tap: transposed, rows moved
      if constexpr (std::is_same_v<T, float>)
        for (idx gi = 0; gi < s.G; ++gi) {
          T* st = scratch(gtbuf, g.K * g.OCg);  // (tap, c) × o
          fast->transpose(sp + gi * g.OCg * g.K, g.OCg, g.K, g.K, st, g.OCg);
          for (idx t = 0; t < 9; ++t)
            for (idx ch = 0; ch < g.Cg; ++ch)
              std::copy(st + (t * g.Cg + ch) * g.OCg, st + (t * g.Cg + ch + 1) * g.OCg,
                        pw + gi * g.OCg * g.K + (ch * 9 + t) * g.OCg);
        }
    }
    // The dots (and the GEMM over wide im2col) sum the weight gradient over the wide columns
    // too, where a zero gradient meets the next row's first values, and Winograd over whole
    // tiles past the output's edge: a non-finite input there adds a NaN term (0 · inf) to a
    // weight gradient that is finite. So a chunk whose weight gradient is not finite is made
    // again by im2col and the GEMM over the output's own columns (general_of): its own bits,
    // for data that no longer trains anyway, but the twin's (and PyTorch's) finite values
    // stay finite. (A scan of the chunk's input first cost ~1% of a ResNet's step.)
    if ((dots || wino_dw || (!fast && wide(g))) && first_nonfinite(pw, wsize) >= 0) {
      const Geometry e = general_of(s);
      for (idx n = n0; n < n0 + nn; ++n)
        for (idx gi = 0; gi < s.G; ++gi) {
          const T* xg = x + (n * s.C + gi * g.Cg) * s.H * s.W;
          const idx og = (n * s.OC + gi * g.OCg) * P;
          T* xe = scratch(xhbuf, padded_size(e));
          pad_planes(xe, xg, s, e, (ConvRows) nullptr);
          T* ce = scratch(colbuf, e.K * e.cols);
          im2col(ce, xe, s, e);
          T* ge = scratch(dcolbuf, g.OCg * e.cols);  // the output gradient, OH·OW columns
          if (src) src->write(n, gi * g.OCg, g.OCg, ge, e.cols, s.OW);
          else widen(ge, e.cols, dout + og, y ? y + og : nullptr, act, s, e, (ConvRows) nullptr);
          const T beta = n == n0 ? T(0) : T(1);
          T* pg = pw + gi * g.OCg * g.K;
          if (transposed)  // (the partial as (K, OCg))
            gemm<T>(false, true, g.K, g.OCg, e.cols, T(1), ce, e.cols, ge, e.cols, beta, pg, g.OCg, nullptr, Act::None);
          else
            gemm<T>(false, true, g.OCg, g.K, e.cols, T(1), ge, e.cols, ce, e.cols, beta, pg, g.K, nullptr, Act::None);
        }
    }
  });
  // Sum the chunks in order, in the partials' own layout (chunk 0's partial becomes the sum:
  // contiguous, vectorised), each thread a range of it; then into dweight, where weight
  // (o, k) of a transposed partial sits at (k, o) of its group (counted, not divided out:
  // three 64-bit divisions per weight cost ~150 µs per call at 18,432 weights).
  if (nchunks > 1)
    parallel_chunks(wsize, kElementwiseChunk, [&](idx i0, idx i1) {
      for (idx c = 1; c < nchunks; ++c) {
        const T* pc = partial.data() + c * wsize;
        for (idx i = i0; i < i1; ++i) partial[(size_t)i] += pc[i];
      }
    });
  parallel_chunks(s.OC, std::max<idx>(1, kElementwiseChunk / std::max<idx>(g.K, 1)), [&](idx r0, idx r1) {
    for (idx r = r0; r < r1; ++r) {
      const idx gi = r / g.OCg, o = r % g.OCg;
      const idx at0 = transposed ? gi * g.OCg * g.K + o : r * g.K, step = transposed ? g.OCg : 1;
      for (idx k = 0; k < g.K; ++k) {
        const T v = nchunks ? partial[(size_t)(at0 + k * step)] : T(0);
        T& d = dweight[r * g.K + k];
        d = accumulate ? d + v : v;
      }
    }
  });
  if (dbias)
    for (idx o = 0; o < s.OC; ++o) {
      T v = nchunks ? partial_b[(size_t)o] : T(0);
      for (idx c = 1; c < nchunks; ++c) v += partial_b[(size_t)(c * s.OC + o)];
      dbias[o] = accumulate ? dbias[o] + v : v;
    }
}

bool set_conv_phase(bool on) {
  const bool old = g_phase;
  g_phase = on;
  return old;
}

bool set_conv_plane(bool on) {
  const bool old = g_plane;
  g_plane = on;
  return old;
}

bool set_conv_winograd(bool on) {
  const bool old = g_winograd;
  g_winograd = on;
  return old;
}

double set_conv_sparse_max_density(double d) {
  const double old = g_sparse_max_density;
  g_sparse_max_density = d;
  return old;
}

template <class T>
void conv2d_maxpool_forward(T* out, std::int32_t* argmax, T* y, const T* x, const T* weight, const T* bias,
                            const Conv2d& s, Act act, const Pool2d& p) {
  const Geometry g = geometry_of(s, phase_ok<T>());
  int pixels, nv;
  if (winograd_ok(s, g, taps_kernel<T>(g), act)) {
    // a 2 × 2, stride-2 pool of whole tiles: pooled in the output transform, y never made
    if constexpr (std::is_same_v<T, float>)
      if (p.KH == 2 && p.KW == 2 && p.SH == 2 && p.SW == 2 && p.PH == 0 && p.PW == 0 && p.OH == s.OH / 2 &&
          p.OW == s.OW / 2)
        return winograd_forward(nullptr, x, weight, bias, s, g, *conv_taps_f32(), act, &p, out, argmax);
  } else if (plane_ok(s, g, taps_kernel<T>(g))) {
    if constexpr (std::is_same_v<T, float>)
      return plane_forward(y, x, weight, bias, s, g, *conv_taps_f32(), act, &p, out, argmax);
  } else if (const ConvTaps* fast = by_channels<T>(s, g, pixels, nv)) {
    if constexpr (std::is_same_v<T, float>)
      return direct_by_channels(y, x, weight, bias, s, g, *fast, pixels, nv, act, &p, out, argmax);
  }
  conv2d_forward(y, x, weight, bias, s, act);
  maxpool2d_forward(out, argmax, y, p);
}

#define FASTNN_INSTANTIATE(T)                                                                          \
  template void conv2d_forward<T>(T*, const T*, const T*, const T*, const Conv2d&, Act);              \
  template void conv2d_maxpool_forward<T>(T*, std::int32_t*, T*, const T*, const T*, const T*, const Conv2d&, Act, \
                                          const Pool2d&);                                                \
  template void conv2d_backward<T>(T*, T*, T*, const T*, const T*, const T*, const Conv2d&, bool, Act, \
                                   const T*, const ConvGradSource<T>*);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
