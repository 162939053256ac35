// Activation forward/backward: each is a scalar function from scalar_ops.h and one generic
// elementwise loop; softmax works row by row.
#include <algorithm>
#include <cmath>
#include <type_traits>
#include "kernels/kernels.h"
#include "vmath/vmath.h"

namespace fastnn {

namespace {
template <class F>
void map1(idx n, F f) {
  parallel_chunks(n, kElementwiseChunk, [&](idx b, idx e) {
    for (idx i = b; i < e; ++i) f(i);
  });
}
}  // namespace

template <class T> void relu_forward(T* out, const T* x, idx n) {
  map1(n, [&](idx i) { out[i] = relu(x[i]); });
}
template <class T> void relu_backward(T* dx, const T* dout, const T* x, idx n) {
  map1(n, [&](idx i) { dx[i] = dout[i] * relu_grad(x[i]); });
}
template <class T> void leaky_relu_forward(T* out, const T* x, T slope, idx n) {
  map1(n, [&](idx i) { out[i] = leaky_relu(x[i], slope); });
}
template <class T> void leaky_relu_backward(T* dx, const T* dout, const T* x, T slope, idx n) {
  map1(n, [&](idx i) { dx[i] = dout[i] * leaky_relu_grad(x[i], slope); });
}
// float sigmoid, tanh and softmax use the vectorised exp of the SIMD path in use (vmath.h).
template <class T> void sigmoid_forward(T* out, const T* x, idx n) {
  if constexpr (std::is_same_v<T, float>)
    if (const VMath* vm = vmath_f32())
      return parallel_chunks(n, kElementwiseChunk, [&](idx b, idx e) { vm->sigmoid(out + b, x + b, e - b); });
  map1(n, [&](idx i) { out[i] = sigmoid(x[i]); });
}
template <class T> void sigmoid_backward(T* dx, const T* dout, const T* y, idx n) {
  map1(n, [&](idx i) { dx[i] = dout[i] * sigmoid_grad_from_y(y[i]); });
}
template <class T> void tanh_forward(T* out, const T* x, idx n) {
  if constexpr (std::is_same_v<T, float>)
    if (const VMath* vm = vmath_f32())
      return parallel_chunks(n, kElementwiseChunk, [&](idx b, idx e) { vm->tanh(out + b, x + b, e - b); });
  map1(n, [&](idx i) { out[i] = tanh_(x[i]); });
}
template <class T> void tanh_backward(T* dx, const T* dout, const T* y, idx n) {
  map1(n, [&](idx i) { dx[i] = dout[i] * tanh_grad_from_y(y[i]); });
}
template <class T> void gelu_forward(T* out, const T* x, idx n) {
  map1(n, [&](idx i) { out[i] = gelu(x[i]); });
}
template <class T> void gelu_backward(T* dx, const T* dout, const T* x, idx n) {
  map1(n, [&](idx i) { dx[i] = dout[i] * gelu_grad(x[i]); });
}
template <class T> void step_forward(T* out, const T* x, T threshold, idx n) {
  map1(n, [&](idx i) { out[i] = x[i] >= threshold ? T(1) : T(0); });
}
// p and the scale are rounded to T first and the kept values multiplied by the scale (dropped
// ones by 0, so an infinity becomes NaN): bitwise what the NumPy twin and the Dropout layer do.
template <class T> void dropout_apply(T* out, const T* x, const T* u, double p, idx n) {
  const T pt = T(p), scale = T(1.0 / (1.0 - p));
  map1(n, [&](idx i) { out[i] = x[i] * (u[i] >= pt ? scale : T(0)); });
}

template <class T> void add_forward(T* out, const T* a, const T* b, idx n, bool relu_after) {
  if (relu_after) map1(n, [&](idx i) { out[i] = relu(a[i] + b[i]); });
  else map1(n, [&](idx i) { out[i] = a[i] + b[i]; });
}
template <class T> void relu_backward_to_two(T* d0, T* d1, const T* dout, const T* y, idx n) {
  map1(n, [&](idx i) {
    const T g = dout[i] * relu_grad(y[i]);
    if (d0) d0[i] = g;
    if (d1) d1[i] = g;
  });
}
template <class T> void copy_to_two(T* d0, T* d1, const T* src, idx n) {
  parallel_chunks(n, kElementwiseChunk, [&](idx b, idx e) {
    if (d0) std::copy(src + b, src + e, d0 + b);
    if (d1) std::copy(src + b, src + e, d1 + b);
  });
}

template <class T> void softmax_forward(T* out, const T* x, idx N, idx C) {
  const idx rows_per_chunk = std::max<idx>(1, kElementwiseChunk / std::max<idx>(C, 1));
  if constexpr (std::is_same_v<T, float>)
    if (const VMath* vm = vmath_f32())
      return parallel_chunks(N, rows_per_chunk, [&](idx r0, idx r1) {
        if (C > 0) vm->softmax_rows(out + r0 * C, x + r0 * C, r1 - r0, C);
      });
  parallel_chunks(N, rows_per_chunk, [&](idx r0, idx r1) {
    for (idx r = r0; r < r1; ++r) {
      const T* xr = x + r * C;
      T* yr = out + r * C;
      T m = xr[0];
      for (idx c = 1; c < C; ++c) m = std::max(m, xr[c]);
      T s = 0;
      for (idx c = 0; c < C; ++c) s += (yr[c] = std::exp(xr[c] - m));
      const T inv = T(1) / s;
      for (idx c = 0; c < C; ++c) yr[c] *= inv;
    }
  });
}
template <class T> void softmax_backward(T* dx, const T* dout, const T* y, idx N, idx C) {
  parallel_chunks(N, std::max<idx>(1, kElementwiseChunk / std::max<idx>(C, 1)), [&](idx r0, idx r1) {
    for (idx r = r0; r < r1; ++r) {
      const T* g = dout + r * C;
      const T* yr = y + r * C;
      T dot = 0;
      for (idx c = 0; c < C; ++c) dot += g[c] * yr[c];
      for (idx c = 0; c < C; ++c) dx[r * C + c] = yr[c] * (g[c] - dot);
    }
  });
}

template <class T> void activation_forward(Act act, T* out, const T* x, T param, idx n) {
  switch (act) {
    case Act::ReLU: return relu_forward(out, x, n);
    case Act::LeakyReLU: return leaky_relu_forward(out, x, param, n);
    case Act::Sigmoid: return sigmoid_forward(out, x, n);
    case Act::Tanh: return tanh_forward(out, x, n);
    case Act::GELU: return gelu_forward(out, x, n);
    case Act::Step: return step_forward(out, x, param, n);
    case Act::None: if (out != x) std::copy(x, x + n, out); return;
  }
}
template <class T> void activation_backward(Act act, T* dx, const T* dout, const T* saved, T param, idx n) {
  switch (act) {
    case Act::ReLU: return relu_backward(dx, dout, saved, n);
    case Act::LeakyReLU: return leaky_relu_backward(dx, dout, saved, param, n);
    case Act::Sigmoid: return sigmoid_backward(dx, dout, saved, n);
    case Act::Tanh: return tanh_backward(dx, dout, saved, n);
    case Act::GELU: return gelu_backward(dx, dout, saved, n);
    case Act::Step: case Act::None: if (dx != dout) std::copy(dout, dout + n, dx); return;
  }
}

#define FASTNN_INSTANTIATE(T)                                                      \
  template void activation_forward<T>(Act, T*, const T*, T, idx);                  \
  template void activation_backward<T>(Act, T*, const T*, const T*, T, idx);       \
  template void relu_forward<T>(T*, const T*, idx);                                \
  template void relu_backward<T>(T*, const T*, const T*, idx);                     \
  template void leaky_relu_forward<T>(T*, const T*, T, idx);                       \
  template void leaky_relu_backward<T>(T*, const T*, const T*, T, idx);            \
  template void sigmoid_forward<T>(T*, const T*, idx);                             \
  template void sigmoid_backward<T>(T*, const T*, const T*, idx);                  \
  template void tanh_forward<T>(T*, const T*, idx);                                \
  template void tanh_backward<T>(T*, const T*, const T*, idx);                     \
  template void gelu_forward<T>(T*, const T*, idx);                                \
  template void gelu_backward<T>(T*, const T*, const T*, idx);                     \
  template void step_forward<T>(T*, const T*, T, idx);                             \
  template void dropout_apply<T>(T*, const T*, const T*, double, idx);             \
  template void add_forward<T>(T*, const T*, const T*, idx, bool);                 \
  template void relu_backward_to_two<T>(T*, T*, const T*, const T*, idx);          \
  template void copy_to_two<T>(T*, T*, const T*, idx);                             \
  template void softmax_forward<T>(T*, const T*, idx, idx);                        \
  template void softmax_backward<T>(T*, const T*, const T*, idx, idx);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
