// Vectorised float exp, sigmoid, tanh and softmax rows, written once over a small SIMD traits
// struct `V` (vmath_avx2.cpp and vmath_avx512.cpp each define V and include this file inside an
// anonymous namespace, so each gets its own copy compiled with its own ISA flags).
// Uses nothing but V and plain arithmetic: no std:: templates, which would be inline functions
// with external linkage and could leak AVX instructions into code that runs on any CPU.
//
// exp(x): Cody-Waite range reduction x = n*ln2 + r with |r| <= ln2/2, then e^r = 1 + r q(r)
// with q the degree-6 Taylor polynomial of (e^r - 1)/r (truncation error < 6e-9 relative, well
// under one float ulp), then p * 2^n. tanh shares both steps.
#pragma once

// y = n ln2 + r with n integral and |r| <= ln2/2; ln2 = hi + lo, hi exact in few bits, so
// n * hi is exact for the n that occur here.
template <class V>
inline typename V::reg reduce_ln2(typename V::reg y, typename V::reg& n) {
  n = V::round(V::mul(y, V::set1(1.44269504088896341f)));  // y / ln 2
  const auto r = V::fnmadd(n, V::set1(0.693359375f), y);
  return V::fnmadd(n, V::set1(-2.12194440e-4f), r);
}

// (e^r - 1) / r for |r| <= ln2/2: 1 + r/2 + r^2/6 + ... + r^6/5040, by Horner.
template <class V>
inline typename V::reg expm1_over_r(typename V::reg r) {
  auto q = V::set1(1.0f / 5040.0f);
  q = V::fmadd(q, r, V::set1(1.0f / 720.0f));
  q = V::fmadd(q, r, V::set1(1.0f / 120.0f));
  q = V::fmadd(q, r, V::set1(1.0f / 24.0f));
  q = V::fmadd(q, r, V::set1(1.0f / 6.0f));
  q = V::fmadd(q, r, V::set1(0.5f));
  return V::fmadd(q, r, V::set1(1.0f));
}

// e^x for x clamped to [lo, hi] (NaN passes: min/max return their second operand on NaN) as
// p · 2^n, p = e^r: vexp, vexp_nonpos and vsigmoid scale p each as their range allows.
template <class V>
inline typename V::reg exp_parts(typename V::reg x_in, float lo, float hi, typename V::reg& n) {
  const auto x = V::min(V::set1(hi), V::max(V::set1(lo), x_in));
  const auto r = reduce_ln2<V>(x, n);
  return V::fmadd(expm1_over_r<V>(r), r, V::set1(1.0f));  // e^r
}

// Inputs are clamped to [-87, 89] first: e^89 overflows to inf as std::exp does; NaN passes
// through the clamp and the final select.
template <class V>
inline typename V::reg vexp(typename V::reg x_in) {
  typename V::reg n;
  const auto p = exp_parts<V>(x_in, -87.0f, 89.0f, n);
  // p * 2^n (overflowing to inf as IEEE does). Results below 1.7e-38 (x < -87) are flushed to
  // exactly 0: the input was clamped at -87 so that no subnormal is ever formed, since each one
  // costs a microcode assist of ~100 cycles (measured: softmax rows of 10, whose padding lanes
  // take e^-inf, ran 10x slower).
  return V::select_lt(x_in, V::set1(-87.0f), V::set1(0.0f), V::scale2(p, n));
}

// vexp for x <= 0 (softmax's x - max): the result's 2^n is then a normal float (n in [-126, 0]),
// so p · 2^n is one multiply that rounds once, as vexp's two factors round once: the same bits
// with 5 fewer operations. NaN passes; below -87 the result is flushed to 0, as vexp flushes.
template <class V>
inline typename V::reg vexp_nonpos(typename V::reg x_in) {
  typename V::reg n;
  const auto p = exp_parts<V>(x_in, -87.0f, 0.0f, n);
  return V::select_lt(x_in, V::set1(-87.0f), V::set1(0.0f), V::mul(p, V::pow2(n)));
}

// 1 / (1 + e^-x), with 1/d formed as a reciprocal estimate good to 2^-14 (V::rcp) refined by
// one Newton step, r + r (1 - d r): within 3 ulp at a fraction of a division's cost. d = 1 + e^-x >= 1, so nothing cancels. Below x = -87 the
// result (< 1.7e-38) is flushed to exactly 0, as vexp flushes: forming it would take subnormal
// arithmetic (a microcode assist each) and inf * 0 in the Newton step.
//
// e^-x here needs no more than 1 + e^-x keeps: -x is clamped to [-80, 88] (below, e^-x < 2^-24
// and 1 + e^-x rounds to 1 either way; above, x < -87 gives 0 below), so 2^n is one normal
// float and p · 2^n one exact multiply: vexp's two-factor scaling and its flush (7 of the ~50
// operations) are not needed, and every value comes out as before. Measured as above: 20.9 →
// 14.8 cycles per 8 floats.
template <class V>
inline typename V::reg vsigmoid(typename V::reg x) {
  typename V::reg n;
  const auto p = exp_parts<V>(V::sub(V::set1(0.0f), x), -80.0f, 88.0f, n);
  const auto d = V::add(V::set1(1.0f), V::mul(p, V::pow2(n)));  // n in [-116, 127]
  const auto r = V::rcp(d);
  const auto y = V::fmadd(r, V::fnmadd(d, r, V::set1(1.0f)), r);  // r + r (1 - d r)
  return V::select_lt(x, V::set1(-87.0f), V::set1(0.0f), y);  // NaN: the compare fails
}

// tanh(x) = sign(x) * d / (d + 2) with d = e^{2|x|} - 1, computed without cancellation as
// Sleef and fdlibm do for expm1: 2|x| = n ln2 + r with |r| <= ln2/2 and e^r - 1 = r q(r); then
// d = 2^n - 1 + 2^n r q(r), exact for n = 0 and free of cancellation for n >= 1. One formula
// for every x, a few ulp everywhere, including near 0 where 1 - 2/(e^{2x} + 1) would lose
// digits. |x| is capped at 9, beyond which tanh rounds to 1 in float.
template <class V>
inline typename V::reg vtanh(typename V::reg x) {
  using R = typename V::reg;
  const R ax = V::min(V::set1(9.0f), V::abs(x));  // NaN passes through
  R n;
  const R r = reduce_ln2<V>(V::add(ax, ax), n);
  const R q = expm1_over_r<V>(r);
  const R p2 = V::pow2(n);  // n in [0, 26]
  const R d = V::fmadd(p2, V::mul(r, q), V::sub(p2, V::set1(1.0f)));
  const R s = V::add(d, V::set1(2.0f));  // in [2, e^18]: the reciprocal needs no cap
  const R rs = V::rcp(s);
  return V::copysign(V::mul(d, V::fmadd(rs, V::fnmadd(s, rs, V::set1(1.0f)), rs)), x);
}

// out = f(x), four vectors a step: each f is one long chain of dependent operations, and four
// side by side in the loop's body let the core overlap them (AVX2, Zen 3, 4096 floats in L1,
// the fastest of 300 rounds alternating: sigmoid 14.8 → 13.9 cycles per 8 floats, tanh 18.1 →
// 16.5; the medians 5–10% apart). The same operations on every value: the same results.
template <class V, class F>
inline void vmap(float* out, const float* x, long long n, F f) {
  long long i = 0;
  for (; i + 4 * V::W <= n; i += 4 * V::W) {
    const auto y0 = f(V::load(x + i)), y1 = f(V::load(x + i + V::W));
    const auto y2 = f(V::load(x + i + 2 * V::W)), y3 = f(V::load(x + i + 3 * V::W));
    V::store(out + i, y0), V::store(out + i + V::W, y1);
    V::store(out + i + 2 * V::W, y2), V::store(out + i + 3 * V::W, y3);
  }
  for (; i + V::W <= n; i += V::W) V::store(out + i, f(V::load(x + i)));
  if (i < n) V::store_tail(out + i, f(V::load_tail(x + i, (int)(n - i), 0.0f)), (int)(n - i));
}

// e^(x - max) over one row of C values, stored in y (when y is not null) but for the last
// partial vector, which is returned in a register with the row's max and sum: reloading it
// right after its partial store would stall on store forwarding, which masked and split
// accesses do not get (measured: softmax rows of 10 ran 2x slower). The sum is lane-wise, then across lanes in
// a fixed order. Lanes past the row read -inf, whose exponential is exactly 0, so they add
// nothing.
template <class V>
struct ExpRow {
  typename V::reg tail_e;
  float max, sum;
};

template <class V>
inline ExpRow<V> vexp_row(float* y, const float* x, long long C) {
  using R = typename V::reg;
  const float neg_inf = -__builtin_inff();
  const long long full = C - C % V::W;
  const int tail = (int)(C - full);
  R m = V::set1(neg_inf);
  for (long long c = 0; c < full; c += V::W) m = V::max(m, V::load(x + c));
  const R xt = tail ? V::load_tail(x + full, tail, neg_inf) : m;
  const float mx = V::hmax(V::max(m, xt));
  const R vmx = V::set1(mx);
  R s = V::set1(0.0f);
  for (long long c = 0; c < full; c += V::W) {
    const R e = vexp_nonpos<V>(V::sub(V::load(x + c), vmx));
    if (y) V::store(y + c, e);
    s = V::add(s, e);
  }
  const R et = tail ? vexp_nonpos<V>(V::sub(xt, vmx)) : V::set1(0.0f);
  return {et, mx, V::hsum(V::add(s, et))};
}

// One softmax row: e^(x - max) / Σ, as the scalar kernel forms it (e times 1/sum).
template <class V>
inline void vsoftmax_row(float* y, const float* x, long long C) {
  const ExpRow<V> r = vexp_row<V>(y, x, C);
  const auto inv = V::set1(1.0f / r.sum);
  const long long full = C - C % V::W;
  const int tail = (int)(C - full);
  for (long long c = 0; c < full; c += V::W) V::store(y + c, V::mul(V::load(y + c), inv));
  if (tail) V::store_tail(y + full, V::mul(r.tail_e, inv), tail);
}

// One cross-entropy row: its max and Σ e^(x - max) (the caller forms the loss with a log), and
// when d is not null the gradient d = softmax(x) * scale, minus scale at the target, as the
// scalar kernel forms it ((e * (1/sum)) * scale).
template <class V>
inline void vcross_entropy_row(float* d, float* max, float* sum, const float* x, long long C,
                               long long target, float scale) {
  const ExpRow<V> r = vexp_row<V>(d, x, C);
  *max = r.max;
  *sum = r.sum;
  if (!d) return;
  const auto inv = V::set1(1.0f / r.sum), sc = V::set1(scale);
  const long long full = C - C % V::W;
  const int tail = (int)(C - full);
  for (long long c = 0; c < full; c += V::W) V::store(d + c, V::mul(V::mul(V::load(d + c), inv), sc));
  if (tail) V::store_tail(d + full, V::mul(V::mul(r.tail_e, inv), sc), tail);
  d[target] -= scale;
}
