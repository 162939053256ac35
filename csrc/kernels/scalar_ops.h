// The one list of elementwise activations, and their scalar functions and derivatives: used
// by the elementwise kernels (activations.cpp), the GEMM epilogue (gemm_blocked.cpp,
// gemm_ref.cpp), the plan's activation op (plan/ops.cpp) and the bindings, which define
// <name>_forward / <name>_backward for every entry. Python layers name their kernel by `name`
// (fastnn/layers/activations.py). Derivatives are written in terms of what backward keeps: x
// for ReLU/LeakyReLU/GELU, y for sigmoid/tanh.
#pragma once
#include <cmath>
#include <cstring>

namespace fastnn {

enum class Act { None, ReLU, LeakyReLU, Sigmoid, Tanh, GELU, Step };

struct ActInfo {
  Act act;
  const char* name;        // the kernels are <name>_forward and <name>_backward
  const char* param;       // the name of its one parameter (Python keyword), or nullptr
  double param_default;
  bool backward_from_y;    // backward reads the forward output y (else the input x)
  bool has_backward;       // Step has none: its derivative is 0 wherever it exists
};

inline constexpr ActInfo kActivations[] = {
    {Act::ReLU, "relu", nullptr, 0.0, false, true},
    {Act::LeakyReLU, "leaky_relu", "negative_slope", 0.01, false, true},
    {Act::Sigmoid, "sigmoid", nullptr, 0.0, true, true},
    {Act::Tanh, "tanh", nullptr, 0.0, true, true},
    {Act::GELU, "gelu", nullptr, 0.0, false, true},
    {Act::Step, "step", "threshold", 0.0, false, false},
};

// The entry named `name`, or nullptr.
inline const ActInfo* find_activation(const char* name) {
  for (const ActInfo& a : kActivations)
    if (std::strcmp(a.name, name) == 0) return &a;
  return nullptr;
}

// NaN passes through (written as "x < 0 ? 0 : x", not "x > 0 ? x : 0", which would turn it
// into 0 and hide a diverged network), as in PyTorch and np.maximum.
template <class T> inline T relu(T x) { return x < T(0) ? T(0) : x; }
// ReLU'(0) = 0, as PyTorch; at NaN 1, as PyTorch's threshold_backward (x <= 0 ? 0 : grad).
template <class T> inline T relu_grad(T x) { return x <= T(0) ? T(0) : T(1); }

template <class T> inline T leaky_relu(T x, T slope) { return x > T(0) ? x : x * slope; }
template <class T> inline T leaky_relu_grad(T x, T slope) { return x > T(0) ? T(1) : slope; }

// Stable for any x: never computes exp of a large positive number.
template <class T> inline T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}
template <class T> inline T sigmoid_grad_from_y(T y) { return y * (T(1) - y); }

template <class T> inline T tanh_(T x) { return std::tanh(x); }
template <class T> inline T tanh_grad_from_y(T y) { return T(1) - y * y; }

// Exact GELU, x * Phi(x), as PyTorch's default (approximate="none").
template <class T> inline T gelu(T x) {
  return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
}
template <class T> inline T gelu_grad(T x) {
  const T cdf = T(0.5) * (T(1) + std::erf(x * T(0.70710678118654752440)));
  const T pdf = std::exp(T(-0.5) * x * x) * T(0.39894228040143267794);
  return cdf + x * pdf;
}

// The GEMM epilogue's activation: only entries without a parameter (the bindings check).
template <class T> inline T apply_act(Act a, T x) {
  switch (a) {
    case Act::ReLU: return relu(x);
    case Act::Sigmoid: return sigmoid(x);
    case Act::Tanh: return tanh_(x);
    case Act::GELU: return gelu(x);
    default: return x;
  }
}

}  // namespace fastnn
