// Uniform floats from NumPy's PCG64, bit for bit: what np.random.Generator(PCG64).random(n,
// dtype) returns, and the generator state it leaves. Dropout draws a value per activation, and
// NumPy draws them on one thread at ~1.6 ns each (18 ms of a training epoch at batch 100 with
// two Dropout layers); this fills the same values on all threads.
//
// PCG64 (O'Neill's pcg_setseq_128_xsl_rr_64, as numpy/random/src/pcg64): a 128-bit LCG,
//   state ← state · M + inc,  output = rotr64(hi(state) ^ lo(state), state >> 122)
// (the step comes before the output). A float32 takes 32 bits: the low half of a 64-bit
// output first, the high half kept (has_uint32, uinteger) for the next; float32 = (u32 >> 8)
// · 2⁻²⁴. A float64 takes a whole output: (u64 >> 11) · 2⁻⁵³, leaving a kept half alone.
// An LCG can jump ahead k steps in O(log k), so each thread (and each of several interleaved
// lanes per thread, which hides the multiply latency of the chain) starts at its own output.
#include "kernels/kernels.h"

namespace fastnn {

namespace {

using u128 = unsigned __int128;
constexpr u128 kMult = ((u128)2549297995355413924ULL << 64) | 4865540595714422341ULL;

inline std::uint64_t output(u128 s) {
  const std::uint64_t x = (std::uint64_t)(s >> 64) ^ (std::uint64_t)s;
  const unsigned rot = (unsigned)(s >> 122);
  return (x >> rot) | (x << ((64 - rot) & 63));
}

// The state after `delta` steps (Brown, "Random number generation with arbitrary strides").
u128 advance(u128 state, u128 inc, std::uint64_t delta) {
  u128 acc_mult = 1, acc_plus = 0, cur_mult = kMult, cur_plus = inc;
  for (; delta; delta >>= 1) {
    if (delta & 1) {
      acc_mult *= cur_mult;
      acc_plus = acc_plus * cur_mult + cur_plus;
    }
    cur_plus = (cur_mult + 1) * cur_plus;
    cur_mult *= cur_mult;
  }
  return acc_mult * state + acc_plus;
}

template <class T>
inline void put(T* out, idx k, std::uint64_t v) {
  if constexpr (sizeof(T) == 4) {
    out[2 * k] = (float)((std::uint32_t)v >> 8) * (1.0f / 16777216.0f);
    out[2 * k + 1] = (float)((std::uint32_t)(v >> 32) >> 8) * (1.0f / 16777216.0f);
  } else {
    out[k] = (double)(v >> 11) * (1.0 / 9007199254740992.0);
  }
}

// Outputs [k0, k1) of the stream that starts after `state` into out (2 floats or 1 double
// each), in kLanes interleaved chains.
template <class T>
void fill_range(T* out, u128 state, u128 inc, idx k0, idx k1) {
  constexpr int kLanes = 4;
  const idx len = k1 - k0, per = len / kLanes;
  u128 s[kLanes];
  for (int l = 0; l < kLanes; ++l) s[l] = advance(state, inc, (std::uint64_t)(k0 + l * per));
  for (idx i = 0; i < per; ++i)
    for (int l = 0; l < kLanes; ++l) {
      s[l] = s[l] * kMult + inc;
      put(out, k0 + l * per + i, output(s[l]));
    }
  u128 t = advance(state, inc, (std::uint64_t)(k0 + kLanes * per));  // the remainder, in order
  for (idx k = k0 + kLanes * per; k < k1; ++k) {
    t = t * kMult + inc;
    put(out, k, output(t));
  }
}

}  // namespace

template <class T>
void pcg64_uniform(T* out, idx n, Pcg64State& st) {
  u128 state = ((u128)st.state_hi << 64) | st.state_lo;
  const u128 inc = ((u128)st.inc_hi << 64) | st.inc_lo;
  if constexpr (sizeof(T) == 4) {
    if (n > 0 && st.has_uint32) {  // the kept half of the last output comes first
      out[0] = (float)(st.uinteger >> 8) * (1.0f / 16777216.0f);
      st.has_uint32 = false;
      ++out;
      --n;
    }
  }
  const idx whole = sizeof(T) == 4 ? n / 2 : n;  // outputs that fill whole slots
  const int nt = threads_for(whole, 1 << 14);
  parallel_chunks(whole, (whole + nt - 1) / nt, [&](idx k0, idx k1) { fill_range(out, state, inc, k0, k1); });
  state = advance(state, inc, (std::uint64_t)whole);
  if constexpr (sizeof(T) == 4) {
    // NumPy leaves the last output's high half in uinteger once it is used (has_uint32 = 0):
    // the same, so that the two states compare equal
    if (whole > 0) st.uinteger = (std::uint32_t)(output(state) >> 32);
    if (n % 2) {  // an odd count: the low half of one more output, the high half kept
      state = state * kMult + inc;
      const std::uint64_t v = output(state);
      out[n - 1] = (float)((std::uint32_t)v >> 8) * (1.0f / 16777216.0f);
      st.has_uint32 = true;
      st.uinteger = (std::uint32_t)(v >> 32);
    }
  }
  st.state_hi = (std::uint64_t)(state >> 64);
  st.state_lo = (std::uint64_t)state;
}

void pcg64_jump(Pcg64State& st, std::uint64_t delta) {
  const u128 state = ((u128)st.state_hi << 64) | st.state_lo;
  const u128 inc = ((u128)st.inc_hi << 64) | st.inc_lo;
  const u128 t = advance(state, inc, delta);
  st.state_hi = (std::uint64_t)(t >> 64);
  st.state_lo = (std::uint64_t)t;
  st.has_uint32 = false;
  st.uinteger = 0;
}

template void pcg64_uniform<float>(float*, idx, Pcg64State&);
template void pcg64_uniform<double>(double*, idx, Pcg64State&);

}  // namespace fastnn
