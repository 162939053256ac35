// Python bindings of every kernel (fastnn._core.<kernel>): one template per kernel shape —
// elementwise, rows, pointwise loss, optimizer step — and a line per kernel. Argument checks
// are in args.h; the NumPy twins in fastnn/backends/numpy_ref.py take the same arguments and
// raise the same errors.
#include <array>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>
#include <pybind11/stl.h>
#include "gemm/gemm.h"
#include "kernels/kernels.h"
#include "python/args.h"

namespace fastnn {
void bind_kernels(pybind11::module_& m);
}

using namespace fastnn;
using namespace fastnn::py_args;

namespace {

// Converts K inputs to T, each of the shape of the array before it (the output first) and
// not partly overlapping the output; `rows` kernels also need at least one dimension.
template <class T, size_t K>
std::array<py::array_t<T>, K> same_shape_inputs(const char* op, const std::array<const char*, K + 1>& names,
                                                const py::array& out, const std::array<py::handle, K>& in_h,
                                                bool rows) {
  std::array<py::array_t<T>, K> in;
  for (size_t k = 0; k < K; ++k) {
    in[k] = in_arg<T>(op, names[k + 1], in_h[k]);
    if (rows && in[k].ndim() == 0)
      throw py::value_error(cat(op, ": ", names[k + 1], " must have at least 1 dimension, got a scalar"));
    need_same_shape(op, k == 0 ? (rows ? "out" : names[0]) : names[k], k == 0 ? out : py::array(in[k - 1]),
                    names[k + 1], in[k]);
    no_overlap(op, rows ? "out" : names[0], out, names[k + 1], in[k], true);
  }
  return in;
}

// ---- elementwise: out = f(in_1, ..., in_K; param) over arrays of one shape (out may be an input)
template <size_t K, class F>
void elementwise(const char* op, const std::array<const char*, K + 1>& names, py::handle out_h,
                 const std::array<py::handle, K>& in_h, double param, F f) {
  py::array out = out_arg(op, names[0], out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto in = same_shape_inputs<T, K>(op, names, out, in_h, false);
    std::array<const T*, K> p;
    for (size_t k = 0; k < K; ++k) p[k] = cptr<T>(in[k]);
    T* o = ptr<T>(out);
    const idx n = out.size();
    return nogil([&] { f(o, p, param, n); return 0; });
  });
}

// Every activation of the one list (scalar_ops.h): <name>_forward(out, x[, param]) and, when it
// has one, <name>_backward(dx, dout, x or y[, param]).
void def_activations(py::module_& m) {
  for (const ActInfo& a : kActivations) {
    const std::string fwd = std::string(a.name) + "_forward", bwd = std::string(a.name) + "_backward";
    const Act act = a.act;
    const char* saved = a.backward_from_y ? "y" : "x";
    auto f = [act](auto* o, const auto& in, double param, idx n) {
      using T = std::remove_pointer_t<decltype(o)>;
      activation_forward<T>(act, o, in[0], T(param), n);
    };
    auto b = [act](auto* o, const auto& in, double param, idx n) {
      using T = std::remove_pointer_t<decltype(o)>;
      activation_backward<T>(act, o, in[0], in[1], T(param), n);
    };
    const std::string doc = a.name + std::string(": out = f(x) elementwise, in place allowed");
    if (a.param) {
      m.def(fwd.c_str(), [fwd, f](py::handle out, py::handle x, double param) {
        elementwise<1>(fwd.c_str(), {"out", "x"}, out, {x}, param, f);
      }, py::arg("out"), py::arg("x"), py::arg(a.param) = a.param_default, doc.c_str());
      if (a.has_backward)
        m.def(bwd.c_str(), [bwd, saved, b](py::handle dx, py::handle dout, py::handle s, double param) {
          elementwise<2>(bwd.c_str(), {"dx", "dout", saved}, dx, {dout, s}, param, b);
        }, py::arg("dx"), py::arg("dout"), py::arg(saved), py::arg(a.param) = a.param_default);
    } else {
      m.def(fwd.c_str(), [fwd, f](py::handle out, py::handle x) {
        elementwise<1>(fwd.c_str(), {"out", "x"}, out, {x}, 0.0, f);
      }, py::arg("out"), py::arg("x"), doc.c_str());
      if (a.has_backward)
        m.def(bwd.c_str(), [bwd, saved, b](py::handle dx, py::handle dout, py::handle s) {
          elementwise<2>(bwd.c_str(), {"dx", "dout", saved}, dx, {dout, s}, 0.0, b);
        }, py::arg("dx"), py::arg("dout"), py::arg(saved));
    }
  }
}

// ---- rows: softmax over the last axis, (…, C) treated as rows of C
template <size_t K, class F>
void rows(const char* op, const std::array<const char*, K + 1>& names, py::handle out_h,
          const std::array<py::handle, K>& in_h, F f) {
  py::array out = out_arg(op, names[0], out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto in = same_shape_inputs<T, K>(op, names, out, in_h, true);
    std::array<const T*, K> p;
    for (size_t k = 0; k < K; ++k) p[k] = cptr<T>(in[k]);
    const idx C = in[0].shape(in[0].ndim() - 1), N = C ? in[0].size() / C : 0;
    T* o = ptr<T>(out);
    return nogil([&] { f(o, p, N, C); return 0; });
  });
}

// ---- gemm and linear
void gemm_py(py::handle c_h, py::handle a_h, py::handle b_h, bool trans_a, bool trans_b, double alpha,
             double beta, py::handle bias_h, const std::string& activation, bool reference) {
  const char* op = reference ? "gemm_reference" : "gemm";
  py::array c = out_arg(op, "c", c_h);
  const ActInfo* info = activation == "none" ? nullptr : find_activation(activation.c_str());
  if (activation != "none" && (!info || info->param)) {
    std::string names = "'none'";
    for (const ActInfo& a : kActivations)
      if (!a.param) names += cat(", '", a.name, "'");
    throw py::value_error(cat(op, ": activation must be one of ", names, ", got '", activation, "'"));
  }
  const Act act = info ? info->act : Act::None;
  by_dtype(c, [&](auto tag) {
    using T = decltype(tag);
    auto a = in_arg<T>(op, "a", a_h);
    auto b = in_arg<T>(op, "b", b_h);
    need_ndim(op, "a", a, 2, "pass a matrix");
    need_ndim(op, "b", b, 2, "pass a matrix");
    need_ndim(op, "c", c, 2, "pass a matrix");
    const idx M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
    const idx Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
    if (K != Kb)
      throw py::value_error(cat(op, ": op(a) is ", M, "x", K, " and op(b) is ", Kb, "x", N, " (a ", shape_of(a),
                                ", trans_a=", trans_a, "; b ", shape_of(b), ", trans_b=", trans_b,
                                "); inner dimensions must agree"));
    if (c.shape(0) != M || c.shape(1) != N)
      throw py::value_error(cat(op, ": c has shape ", shape_of(c), " but op(a)·op(b) is (", M, ", ", N,
                                "); allocate c with that shape"));
    py::array_t<T> bias;
    if (!bias_h.is_none()) {
      bias = in_arg<T>(op, "bias", bias_h);
      if (bias.ndim() != 1 || bias.shape(0) != N)
        throw py::value_error(cat(op, ": bias has shape ", shape_of(bias), " but c has ", N,
                                  " columns; pass a bias of shape (", N, ",)"));
    }
    no_overlap(op, "c", c, "a", a, false);
    no_overlap(op, "c", c, "b", b, false);
    T* cp = ptr<T>(c);
    const T *ap = cptr<T>(a), *bp = cptr<T>(b), *biasp = bias_h.is_none() ? nullptr : cptr<T>(bias);
    const idx lda = a.shape(1), ldb = b.shape(1), ldc = N;
    auto fn = reference ? gemm_ref<T> : gemm<T>;
    return nogil([&] { fn(trans_a, trans_b, M, N, K, T(alpha), ap, lda, bp, ldb, T(beta), cp, ldc, biasp, act); return 0; });
  });
}

struct LinearShape { idx N, C, OC; };

template <class T>
LinearShape check_linear(const char* op, const py::array_t<T>& x, const py::array_t<T>& w) {
  need_ndim(op, "weight", w, 2, "weight is (out_features, in_features)");
  if (x.ndim() != 2)
    throw py::value_error(cat(op, ": x must be 2-D (N, ", w.shape(1), "), got shape ", shape_of(x),
                              x.ndim() > 2 ? "; flatten it first" : "; reshape it to (N, features)"));
  if (x.shape(1) != w.shape(1))
    throw py::value_error(cat(op, ": expected input with ", w.shape(1), " features, got shape ", shape_of(x),
                              "; the weight is ", shape_of(w)));
  return {x.shape(0), x.shape(1), w.shape(0)};
}

template <class T>
py::array_t<T> vector_arg(const char* op, const char* name, py::handle h, idx n) {
  py::array_t<T> b;
  if (h.is_none()) return b;
  b = in_arg<T>(op, name, h);
  if (b.ndim() != 1 || b.shape(0) != n)
    throw py::value_error(cat(op, ": ", name, " has shape ", shape_of(b), "; expected (", n, ",)"));
  return b;
}

void linear_forward_py(py::handle out_h, py::handle x_h, py::handle w_h, py::handle b_h) {
  const char* op = "linear_forward";
  py::array out = out_arg(op, "out", out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    auto w = in_arg<T>(op, "weight", w_h);
    const LinearShape s = check_linear<T>(op, x, w);
    auto b = vector_arg<T>(op, "bias", b_h, s.OC);
    need_shape2(op, "out", out, s.N, s.OC);
    no_overlap(op, "out", out, "x", x, false);
    no_overlap(op, "out", out, "weight", w, false);
    if (!b_h.is_none()) no_overlap(op, "out", out, "bias", b, false);
    T* o = ptr<T>(out);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w), *bp = b_h.is_none() ? nullptr : cptr<T>(b);
    return nogil([&] { linear_forward<T>(o, xp, wp, bp, s.N, s.C, s.OC); return 0; });
  });
}

void linear_backward_py(py::handle dx_h, py::handle dw_h, py::handle db_h, py::handle dout_h, py::handle x_h,
                        py::handle w_h, bool accumulate) {
  const char* op = "linear_backward";
  py::array dw = out_arg(op, "dweight", dw_h);
  py::object dx_o = opt_out_arg(op, "dx", dx_h, dw);
  py::object db_o = opt_out_arg(op, "dbias", db_h, dw);
  by_dtype(dw, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    auto w = in_arg<T>(op, "weight", w_h);
    auto dout = in_arg<T>(op, "dout", dout_h);
    const LinearShape s = check_linear<T>(op, x, w);
    need_shape2(op, "dout", dout, s.N, s.OC);
    need_shape2(op, "dweight", dw, s.OC, s.C);
    if (!db_o.is_none()) {
      auto db = py::reinterpret_borrow<py::array>(db_o);
      if (db.ndim() != 1 || db.shape(0) != s.OC)
        throw py::value_error(cat(op, ": dbias has shape ", shape_of(db), "; expected (", s.OC, ",)"));
      for (auto [n, a] : {std::pair<const char*, py::array>{"dout", dout}, {"x", x}, {"weight", w}, {"dweight", dw}})
        no_overlap(op, "dbias", db, n, a, false);
    }
    if (!dx_o.is_none()) {
      auto dx = py::reinterpret_borrow<py::array>(dx_o);
      need_shape2(op, "dx", dx, s.N, s.C);
      for (auto [n, a] : {std::pair<const char*, py::array>{"dout", dout}, {"x", x}, {"weight", w}, {"dweight", dw}})
        no_overlap(op, "dx", dx, n, a, false);
      if (!db_o.is_none()) no_overlap(op, "dx", dx, "dbias", py::reinterpret_borrow<py::array>(db_o), false);
    }
    for (auto [n, a] : {std::pair<const char*, py::array>{"dout", dout}, {"x", x}, {"weight", w}})
      no_overlap(op, "dweight", dw, n, a, false);
    T *dxp = ptr_or_null<T>(dx_o), *dwp = ptr<T>(dw), *dbp = ptr_or_null<T>(db_o);
    const T *dop = cptr<T>(dout), *xp = cptr<T>(x), *wp = cptr<T>(w);
    return nogil([&] { linear_backward<T>(dxp, dwp, dbp, dop, xp, wp, s.N, s.C, s.OC, accumulate); return 0; });
  });
}

// ---- images (NCHW): convolution, pooling, batch normalization
void need_ndim4(const char* op, const char* name, const py::array& a) {
  if (a.ndim() != 4)
    throw py::value_error(cat(op, ": ", name, " must be 4-D (N, C, H, W), got shape ", shape_of(a)));
}

// The geometry of conv2d(x, weight) and its checks against the arrays.
Conv2d conv_geometry(const char* op, const py::array& x, const py::array& w, py::handle stride_h,
                     py::handle padding_h, py::handle dilation_h, idx groups) {
  need_ndim4(op, "x", x);
  if (w.ndim() != 4)
    throw py::value_error(cat(op, ": weight must be 4-D (out_channels, in_channels/groups, kH, kW), got shape ",
                              shape_of(w)));
  return conv_geometry_of(op, x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(1), w.shape(2),
                          w.shape(3), stride_h, padding_h, dilation_h, groups);
}

// A convolution's fused activation: "none" or "relu".
Act conv_act(const char* op, const std::string& name) {
  if (name == "none") return Act::None;
  if (name == "relu") return Act::ReLU;
  throw py::value_error(cat(op, ": activation must be 'none' or 'relu', got '", name, "'"));
}

void conv2d_forward_py(py::handle out_h, py::handle x_h, py::handle w_h, py::handle b_h, py::handle stride,
                       py::handle padding, py::handle dilation, idx groups, const std::string& activation) {
  const char* op = "conv2d_forward";
  py::array out = out_arg(op, "out", out_h);
  const Act act = conv_act(op, activation);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    auto w = in_arg<T>(op, "weight", w_h);
    const Conv2d s = conv_geometry(op, x, w, stride, padding, dilation, groups);
    auto b = vector_arg<T>(op, "bias", b_h, s.OC);
    if (out.ndim() != 4 || out.shape(0) != s.N || out.shape(1) != s.OC || out.shape(2) != s.OH || out.shape(3) != s.OW)
      throw py::value_error(cat(op, ": out has shape ", shape_of(out), "; expected (", s.N, ", ", s.OC, ", ", s.OH,
                                ", ", s.OW, ")"));
    no_overlap(op, "out", out, "x", x, false);
    no_overlap(op, "out", out, "weight", w, false);
    if (!b_h.is_none()) no_overlap(op, "out", out, "bias", b, false);
    T* o = ptr<T>(out);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w), *bp = b_h.is_none() ? nullptr : cptr<T>(b);
    return nogil([&] { conv2d_forward<T>(o, xp, wp, bp, s, act); return 0; });
  });
}

void conv2d_backward_py(py::handle dx_h, py::handle dw_h, py::handle db_h, py::handle dout_h, py::handle x_h,
                        py::handle w_h, py::handle stride, py::handle padding, py::handle dilation, idx groups,
                        bool accumulate, const std::string& activation, py::handle y_h) {
  const char* op = "conv2d_backward";
  const Act act = conv_act(op, activation);
  if (act != Act::None && y_h.is_none())
    throw py::value_error(cat(op, ": activation='", activation, "' needs y, the forward output it masks by"));
  py::array dw = out_arg(op, "dweight", dw_h);
  py::object dx_o = opt_out_arg(op, "dx", dx_h, dw);
  py::object db_o = opt_out_arg(op, "dbias", db_h, dw);
  by_dtype(dw, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    auto w = in_arg<T>(op, "weight", w_h);
    auto dout = in_arg<T>(op, "dout", dout_h);
    const Conv2d s = conv_geometry(op, x, w, stride, padding, dilation, groups);
    if (dout.ndim() != 4 || dout.shape(0) != s.N || dout.shape(1) != s.OC || dout.shape(2) != s.OH ||
        dout.shape(3) != s.OW)
      throw py::value_error(cat(op, ": dout has shape ", shape_of(dout), "; expected (", s.N, ", ", s.OC, ", ",
                                s.OH, ", ", s.OW, ")"));
    need_same_shape(op, "dweight", dw, "weight", w);
    std::vector<std::pair<const char*, py::array>> inputs{{"dout", dout}, {"x", x}, {"weight", w}};
    for (auto& [n, a] : inputs) no_overlap(op, "dweight", dw, n, a, false);
    if (!db_o.is_none()) {
      auto db = py::reinterpret_borrow<py::array>(db_o);
      if (db.ndim() != 1 || db.shape(0) != s.OC)
        throw py::value_error(cat(op, ": dbias has shape ", shape_of(db), "; expected (", s.OC, ",)"));
      for (auto& [n, a] : inputs) no_overlap(op, "dbias", db, n, a, false);
      no_overlap(op, "dbias", db, "dweight", dw, false);
    }
    if (!dx_o.is_none()) {
      auto dx = py::reinterpret_borrow<py::array>(dx_o);
      need_same_shape(op, "dx", dx, "x", x);
      for (auto& [n, a] : inputs) no_overlap(op, "dx", dx, n, a, false);
      no_overlap(op, "dx", dx, "dweight", dw, false);
      if (!db_o.is_none()) no_overlap(op, "dx", dx, "dbias", py::reinterpret_borrow<py::array>(db_o), false);
    }
    py::array_t<T> y;
    if (act != Act::None) {
      y = in_arg<T>(op, "y", y_h);
      need_same_shape(op, "dout", dout, "y", y);
      for (auto [n, a] : {std::pair<const char*, py::object>{"dweight", dw}, {"dx", dx_o}, {"dbias", db_o}})
        if (!a.is_none()) no_overlap(op, n, py::reinterpret_borrow<py::array>(a), "y", y, false);
    }
    T *dxp = ptr_or_null<T>(dx_o), *dwp = ptr<T>(dw), *dbp = ptr_or_null<T>(db_o);
    const T *dop = cptr<T>(dout), *xp = cptr<T>(x), *wp = cptr<T>(w), *yp = act != Act::None ? cptr<T>(y) : nullptr;
    return nogil([&] { conv2d_backward<T>(dxp, dwp, dbp, dop, xp, wp, s, accumulate, act, yp); return 0; });
  });
}

void need_pool_out(const char* op, const char* name, const py::array& a, const Pool2d& s) {
  if (a.ndim() != 4 || a.shape(0) != s.N || a.shape(1) != s.C || a.shape(2) != s.OH || a.shape(3) != s.OW)
    throw py::value_error(cat(op, ": ", name, " has shape ", shape_of(a), "; expected (", s.N, ", ", s.C, ", ", s.OH,
                              ", ", s.OW, ")"));
}

// maxpool2d's argmax: an output of forward (int32, checked, never converted), an input of
// backward (any integer array, converted to int32 C order).
py::array argmax_arg(const char* op, py::handle h, bool output) {
  if (!py::isinstance<py::array>(h))
    throw py::type_error(cat(op, ": argmax must be an int32 numpy array, got ", type_name(h)));
  auto a = py::reinterpret_borrow<py::array>(h);
  const char k = a.dtype().kind();
  if (!output && (k == 'i' || k == 'u'))
    return aligned(py::array_t<std::int32_t, py::array::c_style | py::array::forcecast>::ensure(a));
  if (a.dtype().not_equal(py::dtype::of<std::int32_t>()) || !(a.flags() & py::array::c_style) ||
      (output && !a.writeable()) || !is_aligned(a))
    throw py::type_error(cat(op, ": argmax must be a ", output ? "writeable aligned C-contiguous int32" : "integer",
                             " array, got ", std::string(py::str(a.dtype()))));
  return a;
}

void maxpool2d_forward_py(py::handle out_h, py::handle arg_h, py::handle x_h, py::handle k, py::handle st,
                          py::handle pad) {
  const char* op = "maxpool2d_forward";
  py::array out = out_arg(op, "out", out_h);
  py::array am = argmax_arg(op, arg_h, true);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    need_ndim4(op, "x", x);
    if (x.shape(2) * x.shape(3) > INT32_MAX) throw py::value_error(cat(op, ": an image plane over 2^31 pixels"));
    const Pool2d s = pool_geometry_of(op, x.shape(0), x.shape(1), x.shape(2), x.shape(3), k, st, pad);
    need_pool_out(op, "out", out, s);
    need_pool_out(op, "argmax", am, s);
    no_overlap(op, "out", out, "x", x, false);
    no_overlap(op, "argmax", am, "x", x, false);
    no_overlap(op, "argmax", am, "out", out, false);
    T* o = ptr<T>(out);
    auto* a = static_cast<std::int32_t*>(am.mutable_data());
    const T* xp = cptr<T>(x);
    return nogil([&] { maxpool2d_forward<T>(o, a, xp, s); return 0; });
  });
}

void maxpool2d_backward_py(py::handle dx_h, py::handle dout_h, py::handle arg_h, py::handle k, py::handle st,
                           py::handle pad) {
  const char* op = "maxpool2d_backward";
  py::array dx = out_arg(op, "dx", dx_h);
  py::array am = argmax_arg(op, arg_h, false);
  by_dtype(dx, [&](auto tag) {
    using T = decltype(tag);
    auto dout = in_arg<T>(op, "dout", dout_h);
    need_ndim4(op, "dx", dx);
    const Pool2d s = pool_geometry_of(op, dx.shape(0), dx.shape(1), dx.shape(2), dx.shape(3), k, st, pad);
    need_pool_out(op, "dout", dout, s);
    need_pool_out(op, "argmax", am, s);
    no_overlap(op, "dx", dx, "dout", dout, false);
    no_overlap(op, "dx", dx, "argmax", am, false);
    // every index must point into its plane: dx is written there
    const auto* a = static_cast<const std::int32_t*>(am.data());
    const idx count = am.size(), plane = s.H * s.W;  // (size() multiplies the dims on every call)
    for (idx i = 0; i < count; ++i)
      if (a[i] < 0 || a[i] >= plane)
        throw py::value_error(cat(op, ": argmax[", i, "] = ", a[i], " is outside its ", s.H, "×", s.W, " plane"));
    T* d = ptr<T>(dx);
    const T* g = cptr<T>(dout);
    return nogil([&] { maxpool2d_backward<T>(d, g, a, s); return 0; });
  });
}

void avgpool2d_forward_py(py::handle out_h, py::handle x_h, py::handle k, py::handle st, py::handle pad) {
  const char* op = "avgpool2d_forward";
  py::array out = out_arg(op, "out", out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    need_ndim4(op, "x", x);
    const Pool2d s = pool_geometry_of(op, x.shape(0), x.shape(1), x.shape(2), x.shape(3), k, st, pad);
    need_pool_out(op, "out", out, s);
    no_overlap(op, "out", out, "x", x, false);
    T* o = ptr<T>(out);
    const T* xp = cptr<T>(x);
    return nogil([&] { avgpool2d_forward<T>(o, xp, s); return 0; });
  });
}

void avgpool2d_backward_py(py::handle dx_h, py::handle dout_h, py::handle k, py::handle st, py::handle pad) {
  const char* op = "avgpool2d_backward";
  py::array dx = out_arg(op, "dx", dx_h);
  by_dtype(dx, [&](auto tag) {
    using T = decltype(tag);
    auto dout = in_arg<T>(op, "dout", dout_h);
    need_ndim4(op, "dx", dx);
    const Pool2d s = pool_geometry_of(op, dx.shape(0), dx.shape(1), dx.shape(2), dx.shape(3), k, st, pad);
    need_pool_out(op, "dout", dout, s);
    no_overlap(op, "dx", dx, "dout", dout, false);
    T* d = ptr<T>(dx);
    const T* g = cptr<T>(dout);
    return nogil([&] { avgpool2d_backward<T>(d, g, s); return 0; });
  });
}

// x (N, C, ...) as (N, C, L); a per-channel vector must hold C values.
struct NCL { idx N, C, L; };
NCL ncl_of(const char* op, const py::array& x) {
  if (x.ndim() < 2)
    throw py::value_error(cat(op, ": x must be (N, C) or (N, C, ...), got shape ", shape_of(x)));
  idx L = 1;
  for (py::ssize_t i = 2; i < x.ndim(); ++i) L *= x.shape(i);
  return {x.shape(0), x.shape(1), L};
}

template <class T>
py::array_t<T> channel_arg(const char* op, const char* name, py::handle h, idx C) {
  if (h.is_none()) throw py::type_error(cat(op, ": ", name, " must be an array, got None"));
  return vector_arg<T>(op, name, h, C);
}

void channel_out(const char* op, const char* name, const py::array& a, idx C) {
  if (a.ndim() != 1 || a.shape(0) != C)
    throw py::value_error(cat(op, ": ", name, " has shape ", shape_of(a), "; expected (", C, ",)"));
}

// ---- losses: the gradient output picks the dtype; without one, float64 inputs stay float64
py::array dtype_probe(const char* op, const char* gname, py::handle g_h, py::handle in_h) {
  if (!g_h.is_none()) return out_arg(op, gname, g_h);
  auto a = py::array::ensure(in_h);
  if (a && is_f64(a)) return py::array_t<double>(0);
  return py::array_t<float>(0);
}

double cross_entropy_py(py::handle d_h, py::handle logits_h, py::handle targets_h) {
  const char* op = "cross_entropy_forward";
  py::array probe = dtype_probe(op, "dlogits", d_h, logits_h);
  return by_dtype(probe, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "logits", logits_h);
    if (x.ndim() != 2) throw py::value_error(cat(op, ": logits must be 2-D (N, classes), got shape ", shape_of(x)));
    const idx N = x.shape(0), C = x.shape(1);
    if (C == 0) throw py::value_error(cat(op, ": logits has 0 classes (shape ", shape_of(x), ")"));
    auto t = labels_arg(op, "targets", targets_h);
    if (t.ndim() != 1 || t.shape(0) != N)
      throw py::value_error(cat(op, ": targets has shape ", shape_of(t), " but logits has ", N,
                                " rows; pass one class index per row, shape (", N, ",)"));
    const std::int64_t* tp = t.data();
    for (idx i = 0; i < N; ++i)
      if (tp[i] < 0 || tp[i] >= C)
        throw py::value_error(cat(op, ": targets must be class indices in [0, ", C, "), got ", tp[i],
                                  " at position ", i));
    T* dp = nullptr;
    if (!d_h.is_none()) {
      need_same_shape(op, "dlogits", probe, "logits", x);
      no_overlap(op, "dlogits", probe, "logits", x, true);
      dp = ptr<T>(probe);
    }
    const T* xp = cptr<T>(x);
    return nogil([&] { return cross_entropy_forward<T>(dp, xp, tp, N, C); });
  });
}

// f(grad, input, target, n) over same-shaped input and target.
template <class F>
double pointwise_loss_py(const char* op, const char* gname, const char* iname, py::handle g_h, py::handle in_h,
                         py::handle t_h, bool check_prob, F f) {
  py::array probe = dtype_probe(op, gname, g_h, in_h);
  return by_dtype(probe, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, iname, in_h);
    auto t = in_arg<T>(op, "target", t_h);
    need_same_shape(op, iname, x, "target", t);
    if (check_prob) {
      const T* xp = cptr<T>(x);
      for (idx i = 0; i < x.size(); ++i)
        if (!(xp[i] >= T(0) && xp[i] <= T(1)))
          throw py::value_error(cat(op, ": ", iname, " must be probabilities in [0, 1], got ", (double)xp[i],
                                    " at flat index ", i, "; apply a sigmoid first, or use BCEWithLogitsLoss on logits"));
    }
    T* gp = nullptr;
    if (!g_h.is_none()) {
      need_same_shape(op, gname, probe, iname, x);
      no_overlap(op, gname, probe, iname, x, true);
      no_overlap(op, gname, probe, "target", t, true);
      gp = ptr<T>(probe);
    }
    const T *xp = cptr<T>(x), *tp = cptr<T>(t);
    const idx n = x.size();
    return nogil([&] { return f(gp, xp, tp, n); });
  });
}

// ---- accuracy counts; the dtype of the predictions picks the kernel
py::array pred_arg(const char* op, const char* name, py::handle h) {
  auto a = py::array::ensure(h);
  if (!a) throw py::type_error(cat(op, ": ", name, " must be an array of numbers, got ", type_name(h)));
  if (is_f64(a)) return in_arg<double>(op, name, a);
  return in_arg<float>(op, name, a);
}

std::int64_t argmax_correct_py(py::handle logits_h, py::handle targets_h) {
  const char* op = "argmax_correct";
  py::array x = pred_arg(op, "logits", logits_h);
  if (x.ndim() != 2) throw py::value_error(cat(op, ": logits must be 2-D (N, classes), got shape ", shape_of(x)));
  const idx N = x.shape(0), C = x.shape(1);
  auto t = labels_arg(op, "targets", targets_h);
  if (t.ndim() != 1 || t.shape(0) != N)
    throw py::value_error(cat(op, ": targets has shape ", shape_of(t), " but logits has ", N, " rows"));
  return by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = cptr<T>(x);
    const std::int64_t* tp = t.data();
    return nogil([&] { return argmax_correct<T>(xp, tp, N, C); });
  });
}

std::int64_t threshold_correct_py(py::handle pred_h, py::handle target_h, double threshold) {
  const char* op = "threshold_correct";
  py::array x = pred_arg(op, "pred", pred_h);
  return by_dtype(x, [&](auto tag) {
    using T = decltype(tag);
    auto t = in_arg<T>(op, "target", target_h);
    need_same_shape(op, "pred", x, "target", t);
    const T *xp = cptr<T>(x), *tp = cptr<T>(t);
    const idx n = x.size();
    return nogil([&] { return threshold_correct<T>(xp, tp, threshold, n); });
  });
}

// ---- optimizers: param is the dtype anchor; state buffers must match it exactly
template <class T>
py::array_t<T> grad_arg(const char* op, py::handle h, const py::array& param) {
  auto g = in_arg<T>(op, "grad", h);
  if (g.size() != param.size())
    throw py::value_error(cat(op, ": grad has ", g.size(), " elements (shape ", shape_of(g), ") but param has ",
                              param.size(), " (shape ", shape_of(param), ")"));
  return g;
}

py::object opt_state_arg(const char* op, const char* name, py::handle h, const py::array& param) {
  return h.is_none() ? py::object(py::none()) : py::object(state_arg(op, name, h, param));
}

// After the checks every step shares, takes the state pointers (f's first part, GIL held) and
// runs the step they return with the GIL released.
template <class F>
void optimizer_py(const char* op, const py::array& p, py::handle g_h, F f) {
  by_dtype(p, [&](auto tag) {
    using T = decltype(tag);
    auto g = grad_arg<T>(op, g_h, p);
    no_overlap(op, "param", p, "grad", g, false);
    T* pp = ptr<T>(p);
    const T* gp = cptr<T>(g);
    const idx n = p.size();
    auto step = f(pp, gp, n);
    return nogil([&] { step(); return 0; });
  });
}

}  // namespace

void fastnn::bind_kernels(py::module_& m) {
  m.def("gemm", [](py::handle c, py::handle a, py::handle b, bool ta, bool tb, double alpha, double beta,
                   py::handle bias, const std::string& act) { gemm_py(c, a, b, ta, tb, alpha, beta, bias, act, false); },
        py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("activation") = "none",
        "c = act(alpha * op(a) @ op(b) + beta * c + bias), in place.");
  m.def("gemm_reference", [](py::handle c, py::handle a, py::handle b, bool ta, bool tb, double alpha, double beta,
                             py::handle bias, const std::string& act) { gemm_py(c, a, b, ta, tb, alpha, beta, bias, act, true); },
        py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("bias") = py::none(), py::arg("activation") = "none",
        "The triple-loop reference GEMM (for tests).");

  m.def("linear_forward", &linear_forward_py, py::arg("out"), py::arg("x"), py::arg("weight"), py::arg("bias"));
  m.def("linear_backward", &linear_backward_py, py::arg("dx"), py::arg("dweight"), py::arg("dbias"), py::arg("dout"),
        py::arg("x"), py::arg("weight"), py::arg("accumulate") = true);

  def_activations(m);
  m.def("dropout_apply", [](py::handle out, py::handle x, py::handle u, double p) {
    if (!(p >= 0.0 && p < 1.0)) throw py::value_error(cat("dropout_apply: p must be in [0, 1), got ", p));
    elementwise<2>("dropout_apply", {"out", "x", "u"}, out, {x, u}, p, [](auto* o, const auto& in, double q, idx n) {
      dropout_apply(o, in[0], in[1], q, n);
    });
  }, py::arg("out"), py::arg("x"), py::arg("u"), py::arg("p"),
     "Inverted dropout with the mask drawn as uniforms u: out = x * (u >= p) / (1 - p)");
  m.def("add_forward", [](py::handle out, py::handle a, py::handle b) {
    elementwise<2>("add_forward", {"out", "a", "b"}, out, {a, b}, 0.0, [](auto* o, const auto& in, double, idx n) {
      add_forward(o, in[0], in[1], n);
    });
  }, py::arg("out"), py::arg("a"), py::arg("b"), "out = a + b elementwise, in place allowed");
  m.def("softmax_forward", [](py::handle out, py::handle x) {
    rows<1>("softmax_forward", {"out", "x"}, out, {x}, [](auto* o, const auto& in, idx N, idx C) {
      softmax_forward(o, in[0], N, C);
    });
  }, py::arg("out"), py::arg("x"));
  m.def("softmax_backward", [](py::handle dx, py::handle dout, py::handle y) {
    rows<2>("softmax_backward", {"dx", "dout", "y"}, dx, {dout, y}, [](auto* o, const auto& in, idx N, idx C) {
      softmax_backward(o, in[0], in[1], N, C);
    });
  }, py::arg("dx"), py::arg("dout"), py::arg("y"));

  m.def("conv2d_forward", &conv2d_forward_py, py::arg("out"), py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1, py::arg("groups") = 1,
        py::arg("activation") = "none",
        "out (N, OC, OH, OW) = act(conv(x (N, C, H, W), weight (OC, C/groups, kH, kW)) + bias (OC))");
  m.def("conv2d_backward", &conv2d_backward_py, py::arg("dx"), py::arg("dweight"), py::arg("dbias"), py::arg("dout"),
        py::arg("x"), py::arg("weight"), py::arg("stride") = 1, py::arg("padding") = 0, py::arg("dilation") = 1,
        py::arg("groups") = 1, py::arg("accumulate") = true, py::arg("activation") = "none", py::arg("y") = py::none());
  m.def("maxpool2d_forward", &maxpool2d_forward_py, py::arg("out"), py::arg("argmax"), py::arg("x"),
        py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0);
  m.def("maxpool2d_backward", &maxpool2d_backward_py, py::arg("dx"), py::arg("dout"), py::arg("argmax"),
        py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = 0);
  m.def("avgpool2d_forward", &avgpool2d_forward_py, py::arg("out"), py::arg("x"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0);
  m.def("avgpool2d_backward", &avgpool2d_backward_py, py::arg("dx"), py::arg("dout"), py::arg("kernel_size"),
        py::arg("stride") = py::none(), py::arg("padding") = 0);
  m.def("batchnorm_stats", [](py::handle mean_h, py::handle var_h, py::handle x_h) {
    const char* op = "batchnorm_stats";
    py::array mean = out_arg(op, "mean", mean_h);
    py::array var = opt_out_arg(op, "var", var_h, mean);
    if (var.is_none()) throw py::type_error(cat(op, ": var must be an array, got None"));
    by_dtype(mean, [&](auto tag) {
      using T = decltype(tag);
      auto x = in_arg<T>(op, "x", x_h);
      const NCL d = ncl_of(op, x);
      channel_out(op, "mean", mean, d.C);
      channel_out(op, "var", var, d.C);
      no_overlap(op, "mean", mean, "var", var, false);
      no_overlap(op, "mean", mean, "x", x, false);
      no_overlap(op, "var", var, "x", x, false);
      T *mp = ptr<T>(mean), *vp = ptr<T>(var);
      const T* xp = cptr<T>(x);
      return nogil([&] { batchnorm_stats<T>(mp, vp, xp, d.N, d.C, d.L); return 0; });
    });
  }, py::arg("mean"), py::arg("var"), py::arg("x"),
     "Per-channel mean and biased variance of x (N, C, ...)");
  m.def("batchnorm_forward", [](py::handle out_h, py::handle x_h, py::handle mean_h, py::handle var_h,
                                py::handle gamma_h, py::handle beta_h, double eps) {
    const char* op = "batchnorm_forward";
    py::array out = out_arg(op, "out", out_h);
    by_dtype(out, [&](auto tag) {
      using T = decltype(tag);
      auto x = in_arg<T>(op, "x", x_h);
      const NCL d = ncl_of(op, x);
      need_same_shape(op, "out", out, "x", x);
      no_overlap(op, "out", out, "x", x, true);
      auto mean = channel_arg<T>(op, "mean", mean_h, d.C), var = channel_arg<T>(op, "var", var_h, d.C);
      auto gamma = channel_arg<T>(op, "gamma", gamma_h, d.C), beta = channel_arg<T>(op, "beta", beta_h, d.C);
      if (!(eps > 0)) throw py::value_error(cat(op, ": eps must be > 0, got ", eps));
      for (auto [n, a] : {std::pair<const char*, py::array>{"mean", mean}, {"var", var}, {"gamma", gamma}, {"beta", beta}})
        no_overlap(op, "out", out, n, a, false);
      T* o = ptr<T>(out);
      const T *xp = cptr<T>(x), *mp = cptr<T>(mean), *vp = cptr<T>(var), *gp = cptr<T>(gamma), *bp = cptr<T>(beta);
      return nogil([&] { batchnorm_forward<T>(o, xp, mp, vp, gp, bp, d.N, d.C, d.L, eps); return 0; });
    });
  }, py::arg("out"), py::arg("x"), py::arg("mean"), py::arg("var"), py::arg("gamma"), py::arg("beta"),
     py::arg("eps") = 1e-5, "out = (x - mean) / sqrt(var + eps) * gamma + beta, per channel of x (N, C, ...)");
  m.def("batchnorm_backward", [](py::handle dx_h, py::handle dg_h, py::handle db_h, py::handle dout_h, py::handle x_h,
                                 py::handle mean_h, py::handle var_h, py::handle gamma_h, double eps, bool batch_stats,
                                 bool accumulate) {
    const char* op = "batchnorm_backward";
    py::array dg = out_arg(op, "dgamma", dg_h);
    py::object dx_o = opt_out_arg(op, "dx", dx_h, dg);
    py::object db_o = opt_out_arg(op, "dbeta", db_h, dg);
    if (db_o.is_none()) throw py::type_error(cat(op, ": dbeta must be an array, got None"));
    py::array db = py::reinterpret_borrow<py::array>(db_o);
    by_dtype(dg, [&](auto tag) {
      using T = decltype(tag);
      auto x = in_arg<T>(op, "x", x_h);
      auto dout = in_arg<T>(op, "dout", dout_h);
      const NCL d = ncl_of(op, x);
      need_same_shape(op, "dout", dout, "x", x);
      auto mean = channel_arg<T>(op, "mean", mean_h, d.C), var = channel_arg<T>(op, "var", var_h, d.C);
      auto gamma = channel_arg<T>(op, "gamma", gamma_h, d.C);
      channel_out(op, "dgamma", dg, d.C);
      channel_out(op, "dbeta", db, d.C);
      no_overlap(op, "dgamma", dg, "dbeta", db, false);
      std::vector<std::pair<const char*, py::array>> inputs{{"dout", dout}, {"x", x}, {"mean", mean}, {"var", var},
                                                            {"gamma", gamma}};
      for (auto& [n, a] : inputs) {
        no_overlap(op, "dgamma", dg, n, a, false);
        no_overlap(op, "dbeta", db, n, a, false);
      }
      if (!dx_o.is_none()) {
        auto dx = py::reinterpret_borrow<py::array>(dx_o);
        need_same_shape(op, "dx", dx, "x", x);
        for (auto& [n, a] : inputs) no_overlap(op, "dx", dx, n, a, false);
        no_overlap(op, "dx", dx, "dgamma", dg, false);
        no_overlap(op, "dx", dx, "dbeta", db, false);
      }
      if (!(eps > 0)) throw py::value_error(cat(op, ": eps must be > 0, got ", eps));
      T *dxp = ptr_or_null<T>(dx_o), *dgp = ptr<T>(dg), *dbp = ptr<T>(db);
      const T *gp = cptr<T>(dout), *xp = cptr<T>(x), *mp = cptr<T>(mean), *vp = cptr<T>(var), *wp = cptr<T>(gamma);
      return nogil([&] {
        batchnorm_backward<T>(dxp, dgp, dbp, gp, xp, mp, vp, wp, d.N, d.C, d.L, eps, batch_stats, accumulate);
        return 0;
      });
    });
  }, py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"), py::arg("dout"), py::arg("x"), py::arg("mean"), py::arg("var"),
     py::arg("gamma"), py::arg("eps") = 1e-5, py::arg("batch_stats") = true, py::arg("accumulate") = true);
  m.def("batchnorm_update", [](py::handle rm_h, py::handle rv_h, py::handle mean_h, py::handle var_h, idx count,
                               double momentum) {
    const char* op = "batchnorm_update";
    py::array rm = out_arg(op, "running_mean", rm_h);
    py::array rv = opt_out_arg(op, "running_var", rv_h, rm);
    if (rv.is_none()) throw py::type_error(cat(op, ": running_var must be an array, got None"));
    if (count < 1) throw py::value_error(cat(op, ": count must be >= 1, got ", count));
    if (!(momentum >= 0 && momentum <= 1)) throw py::value_error(cat(op, ": momentum must be in [0, 1], got ", momentum));
    by_dtype(rm, [&](auto tag) {
      using T = decltype(tag);
      const idx C = rm.ndim() == 1 ? rm.shape(0) : -1;
      channel_out(op, "running_mean", rm, C);
      channel_out(op, "running_var", rv, C);
      no_overlap(op, "running_mean", rm, "running_var", rv, false);
      auto mean = channel_arg<T>(op, "mean", mean_h, C), var = channel_arg<T>(op, "var", var_h, C);
      for (auto [n, a] : {std::pair<const char*, py::array>{"mean", mean}, {"var", var}}) {
        no_overlap(op, "running_mean", rm, n, a, false);
        no_overlap(op, "running_var", rv, n, a, false);
      }
      T *mp = ptr<T>(rm), *vp = ptr<T>(rv);
      const T *bm = cptr<T>(mean), *bv = cptr<T>(var);
      return nogil([&] { batchnorm_update<T>(mp, vp, bm, bv, C, count, momentum); return 0; });
    });
  }, py::arg("running_mean"), py::arg("running_var"), py::arg("mean"), py::arg("var"), py::arg("count"),
     py::arg("momentum") = 0.1,
     "running = (1 - momentum) * running + momentum * batch statistic (variance made unbiased over count values)");

  m.def("cross_entropy_forward", &cross_entropy_py, py::arg("dlogits"), py::arg("logits"), py::arg("targets"));
  m.def("mse_forward", [](py::handle d, py::handle p, py::handle t, const std::string& reduction) {
    if (reduction != "mean" && reduction != "sum")
      throw py::value_error(cat("mse_forward: reduction must be 'mean' or 'sum', got '", reduction, "'"));
    const bool sum = reduction == "sum";
    return pointwise_loss_py("mse_forward", "dpred", "pred", d, p, t, false,
                             [sum](auto* g, const auto* x, const auto* tt, idx n) { return mse_forward(g, x, tt, n, sum); });
  }, py::arg("dpred"), py::arg("pred"), py::arg("target"), py::arg("reduction") = "mean");
  m.def("bce_with_logits_forward", [](py::handle d, py::handle x, py::handle t) {
    return pointwise_loss_py("bce_with_logits_forward", "dlogits", "logits", d, x, t, false,
                             [](auto* g, const auto* xp, const auto* tt, idx n) { return bce_with_logits_forward(g, xp, tt, n); });
  }, py::arg("dlogits"), py::arg("logits"), py::arg("target"));
  m.def("bce_forward", [](py::handle d, py::handle p, py::handle t) {
    return pointwise_loss_py("bce_forward", "dprob", "prob", d, p, t, true,
                             [](auto* g, const auto* xp, const auto* tt, idx n) { return bce_forward(g, xp, tt, n); });
  }, py::arg("dprob"), py::arg("prob"), py::arg("target"));
  m.def("argmax_correct", &argmax_correct_py, py::arg("logits"), py::arg("targets"),
        "Rows whose first largest logit (NaN counting as largest) is the target class");
  m.def("threshold_correct", &threshold_correct_py, py::arg("pred"), py::arg("target"), py::arg("threshold"),
        "Values with (pred > threshold) == (target > 0.5)");

  m.def("sgd_step", [](py::handle p_h, py::handle g_h, py::handle buf_h, double lr, double momentum, double dampening,
                       bool nesterov, double weight_decay, bool first_step) {
    const char* op = "sgd_step";
    py::array p = out_arg(op, "param", p_h);
    if (momentum != 0 && buf_h.is_none())
      throw py::value_error("sgd_step: momentum != 0 needs a momentum_buf the size of param");
    py::object buf = opt_state_arg(op, "momentum_buf", buf_h, p);
    optimizer_py(op, p, g_h, [&](auto* pp, const auto* gp, idx n) {
      auto* bp = ptr_or_null<std::remove_pointer_t<decltype(pp)>>(buf);
      return [=] { sgd_step(pp, gp, bp, n, lr, momentum, dampening, nesterov, weight_decay, first_step); };
    });
  }, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"), py::arg("lr"), py::arg("momentum") = 0.0,
     py::arg("dampening") = 0.0, py::arg("nesterov") = false, py::arg("weight_decay") = 0.0,
     py::arg("first_step") = false);
  m.def("adam_step", [](py::handle p_h, py::handle g_h, py::handle m_h, py::handle v_h, long step, double lr,
                        double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
    const char* op = "adam_step";
    py::array p = out_arg(op, "param", p_h);
    py::array mm = state_arg(op, "exp_avg", m_h, p), v = state_arg(op, "exp_avg_sq", v_h, p);
    no_overlap(op, "exp_avg", mm, "exp_avg_sq", v, false);
    if (step < 1) throw py::value_error(cat(op, ": step counts from 1, got ", step));
    optimizer_py(op, p, g_h, [&](auto* pp, const auto* gp, idx n) {
      using T = std::remove_pointer_t<decltype(pp)>;
      T *mp = ptr<T>(mm), *vp = ptr<T>(v);
      return [=] { adam_step(pp, gp, mp, vp, n, step, lr, beta1, beta2, eps, weight_decay, decoupled); };
    });
  }, py::arg("param"), py::arg("grad"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("step"),
     py::arg("lr") = 1e-3, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999, py::arg("eps") = 1e-8,
     py::arg("weight_decay") = 0.0, py::arg("decoupled") = false);
  m.def("rmsprop_step", [](py::handle p_h, py::handle g_h, py::handle sq_h, py::handle buf_h, double lr, double alpha,
                           double eps, double weight_decay, double momentum) {
    const char* op = "rmsprop_step";
    py::array p = out_arg(op, "param", p_h);
    py::array sq = state_arg(op, "square_avg", sq_h, p);
    if (momentum > 0 && buf_h.is_none())
      throw py::value_error("rmsprop_step: momentum > 0 needs a momentum_buf the size of param");
    py::object buf = opt_state_arg(op, "momentum_buf", buf_h, p);
    optimizer_py(op, p, g_h, [&](auto* pp, const auto* gp, idx n) {
      using T = std::remove_pointer_t<decltype(pp)>;
      T *sp = ptr<T>(sq), *bp = ptr_or_null<T>(buf);
      return [=] { rmsprop_step(pp, gp, sp, bp, n, lr, alpha, eps, weight_decay, momentum); };
    });
  }, py::arg("param"), py::arg("grad"), py::arg("square_avg"), py::arg("momentum_buf"), py::arg("lr") = 1e-2,
     py::arg("alpha") = 0.99, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0);

  m.def("first_nonfinite", [](py::handle x_h) {
    const char* op = "first_nonfinite";
    py::object xo = py::reinterpret_borrow<py::object>(x_h);
    if (!py::isinstance<py::array>(xo)) xo = py::module_::import("numpy").attr("asarray")(xo);
    auto a = py::reinterpret_borrow<py::array>(xo);
    if (!is_f32(a) && !is_f64(a)) {
      const char k = a.dtype().kind();
      if (k == 'i' || k == 'u' || k == 'b') return idx(-1);  // integers and booleans are always finite
      if (k == 'c') {  // complex: finite when both parts are; as pairs of float64, index / 2
        auto pairs = py::module_::import("numpy").attr("ascontiguousarray")(a, "complex128").attr("view")("float64");
        const idx i = py::cast<idx>(py::module_::import("fastnn._core").attr("first_nonfinite")(pairs));
        return i < 0 ? i : i / 2;
      }
      if (k != 'f') throw py::type_error(cat(op, ": x must hold numbers, got ", std::string(py::str(a.dtype()))));
      a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(a);  // float16, big-endian: exact
    }
    return by_dtype(a, [&](auto tag) {
      using T = decltype(tag);
      auto x = in_arg<T>(op, "x", a);  // a C-ordered copy only if x is not contiguous
      const T* p = cptr<T>(x);
      const idx n = x.size();
      return nogil([&] { return first_nonfinite<T>(p, n); });
    });
  }, py::arg("x"), "Flat (C-order) index of the first NaN or infinity in x, or -1");
  m.def("pcg64_uniform", [](py::handle out_h, std::uint64_t state_hi, std::uint64_t state_lo, std::uint64_t inc_hi,
                            std::uint64_t inc_lo, bool has_uint32, std::uint32_t uinteger) {
    const char* op = "pcg64_uniform";
    py::array out = out_arg(op, "out", out_h);
    if (out.ndim() != 1) throw py::value_error(cat(op, ": out must be 1-D, got shape ", shape_of(out)));
    Pcg64State st{state_hi, state_lo, inc_hi, inc_lo, has_uint32, uinteger};
    by_dtype(out, [&](auto tag) {
      using T = decltype(tag);
      T* o = ptr<T>(out);
      const idx n = out.size();
      return nogil([&] { pcg64_uniform<T>(o, n, st); return 0; });
    });
    return py::make_tuple(st.state_hi, st.state_lo, st.has_uint32, st.uinteger);
  }, py::arg("out"), py::arg("state_hi"), py::arg("state_lo"), py::arg("inc_hi"), py::arg("inc_lo"),
     py::arg("has_uint32"), py::arg("uinteger"),
     "Fills out with what NumPy's PCG64 Generator.random(out.size, out.dtype) would return from this state; "
     "returns the state after (state_hi, state_lo, has_uint32, uinteger). See fastnn.random.uniform.");
  m.def("pcg64_jump", [](std::uint64_t state_hi, std::uint64_t state_lo, std::uint64_t inc_hi, std::uint64_t inc_lo,
                         std::uint64_t delta) {
    Pcg64State st{state_hi, state_lo, inc_hi, inc_lo, false, 0};
    pcg64_jump(st, delta);
    return py::make_tuple(st.state_hi, st.state_lo, st.has_uint32, st.uinteger);
  }, py::arg("state_hi"), py::arg("state_lo"), py::arg("inc_hi"), py::arg("inc_lo"), py::arg("delta"),
     "The PCG64 state `delta` outputs ahead, as NumPy's PCG64.advance(delta) leaves it: (state_hi, state_lo, "
     "has_uint32, uinteger). Distributed fit starts each shard's Dropout draws 2**40 outputs apart.");
}
