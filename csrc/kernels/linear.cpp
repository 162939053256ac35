// Linear (fully connected) forward and backward: three GEMMs and a column sum.
#include <vector>
#include "kernels/kernels.h"
#include "gemm/gemm.h"

namespace fastnn {

template <class T>
void linear_forward(T* out, const T* x, const T* weight, const T* bias, idx N, idx C, idx OC) {
  gemm<T>(false, true, N, OC, C, T(1), x, C, weight, C, T(0), out, OC, bias, Act::None);
}

template <class T>
void linear_backward(T* dx, T* dweight, T* dbias, const T* dout, const T* x, const T* weight,
                     idx N, idx C, idx OC, bool accumulate) {
  if (dx) gemm<T>(false, false, N, C, OC, T(1), dout, OC, weight, C, T(0), dx, C, nullptr, Act::None);
  gemm<T>(true, false, OC, C, N, T(1), dout, OC, x, C, accumulate ? T(1) : T(0), dweight, C, nullptr,
          Act::None);
  if (dbias) {
    // Column sums, summed down the batch in order; each thread owns a range of columns.
    parallel_chunks(OC, 256, [&](idx o0, idx o1) {
      for (idx o = o0; o < o1; ++o) {
        T s = 0;
        for (idx n = 0; n < N; ++n) s += dout[n * OC + o];
        dbias[o] = accumulate ? dbias[o] + s : s;
      }
    });
  }
}

#define FASTNN_INSTANTIATE(T)                                                               \
  template void linear_forward<T>(T*, const T*, const T*, const T*, idx, idx, idx);         \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, idx, idx, idx, bool);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
