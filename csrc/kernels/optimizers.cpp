// Optimizer updates over flat buffers, written to match PyTorch's single-tensor CPU code
// (torch/optim/{sgd,adam,rmsprop}.py) operation for operation: hyper-parameter expressions are
// computed in double (Python floats) and rounded to T once, as PyTorch does with scalars.
#include <cmath>
#include <type_traits>
#include "kernels/kernels.h"

namespace fastnn {

// Optimizer steps give each thread one even range of the flat buffer (whole cache lines), not
// a whole number of 16K-value chunks: the backward GEMMs split each weight gradient by rows,
// so even ranges keep most of what a thread updates in the cache of the core that wrote it
// (measured, 784-128-64-10 at batch 32 on 2 threads: the SGD step took 82 ms of an epoch with
// 16K chunks, 4 of 7 on the first thread, which handed it ~24 rows of dW1 written by the other
// core; 65 ms with even ranges).
static idx opt_chunk(idx n) {
  const int nt = threads_for(n, kElementwiseChunk);
  return ((n + nt - 1) / nt + 15) / 16 * 16;
}

// One chunk of the SGD update with the options fixed at compile time and no aliasing, so the
// loop has no branches and vectorises (measured: 4x faster than one loop testing the options
// per element, which was 10% of a fused training step). Same operations, same order.
template <class T, bool kDecay, bool kMomentum, bool kNesterov, bool kFirst>
FASTNN_ELEMENTWISE_CLONES
void sgd_chunk(T* __restrict param, const T* __restrict grad, T* __restrict buf, idx b, idx e,
               T wd, T mom, T one_m_damp, T neg_lr) {
  for (idx i = b; i < e; ++i) {
    T g = grad[i];
    if constexpr (kDecay) g = g + wd * param[i];
    if constexpr (kMomentum) {
      // PyTorch's first step copies the gradient into the buffer (no dampening).
      const T v = kFirst ? g : buf[i] * mom + one_m_damp * g;
      buf[i] = v;
      g = kNesterov ? g + mom * v : v;
    }
    param[i] = param[i] + neg_lr * g;
  }
}

// Calls f(std::bool_constant<a>{}, ...) for runtime flags: one instantiation per combination.
template <class F>
void with_flags(F&& f) { f(); }
template <class F, class... Rest>
void with_flags(F&& f, bool flag, Rest... rest) {
  if (flag) with_flags([&](auto... c) { f(std::true_type{}, c...); }, rest...);
  else with_flags([&](auto... c) { f(std::false_type{}, c...); }, rest...);
}

template <class T>
void sgd_step(T* param, const T* grad, T* buf, idx n, double lr, double momentum,
              double dampening, bool nesterov, double weight_decay, bool first_step) {
  const T wd = T(weight_decay), mom = T(momentum), one_m_damp = T(1.0 - dampening), neg_lr = T(-lr);
  const bool has_mom = momentum != 0;
  with_flags([&](auto decay, auto use_mom, auto nest, auto first) {
    parallel_chunks(n, opt_chunk(n), [&](idx b, idx e) {
      sgd_chunk<T, decay, use_mom, nest, first>(param, grad, buf, b, e, wd, mom, one_m_damp, neg_lr);
    });
  }, weight_decay != 0, has_mom, has_mom && nesterov, has_mom && first_step);
}

// One chunk of the Adam update, options fixed at compile time and no aliasing so the loop
// vectorises (sqrt and division are correctly rounded at every width: same bits). Measured,
// 109K parameters on 2 threads: 178 µs per step as a scalar loop testing the options inside,
// 35 µs like this (with -fno-math-errno, see CMakeLists.txt).
template <class T, bool kDecay, bool kDecoupled>
FASTNN_ELEMENTWISE_CLONES
void adam_chunk(T* __restrict param, const T* __restrict grad, T* __restrict m, T* __restrict v,
                idx b, idx e, T w1, T b2, T w2, T t_eps, T neg_step_size, T t_bc2_sqrt, T wd,
                T decay) {
  for (idx i = b; i < e; ++i) {
    T g = grad[i];
    if constexpr (kDecay) {
      if constexpr (kDecoupled) param[i] = param[i] * decay;
      else g = g + wd * param[i];
    }
    m[i] = m[i] + w1 * (g - m[i]);          // exp_avg.lerp_(grad, 1 − β1)
    v[i] = v[i] * b2 + (w2 * g) * g;        // exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2)
    const T denom = std::sqrt(v[i]) / t_bc2_sqrt + t_eps;
    param[i] = param[i] + (neg_step_size * m[i]) / denom;
  }
}

template <class T>
void adam_step(T* param, const T* grad, T* m, T* v, idx n, long step, double lr, double beta1,
               double beta2, double eps, double weight_decay, bool decoupled) {
  const double bc1 = 1.0 - std::pow(beta1, (double)step);
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2, (double)step));
  const T w1 = T(1.0 - beta1), b2 = T(beta2), w2 = T(1.0 - beta2), t_eps = T(eps);
  const T neg_step_size = T(-(lr / bc1)), t_bc2_sqrt = T(bc2_sqrt), wd = T(weight_decay);
  const T decay = T(1.0 - lr * weight_decay);  // AdamW: param *= 1 − lr·wd
  with_flags([&](auto dec, auto decoupled_wd) {
    parallel_chunks(n, opt_chunk(n), [&](idx b, idx e) {
      adam_chunk<T, dec, decoupled_wd>(param, grad, m, v, b, e, w1, b2, w2, t_eps, neg_step_size,
                                       t_bc2_sqrt, wd, decay);
    });
  }, weight_decay != 0, decoupled);
}

// One chunk of the RMSprop update, vectorised as adam_chunk is (measured, 109K parameters on
// 2 threads: 94 µs per step as a loop testing the options inside, 25 µs like this).
template <class T, bool kDecay, bool kMomentum>
FASTNN_ELEMENTWISE_CLONES
void rmsprop_chunk(T* __restrict param, const T* __restrict grad, T* __restrict sq,
                   T* __restrict buf, idx b, idx e, T a, T one_m_a, T t_eps, T wd, T mom,
                   T neg_lr) {
  for (idx i = b; i < e; ++i) {
    T g = grad[i];
    if constexpr (kDecay) g = g + wd * param[i];
    sq[i] = sq[i] * a + (one_m_a * g) * g;
    const T avg = std::sqrt(sq[i]) + t_eps;
    if constexpr (kMomentum) {
      buf[i] = buf[i] * mom + g / avg;
      param[i] = param[i] + neg_lr * buf[i];
    } else {
      param[i] = param[i] + (neg_lr * g) / avg;
    }
  }
}

template <class T>
void rmsprop_step(T* param, const T* grad, T* sq, T* buf, idx n, double lr, double alpha,
                  double eps, double weight_decay, double momentum) {
  const T a = T(alpha), one_m_a = T(1.0 - alpha), t_eps = T(eps), wd = T(weight_decay);
  const T mom = T(momentum), neg_lr = T(-lr);
  with_flags([&](auto decay, auto use_mom) {
    parallel_chunks(n, opt_chunk(n), [&](idx b, idx e) {
      rmsprop_chunk<T, decay, use_mom>(param, grad, sq, buf, b, e, a, one_m_a, t_eps, wd, mom,
                                        neg_lr);
    });
  }, weight_decay != 0, momentum > 0);
}

#define FASTNN_INSTANTIATE(T)                                                                 \
  template void sgd_step<T>(T*, const T*, T*, idx, double, double, double, bool, double, bool); \
  template void adam_step<T>(T*, const T*, T*, T*, idx, long, double, double, double, double,  \
                             double, bool);                                                   \
  template void rmsprop_step<T>(T*, const T*, T*, T*, idx, double, double, double, double, double);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
