// The only file that knows Python. For every kernel: validate arguments (shapes, dtypes,
// layouts) with messages that name the problem and the fix, take pointers with the GIL held,
// release the GIL around the kernel only.
//   Outputs / in-place buffers: must already be writeable C-contiguous float32/float64 arrays;
//     they are never converted (a converted copy would silently drop the result) -> TypeError.
//   Read-only inputs: converted to the output's dtype and C order (forcecast), never misread.
// The output's dtype selects the float32 or float64 kernel.
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <cmath>
#include <sstream>
#include <string>
#include <type_traits>
#include "kernels/kernels.h"
#include "gemm/gemm.h"
#include "gemm/ukernel.h"
#include "plan/mlp.h"

namespace py = pybind11;
using namespace fastnn;

namespace {

std::string shape_of(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}

bool is_f32(const py::array& a) { return a.dtype().is(py::dtype::of<float>()); }
bool is_f64(const py::array& a) { return a.dtype().is(py::dtype::of<double>()); }

// An output or in-place buffer: checked, never converted.
py::array out_arg(const char* op, const char* name, py::handle h) {
  if (!py::isinstance<py::array>(h))
    throw py::type_error(cat(op, ": ", name, " must be a numpy array it can write into, got ",
                             std::string(py::str(py::type::of(h).attr("__name__"))),
                             "; allocate it with np.empty(shape, dtype=np.float32)"));
  auto a = py::reinterpret_borrow<py::array>(h);
  if (!is_f32(a) && !is_f64(a))
    throw py::type_error(cat(op, ": ", name, " must be float32 or float64, got ",
                             std::string(py::str(a.dtype())),
                             "; it is written in place, so it cannot be converted"));
  if (!(a.flags() & py::array::c_style))
    throw py::type_error(cat(op, ": ", name, " with shape ", shape_of(a),
                             " must be C-contiguous; pass np.ascontiguousarray(", name, ")"));
  if (!a.writeable())
    throw py::type_error(cat(op, ": ", name, " is read-only; pass a writeable array"));
  return a;
}

// An optional output: None or a valid output of the same dtype as `like`.
py::object opt_out_arg(const char* op, const char* name, py::handle h, const py::array& like) {
  if (h.is_none()) return py::none();
  py::array a = out_arg(op, name, h);
  if (a.dtype().not_equal(like.dtype()))
    throw py::type_error(cat(op, ": ", name, " has dtype ", std::string(py::str(a.dtype())),
                             " but the other outputs are ", std::string(py::str(like.dtype())),
                             "; use one dtype for all outputs"));
  return std::move(a);
}

// A read-only input, converted to T and C order if needed.
template <class T>
py::array_t<T> in_arg(const char* op, const char* name, py::handle h) {
  if (h.is_none()) throw py::type_error(cat(op, ": ", name, " must be an array, got None"));
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(h);
  if (!a)
    throw py::type_error(cat(op, ": ", name, " (", std::string(py::str(py::type::of(h).attr("__name__"))),
                             ") cannot be converted to ", sizeof(T) == 4 ? "float32" : "float64"));
  return a;
}

void need_ndim(const char* op, const char* name, const py::array& a, int nd, const char* fix) {
  if (a.ndim() != nd)
    throw py::value_error(cat(op, ": ", name, " must be ", nd, "-D, got shape ", shape_of(a), "; ", fix));
}

void need_same_shape(const char* op, const char* na, const py::array& a, const char* nb,
                     const py::array& b) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    throw py::value_error(cat(op, ": ", na, " has shape ", shape_of(a), " but ", nb, " has shape ",
                              shape_of(b), "; they must have the same shape"));
}

// Writing the output while reading an overlapping input would corrupt the result.
// Elementwise kernels may run exactly in place (same buffer); nothing may partially overlap.
void no_overlap(const char* op, const char* out_name, const py::array& out, const char* in_name,
                const py::array& in, bool allow_identical) {
  auto lo1 = (const char*)out.data(), hi1 = lo1 + out.nbytes();
  auto lo2 = (const char*)in.data(), hi2 = lo2 + in.nbytes();
  if (out.nbytes() == 0 || in.nbytes() == 0 || hi1 <= lo2 || hi2 <= lo1) return;
  if (allow_identical && lo1 == lo2 && out.nbytes() == in.nbytes()) return;
  throw py::value_error(cat(op, ": ", out_name, " shares memory with ", in_name,
                            "; pass a separate output array"));
}

template <class T> T* ptr(py::array a) { return static_cast<T*>(a.mutable_data()); }
template <class T> const T* cptr(const py::array& a) { return static_cast<const T*>(a.data()); }
template <class T> T* ptr_or_null(const py::object& o) {
  return o.is_none() ? nullptr : ptr<T>(py::reinterpret_borrow<py::array>(o));
}

// Calls f(T{}) with T = float or double, chosen by the output's dtype.
template <class F>
auto by_dtype(const py::array& out, F f) {
  return is_f32(out) ? f(float{}) : f(double{});
}

Act parse_act(const std::string& s) {
  if (s == "none") return Act::None;
  if (s == "relu") return Act::ReLU;
  if (s == "sigmoid") return Act::Sigmoid;
  if (s == "tanh") return Act::Tanh;
  if (s == "gelu") return Act::GELU;
  throw py::value_error(cat("gemm: activation must be one of 'none', 'relu', 'sigmoid', 'tanh', "
                            "'gelu', got '", s, "'"));
}

// ---- gemm --------------------------------------------------------------------------------
void gemm_py(py::handle c_h, py::handle a_h, py::handle b_h, bool trans_a, bool trans_b,
             double alpha, double beta, py::handle bias_h, const std::string& activation,
             bool reference) {
  const char* op = reference ? "gemm_reference" : "gemm";
  py::array c = out_arg(op, "c", c_h);
  const Act act = parse_act(activation);
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
      throw py::value_error(cat(op, ": op(a) is ", M, "x", K, " and op(b) is ", Kb, "x", N,
                                " (a ", shape_of(a), ", trans_a=", trans_a, "; b ", shape_of(b),
                                ", trans_b=", trans_b, "); inner dimensions must agree"));
    if (c.shape(0) != M || c.shape(1) != N)
      throw py::value_error(cat(op, ": c has shape ", shape_of(c), " but op(a)·op(b) is (", M,
                                ", ", N, "); allocate c with that shape"));
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
    py::gil_scoped_release nogil;
    auto fn = reference ? gemm_ref<T> : gemm<T>;
    fn(trans_a, trans_b, M, N, K, T(alpha), ap, lda, bp, ldb, T(beta), cp, ldc, biasp, act);
    return 0;
  });
}

// ---- linear ------------------------------------------------------------------------------
struct LinearShape { idx N, C, OC; };

template <class T>
LinearShape check_linear(const char* op, const py::array_t<T>& x, const py::array_t<T>& w) {
  need_ndim(op, "weight", w, 2, "weight is (out_features, in_features)");
  if (x.ndim() != 2)
    throw py::value_error(cat(op, ": x must be 2-D (N, ", w.shape(1), "), got shape ", shape_of(x),
                              x.ndim() > 2 ? "; flatten it first" : "; reshape it to (N, features)"));
  if (x.shape(1) != w.shape(1))
    throw py::value_error(cat(op, ": expected input with ", w.shape(1), " features, got shape ",
                              shape_of(x), "; the weight is ", shape_of(w)));
  return {x.shape(0), x.shape(1), w.shape(0)};
}

template <class T>
py::array_t<T> bias_arg(const char* op, py::handle h, idx OC) {
  py::array_t<T> b;
  if (h.is_none()) return b;
  b = in_arg<T>(op, "bias", h);
  if (b.ndim() != 1 || b.shape(0) != OC)
    throw py::value_error(cat(op, ": bias has shape ", shape_of(b), "; expected (", OC, ",)"));
  return b;
}

void need_shape2(const char* op, const char* name, const py::array& a, idx r, idx c) {
  if (a.ndim() != 2 || a.shape(0) != r || a.shape(1) != c)
    throw py::value_error(cat(op, ": ", name, " has shape ", shape_of(a), "; expected (", r, ", ", c, ")"));
}

void linear_forward_py(py::handle out_h, py::handle x_h, py::handle w_h, py::handle b_h) {
  const char* op = "linear_forward";
  py::array out = out_arg(op, "out", out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    auto w = in_arg<T>(op, "weight", w_h);
    const LinearShape s = check_linear<T>(op, x, w);
    auto b = bias_arg<T>(op, b_h, s.OC);
    need_shape2(op, "out", out, s.N, s.OC);
    no_overlap(op, "out", out, "x", x, false);
    no_overlap(op, "out", out, "weight", w, false);
    T* o = ptr<T>(out);
    const T *xp = cptr<T>(x), *wp = cptr<T>(w), *bp = b_h.is_none() ? nullptr : cptr<T>(b);
    py::gil_scoped_release nogil;
    linear_forward<T>(o, xp, wp, bp, s.N, s.C, s.OC);
    return 0;
  });
}

void linear_backward_py(py::handle dx_h, py::handle dw_h, py::handle db_h, py::handle dout_h,
                        py::handle x_h, py::handle w_h) {
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
    }
    if (!dx_o.is_none()) {
      auto dx = py::reinterpret_borrow<py::array>(dx_o);
      need_shape2(op, "dx", dx, s.N, s.C);
      for (auto [n, a] : {std::pair<const char*, py::array>{"dout", dout}, {"weight", w}, {"dweight", dw}})
        no_overlap(op, "dx", dx, n, a, false);
    }
    for (auto [n, a] : {std::pair<const char*, py::array>{"dout", dout}, {"x", x}})
      no_overlap(op, "dweight", dw, n, a, false);
    T *dxp = ptr_or_null<T>(dx_o), *dwp = ptr<T>(dw), *dbp = ptr_or_null<T>(db_o);
    const T *dop = cptr<T>(dout), *xp = cptr<T>(x), *wp = cptr<T>(w);
    py::gil_scoped_release nogil;
    linear_backward<T>(dxp, dwp, dbp, dop, xp, wp, s.N, s.C, s.OC);
    return 0;
  });
}

// ---- activations -------------------------------------------------------------------------
// forward(out, x [, param]) and backward(dx, dout, saved [, param]) over same-shaped arrays.
template <class Kf, class Kd>
void def_activation(py::module_& m, const char* name, Kf fwd, Kd bwd, const char* saved,
                    const char* doc) {
  const std::string fname = std::string(name) + "_forward", bname = std::string(name) + "_backward";
  m.def(fname.c_str(), [fname, fwd](py::handle out_h, py::handle x_h) {
    const char* op = fname.c_str();
    py::array out = out_arg(op, "out", out_h);
    by_dtype(out, [&](auto tag) {
      using T = decltype(tag);
      auto x = in_arg<T>(op, "x", x_h);
      need_same_shape(op, "out", out, "x", x);
      no_overlap(op, "out", out, "x", x, true);
      T* o = ptr<T>(out);
      const T* xp = cptr<T>(x);
      const idx n = x.size();
      py::gil_scoped_release nogil;
      fwd(o, xp, n);
      return 0;
    });
  }, py::arg("out"), py::arg("x"), doc);
  m.def(bname.c_str(), [bname, bwd, saved](py::handle dx_h, py::handle dout_h, py::handle s_h) {
    const char* op = bname.c_str();
    py::array dx = out_arg(op, "dx", dx_h);
    by_dtype(dx, [&](auto tag) {
      using T = decltype(tag);
      auto dout = in_arg<T>(op, "dout", dout_h);
      auto s = in_arg<T>(op, saved, s_h);
      need_same_shape(op, "dx", dx, "dout", dout);
      need_same_shape(op, "dout", dout, saved, s);
      no_overlap(op, "dx", dx, "dout", dout, true);
      no_overlap(op, "dx", dx, saved, s, true);
      T* d = ptr<T>(dx);
      const T *g = cptr<T>(dout), *sp = cptr<T>(s);
      const idx n = dout.size();
      py::gil_scoped_release nogil;
      bwd(d, g, sp, n);
      return 0;
    });
  }, py::arg("dx"), py::arg("dout"), py::arg(saved));
}

// Runs a kernel of shape f(out, x, T param, n) on same-shaped arrays.
template <class F>
void unary_param_py(const char* op, const char* xname, py::handle out_h, py::handle x_h, double param, F f) {
  py::array out = out_arg(op, "out", out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, xname, x_h);
    need_same_shape(op, "out", out, xname, x);
    no_overlap(op, "out", out, xname, x, true);
    T* o = ptr<T>(out);
    const T* xp = cptr<T>(x);
    const idx n = x.size();
    py::gil_scoped_release nogil;
    f(o, xp, T(param), n);
    return 0;
  });
}

// out = f(a, b; param) elementwise over three arrays of one shape (out may be a or b).
template <class F>
void binary_param_py(const char* op, const char* on, const char* an, const char* bn, py::handle out_h,
                     py::handle a_h, py::handle b_h, double param, F f) {
  py::array out = out_arg(op, on, out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto a = in_arg<T>(op, an, a_h);
    auto b = in_arg<T>(op, bn, b_h);
    need_same_shape(op, on, out, an, a);
    need_same_shape(op, an, a, bn, b);
    no_overlap(op, on, out, an, a, true);
    no_overlap(op, on, out, bn, b, true);
    T* o = ptr<T>(out);
    const T *ap = cptr<T>(a), *bp = cptr<T>(b);
    const idx n = a.size();
    py::gil_scoped_release nogil;
    f(o, ap, bp, param, n);
    return 0;
  });
}

// Softmax over the last axis: (…, C) is treated as rows of C.
template <class F>
void rows_py(const char* op, py::handle out_h, py::handle a_h, py::handle b_h, const char* an,
             const char* bn, F f) {
  py::array out = out_arg(op, b_h.is_none() ? "out" : "dx", out_h);
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto a = in_arg<T>(op, an, a_h);
    if (a.ndim() == 0)
      throw py::value_error(cat(op, ": ", an, " must have at least 1 dimension, got a scalar"));
    need_same_shape(op, "out", out, an, a);
    no_overlap(op, "out", out, an, a, true);
    py::array_t<T> b;
    if (!b_h.is_none()) {
      b = in_arg<T>(op, bn, b_h);
      need_same_shape(op, an, a, bn, b);
      no_overlap(op, "out", out, bn, b, true);
    }
    const idx C = a.shape(a.ndim() - 1), N = C ? a.size() / C : 0;
    T* o = ptr<T>(out);
    const T *ap = cptr<T>(a), *bp = b_h.is_none() ? nullptr : cptr<T>(b);
    py::gil_scoped_release nogil;
    f(o, ap, bp, N, C);
    return 0;
  });
}

// ---- losses ------------------------------------------------------------------------------
// The gradient output picks the dtype; without one, float64 inputs stay float64, else float32.
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
    if (x.ndim() != 2)
      throw py::value_error(cat(op, ": logits must be 2-D (N, classes), got shape ", shape_of(x)));
    const idx N = x.shape(0), C = x.shape(1);
    if (C == 0) throw py::value_error(cat(op, ": logits has 0 classes (shape ", shape_of(x), ")"));
    auto t_raw = py::array::ensure(targets_h);
    if (!t_raw || (t_raw.dtype().kind() != 'i' && t_raw.dtype().kind() != 'u'))
      throw py::type_error(cat(op, ": targets must be integer class indices, got ",
                               t_raw ? std::string(py::str(t_raw.dtype())) : std::string("a non-array"),
                               "; use y.astype(np.int64)"));
    auto t = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(t_raw);
    if (t.ndim() != 1 || t.shape(0) != N)
      throw py::value_error(cat(op, ": targets has shape ", shape_of(t), " but logits has ", N,
                                " rows; pass one class index per row, shape (", N, ",)"));
    const std::int64_t* tp = t.data();
    for (idx i = 0; i < N; ++i)
      if (tp[i] < 0 || tp[i] >= C)
        throw py::value_error(cat(op, ": targets must be class indices in [0, ", C, "), got ",
                                  tp[i], " at position ", i));
    T* dp = nullptr;
    if (!d_h.is_none()) {
      need_same_shape(op, "dlogits", probe, "logits", x);
      no_overlap(op, "dlogits", probe, "logits", x, true);
      dp = ptr<T>(probe);
    }
    const T* xp = cptr<T>(x);
    py::gil_scoped_release nogil;
    return cross_entropy_forward<T>(dp, xp, tp, N, C);
  });
}

// Elementwise losses: f(grad, input, target, n) over same-shaped input and target.
template <class F>
double pointwise_loss_py(const char* op, const char* gname, const char* iname, py::handle g_h,
                         py::handle in_h, py::handle t_h, bool check_prob, F f) {
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
          throw py::value_error(cat(op, ": ", iname, " must be probabilities in [0, 1], got ",
                                    (double)xp[i], " at flat index ", i,
                                    "; apply a sigmoid first, or use BCEWithLogitsLoss on logits"));
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
    py::gil_scoped_release nogil;
    return f(gp, xp, tp, n);
  });
}

// ---- optimizers --------------------------------------------------------------------------
// param is the dtype anchor; state buffers must match it exactly (they are updated in place).
py::array state_arg(const char* op, const char* name, py::handle h, const py::array& param) {
  py::array a = out_arg(op, name, h);
  if (a.dtype().not_equal(param.dtype()) || a.size() != param.size())
    throw py::value_error(cat(op, ": ", name, " has dtype ", std::string(py::str(a.dtype())),
                              " and ", a.size(), " elements but param has ",
                              std::string(py::str(param.dtype())), " and ", param.size(),
                              "; state buffers must match the parameters"));
  no_overlap(op, name, a, "param", param, false);
  return a;
}

template <class T>
py::array_t<T> grad_arg(const char* op, py::handle h, const py::array& param) {
  auto g = in_arg<T>(op, "grad", h);
  if (g.size() != param.size())
    throw py::value_error(cat(op, ": grad has ", g.size(), " elements (shape ", shape_of(g),
                              ") but param has ", param.size(), " (shape ", shape_of(param), ")"));
  return g;
}

void sgd_py(py::handle p_h, py::handle g_h, py::handle buf_h, double lr, double momentum,
            double dampening, bool nesterov, double weight_decay, bool first_step) {
  const char* op = "sgd_step";
  py::array p = out_arg(op, "param", p_h);
  if (momentum != 0 && buf_h.is_none())
    throw py::value_error("sgd_step: momentum != 0 needs a momentum_buf the size of param");
  py::object buf = buf_h.is_none() ? py::object(py::none()) : py::object(state_arg(op, "momentum_buf", buf_h, p));
  by_dtype(p, [&](auto tag) {
    using T = decltype(tag);
    auto g = grad_arg<T>(op, g_h, p);
    T *pp = ptr<T>(p), *bp = ptr_or_null<T>(buf);
    const T* gp = cptr<T>(g);
    const idx n = p.size();
    py::gil_scoped_release nogil;
    sgd_step<T>(pp, gp, bp, n, lr, momentum, dampening, nesterov, weight_decay, first_step);
    return 0;
  });
}

void adam_py(py::handle p_h, py::handle g_h, py::handle m_h, py::handle v_h, long step, double lr,
             double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
  const char* op = "adam_step";
  py::array p = out_arg(op, "param", p_h);
  py::array m = state_arg(op, "exp_avg", m_h, p), v = state_arg(op, "exp_avg_sq", v_h, p);
  no_overlap(op, "exp_avg", m, "exp_avg_sq", v, false);
  if (step < 1) throw py::value_error(cat(op, ": step counts from 1, got ", step));
  by_dtype(p, [&](auto tag) {
    using T = decltype(tag);
    auto g = grad_arg<T>(op, g_h, p);
    T *pp = ptr<T>(p), *mp = ptr<T>(m), *vp = ptr<T>(v);
    const T* gp = cptr<T>(g);
    const idx n = p.size();
    py::gil_scoped_release nogil;
    adam_step<T>(pp, gp, mp, vp, n, step, lr, beta1, beta2, eps, weight_decay, decoupled);
    return 0;
  });
}

void rmsprop_py(py::handle p_h, py::handle g_h, py::handle sq_h, py::handle buf_h, double lr,
                double alpha, double eps, double weight_decay, double momentum) {
  const char* op = "rmsprop_step";
  py::array p = out_arg(op, "param", p_h);
  py::array sq = state_arg(op, "square_avg", sq_h, p);
  if (momentum > 0 && buf_h.is_none())
    throw py::value_error("rmsprop_step: momentum > 0 needs a momentum_buf the size of param");
  py::object buf = buf_h.is_none() ? py::object(py::none()) : py::object(state_arg(op, "momentum_buf", buf_h, p));
  by_dtype(p, [&](auto tag) {
    using T = decltype(tag);
    auto g = grad_arg<T>(op, g_h, p);
    T *pp = ptr<T>(p), *sp = ptr<T>(sq), *bp = ptr_or_null<T>(buf);
    const T* gp = cptr<T>(g);
    const idx n = p.size();
    py::gil_scoped_release nogil;
    rmsprop_step<T>(pp, gp, sp, bp, n, lr, alpha, eps, weight_decay, momentum);
    return 0;
  });
}


// ---- the fused MLP (fastnn/fused.py builds these arguments from a Sequential) ----------------
// layers: float64 (L, 7) rows of (in, out, w_off, b_off, act, slope, drop). Every offset and
// size is checked against the parameter buffer so no call can read or write outside it.
std::vector<MlpLayer> mlp_layers_arg(const char* op, py::handle h, idx n_params) {
  auto a = in_arg<double>(op, "layers", h);
  if (a.ndim() != 2 || a.shape(1) != 7 || a.shape(0) < 1)
    throw py::value_error(cat(op, ": layers must be (L, 7) rows of (in, out, w_off, b_off, act, slope, drop), got ",
                              shape_of(a)));
  std::vector<MlpLayer> out;
  const double* p = a.data();
  for (py::ssize_t l = 0; l < a.shape(0); ++l, p += 7) {
    MlpLayer ly{(idx)p[0], (idx)p[1], (idx)p[2], (idx)p[3], (MlpAct)(int)p[4], p[5], p[6]};
    const bool ok = ly.in >= 1 && ly.out >= 1 && ly.w_off >= 0 && ly.w_off + ly.in * ly.out <= n_params &&
                    (ly.b_off < 0 || ly.b_off + ly.out <= n_params) && p[4] >= 0 && p[4] <= 5 &&
                    (l == 0 || ly.in == out.back().out);
    if (!(ly.drop >= 0 && ly.drop < 1))
      throw py::value_error(cat(op, ": layer ", l, "'s dropout p must be in [0, 1), got ", ly.drop));
    if (!ok) throw py::value_error(cat(op, ": layer ", l, " does not fit the parameter buffer of ", n_params,
                                       " values or does not chain with the previous layer"));
    out.push_back(ly);
  }
  return out;
}

// With check_finite, the flat index of x's first NaN or infinity is returned (-1: all finite,
// out written; else out is left unspecified), so predict can name the bad value without a
// separate NumPy pass over x.
idx mlp_forward_py(py::handle out_h, py::handle x_h, py::handle params_h, py::handle layers_h,
                   bool check_finite) {
  const char* op = "mlp_forward";
  idx bad = -1;
  py::array out = out_arg(op, "out", out_h);
  py::array params = out_arg(op, "params", params_h);
  if (params.dtype().not_equal(out.dtype()))
    throw py::type_error(cat(op, ": params and out must have the same dtype"));
  auto layers = mlp_layers_arg(op, layers_h, params.size());
  by_dtype(out, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    if (x.ndim() != 2 || x.shape(1) != layers[0].in)
      throw py::value_error(cat(op, ": expected input with ", layers[0].in, " features, got shape ", shape_of(x)));
    need_shape2(op, "out", out, x.shape(0), layers.back().out);
    no_overlap(op, "out", out, "x", x, false);
    no_overlap(op, "out", out, "params", params, false);
    T* o = ptr<T>(out);
    const T *xp = cptr<T>(x), *pp = cptr<T>(params);
    const idx N = x.shape(0);
    py::gil_scoped_release nogil;
    if (N > 0) bad = mlp_forward<T>(o, xp, N, pp, layers.data(), (int)layers.size(), check_finite);
    return 0;
  });
  return bad;
}

py::tuple mlp_train_batches_py(py::handle params_h, py::handle grads_h, py::handle layers_h,
                               py::handle x_h, py::handle targets_h, py::handle order_h,
                               idx batch_size, idx first_batch, idx n_batches,
                               const std::string& loss_name, const std::string& opt_name,
                               py::handle hyper_h, py::handle state_a_h, py::handle state_b_h,
                               long step, py::handle dropout_u_h) {
  const char* op = "mlp_train_batches";
  py::array params = out_arg(op, "params", params_h);
  py::array grads = state_arg(op, "grads", grads_h, params);
  const idx n_params = params.size();
  auto layers = mlp_layers_arg(op, layers_h, n_params);
  const int L = (int)layers.size();
  MlpLoss loss;
  if (loss_name == "cross_entropy") loss = MlpLoss::CrossEntropy;
  else if (loss_name == "mse_mean") loss = MlpLoss::MseMean;
  else if (loss_name == "mse_sum") loss = MlpLoss::MseSum;
  else if (loss_name == "bce_with_logits") loss = MlpLoss::BceWithLogits;
  else if (loss_name == "bce") loss = MlpLoss::Bce;
  else throw py::value_error(cat(op, ": unknown loss '", loss_name, "'"));
  auto hyper = in_arg<double>(op, "hyper", hyper_h);
  if (hyper.ndim() != 1 || hyper.shape(0) != 8)
    throw py::value_error(cat(op, ": hyper must hold 8 values"));
  const double* hp = hyper.data();
  MlpOptimizer opt{};
  if (opt_name == "sgd") opt.kind = MlpOpt::SGD;
  else if (opt_name == "adam") opt.kind = MlpOpt::Adam;
  else if (opt_name == "adamw") opt.kind = MlpOpt::AdamW;
  else if (opt_name == "rmsprop") opt.kind = MlpOpt::RMSprop;
  else throw py::value_error(cat(op, ": unknown optimizer '", opt_name, "'"));
  // hyper = (lr, momentum, dampening, nesterov, weight_decay, beta1 (RMSprop: alpha), beta2, eps)
  opt.lr = hp[0]; opt.momentum = hp[1]; opt.dampening = hp[2]; opt.nesterov = hp[3] != 0;
  opt.weight_decay = hp[4]; opt.beta1 = opt.alpha = hp[5]; opt.beta2 = hp[6]; opt.eps = hp[7]; opt.step = step;
  py::object sa = state_a_h.is_none() ? py::object(py::none()) : py::object(state_arg(op, "state_a", state_a_h, params));
  py::object sb = state_b_h.is_none() ? py::object(py::none()) : py::object(state_arg(op, "state_b", state_b_h, params));
  const bool needs_b = opt.kind == MlpOpt::Adam || opt.kind == MlpOpt::AdamW ||
                       (opt.kind == MlpOpt::RMSprop && opt.momentum > 0);
  const bool needs_a = opt.kind != MlpOpt::SGD || opt.momentum != 0;
  if ((needs_a && sa.is_none()) || (needs_b && sb.is_none()))
    throw py::value_error(cat(op, ": optimizer state buffers missing"));
  if (step < 0) throw py::value_error(cat(op, ": step must be >= 0"));
  auto order = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(order_h);
  if (!order || order.ndim() != 1) throw py::type_error(cat(op, ": order must be a 1-D integer array"));
  return by_dtype(params, [&](auto tag) {
    using T = decltype(tag);
    auto x = in_arg<T>(op, "x", x_h);
    const idx N = x.ndim() == 2 ? x.shape(0) : -1;
    if (N < 0 || x.shape(1) != layers[0].in)
      throw py::value_error(cat(op, ": expected x of shape (N, ", layers[0].in, "), got ", shape_of(x)));
    if (order.shape(0) != N) throw py::value_error(cat(op, ": order must hold N = ", N, " indices"));
    const std::int64_t* op_ = order.data();
    for (idx i = 0; i < N; ++i)
      if (op_[i] < 0 || op_[i] >= N) throw py::value_error(cat(op, ": order[", i, "] = ", op_[i], " is not in [0, ", N, ")"));
    const idx total_batches = batch_size >= 1 ? (N + batch_size - 1) / batch_size : 0;
    if (batch_size < 1 || first_batch < 0 || n_batches < 0 || first_batch + n_batches > total_batches)
      throw py::value_error(cat(op, ": batches [", first_batch, ", ", first_batch + n_batches, ") of ", batch_size,
                                " do not fit ", N, " samples"));
    const idx OC = layers.back().out;
    py::array targets;
    if (loss == MlpLoss::CrossEntropy) {
      auto t = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(targets_h);
      if (!t || t.ndim() != 1 || t.shape(0) != N) throw py::value_error(cat(op, ": targets must be N = ", N, " labels"));
      for (idx i = 0; i < N; ++i)
        if (t.data()[i] < 0 || t.data()[i] >= OC)
          throw py::value_error(cat(op, ": label ", t.data()[i], " at index ", i, " is outside [0, ", OC, ")"));
      targets = t;
    } else {
      auto t = in_arg<T>(op, "targets", targets_h);
      if (t.ndim() != 2 || t.shape(0) != N || t.shape(1) != OC)
        throw py::value_error(cat(op, ": targets must have shape (", N, ", ", OC, "), got ", shape_of(t)));
      targets = t;
    }
    // the Dropout uniforms: rows × (Σ in of the layers with dropout) for each batch, no more
    // and no less, so that every batch's masks are the layer path's
    idx per_row = 0;
    for (const MlpLayer& ly : layers) per_row += ly.drop > 0 ? ly.in : 0;
    const idx first_row = first_batch * batch_size;
    const idx n_u = per_row * (std::min(N, (first_batch + n_batches) * batch_size) - std::min(N, first_row));
    py::array_t<T> dropout_u;
    if (per_row > 0 || !dropout_u_h.is_none()) {
      if (dropout_u_h.is_none())
        throw py::value_error(cat(op, ": the layers have dropout; dropout_u must hold their ", n_u, " uniforms"));
      dropout_u = in_arg<T>(op, "dropout_u", dropout_u_h);
      if (dropout_u.ndim() != 1 || dropout_u.shape(0) != n_u)
        throw py::value_error(cat(op, ": dropout_u must hold ", n_u, " uniforms for these batches, got shape ",
                                  shape_of(dropout_u)));
    }
    py::array_t<double> losses(n_batches);
    py::array_t<std::int64_t> correct(n_batches);
    T *pp = ptr<T>(params), *gp = ptr<T>(grads);
    const T* up = per_row > 0 ? cptr<T>(dropout_u) : nullptr;
    opt.state_a = ptr_or_null<T>(sa);
    opt.state_b = ptr_or_null<T>(sb);
    const T* xp = cptr<T>(x);
    const void* tp = targets.data();
    double* lp = losses.mutable_data();
    std::int64_t* cp = correct.mutable_data();
    {
      py::gil_scoped_release nogil;
      mlp_train_batches<T>(pp, gp, n_params, layers.data(), L, xp, tp, N, op_, batch_size, first_batch,
                           n_batches, loss, opt, up, lp, cp);
    }
    return py::make_tuple(losses, correct);
  });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastnn's C++ kernels. Use them through fastnn.backends; see csrc/README.md.";
  m.attr("__version__") = FASTNN_VERSION;

  // Runtime settings.
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error(cat("set_num_threads: n must be >= 1, got ", n));
    set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("simd_path", [] { return std::string(simd_name(simd_path())); });
  m.def("simd_available", [] {
    py::list l;
    for (Simd s : {Simd::Portable, Simd::AVX2, Simd::AVX512})
      if (s <= simd_best()) l.append(simd_name(s));
    return l;
  });
  m.def("_set_gemm_sup_max_macs", [](std::int64_t n) { return set_gemm_sup_max_macs(n); },
        py::arg("n"),
        "Testing knob: float GEMMs of at most n multiply-adds skip packing; returns the old "
        "limit. n < 0 restores the default, 0 packs every shape.");
  m.def("set_simd_path", [](const std::string& name) {
    for (Simd s : {Simd::Portable, Simd::AVX2, Simd::AVX512})
      if (name == simd_name(s)) {
        if (!set_simd_path(s))
          throw py::value_error(cat("set_simd_path: this CPU or build cannot run '", name, "'"));
        return;
      }
    throw py::value_error(cat("set_simd_path: unknown path '", name, "'; use portable, avx2 or avx512"));
  }, py::arg("name"));
  m.def("build_info", [] {
    py::dict d;
    d["version"] = FASTNN_VERSION;
#if defined(__clang__)
    d["compiler"] = cat("clang ", __clang_major__, ".", __clang_minor__, ".", __clang_patchlevel__);
#elif defined(__GNUC__)
    d["compiler"] = cat("gcc ", __GNUC__, ".", __GNUC_MINOR__, ".", __GNUC_PATCHLEVEL__);
#else
    d["compiler"] = "unknown";
#endif
#ifdef _OPENMP
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
    return d;
  });

  m.def("gemm", [](py::handle c, py::handle a, py::handle b, bool ta, bool tb, double alpha,
                   double beta, py::handle bias, const std::string& act) {
    gemm_py(c, a, b, ta, tb, alpha, beta, bias, act, false);
  }, py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
     py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("bias") = py::none(),
     py::arg("activation") = "none",
     "c = act(alpha * op(a) @ op(b) + beta * c + bias), in place.");
  m.def("gemm_reference", [](py::handle c, py::handle a, py::handle b, bool ta, bool tb,
                             double alpha, double beta, py::handle bias, const std::string& act) {
    gemm_py(c, a, b, ta, tb, alpha, beta, bias, act, true);
  }, py::arg("c"), py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
     py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("bias") = py::none(),
     py::arg("activation") = "none", "The triple-loop reference GEMM (for tests).");

  m.def("linear_forward", &linear_forward_py, py::arg("out"), py::arg("x"), py::arg("weight"),
        py::arg("bias"));
  m.def("linear_backward", &linear_backward_py, py::arg("dx"), py::arg("dweight"), py::arg("dbias"),
        py::arg("dout"), py::arg("x"), py::arg("weight"));

#define FASTNN_ACT(name, saved)                                                          \
  def_activation(m, #name,                                                                \
      [](auto* o, const auto* x, idx n) { name##_forward(o, x, n); },                     \
      [](auto* d, const auto* g, const auto* s, idx n) { name##_backward(d, g, s, n); },  \
      saved, #name " forward: out = f(x) elementwise, in place allowed.");
  FASTNN_ACT(relu, "x")
  FASTNN_ACT(sigmoid, "y")
  FASTNN_ACT(tanh, "y")
  FASTNN_ACT(gelu, "x")
#undef FASTNN_ACT

  m.def("leaky_relu_forward", [](py::handle out, py::handle x, double slope) {
    unary_param_py("leaky_relu_forward", "x", out, x, slope,
                   [](auto* o, const auto* xp, auto s, idx n) { leaky_relu_forward(o, xp, s, n); });
  }, py::arg("out"), py::arg("x"), py::arg("negative_slope") = 0.01);
  m.def("leaky_relu_backward", [](py::handle dx, py::handle dout, py::handle x, double slope) {
    binary_param_py("leaky_relu_backward", "dx", "dout", "x", dx, dout, x, slope,
                    [](auto* d, const auto* g, const auto* xp, double s, idx n) {
                      leaky_relu_backward(d, g, xp, std::decay_t<decltype(*d)>(s), n);
                    });
  }, py::arg("dx"), py::arg("dout"), py::arg("x"), py::arg("negative_slope") = 0.01);
  m.def("step_forward", [](py::handle out, py::handle x, double threshold) {
    unary_param_py("step_forward", "x", out, x, threshold,
                   [](auto* o, const auto* xp, auto t, idx n) { step_forward(o, xp, t, n); });
  }, py::arg("out"), py::arg("x"), py::arg("threshold") = 0.0);
  m.def("dropout_apply", [](py::handle out, py::handle x, py::handle u, double p) {
    if (!(p >= 0.0 && p < 1.0))
      throw py::value_error(cat("dropout_apply: p must be in [0, 1), got ", p));
    binary_param_py("dropout_apply", "out", "x", "u", out, x, u, p,
                    [](auto* o, const auto* xp, const auto* up, double q, idx n) { dropout_apply(o, xp, up, q, n); });
  }, py::arg("out"), py::arg("x"), py::arg("u"), py::arg("p"),
     "Inverted dropout with the mask drawn as uniforms u: out = x * (u >= p) / (1 - p)");
  m.def("softmax_forward", [](py::handle out, py::handle x) {
    rows_py("softmax_forward", out, x, py::none(), "x", "", [](auto* o, const auto* xp, const auto*, idx N, idx C) {
      softmax_forward(o, xp, N, C);
    });
  }, py::arg("out"), py::arg("x"));
  m.def("softmax_backward", [](py::handle dx, py::handle dout, py::handle y) {
    rows_py("softmax_backward", dx, dout, y, "dout", "y", [](auto* o, const auto* g, const auto* yp, idx N, idx C) {
      softmax_backward(o, g, yp, N, C);
    });
  }, py::arg("dx"), py::arg("dout"), py::arg("y"));

  m.def("cross_entropy_forward", &cross_entropy_py, py::arg("dlogits"), py::arg("logits"),
        py::arg("targets"));
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

  m.def("sgd_step", &sgd_py, py::arg("param"), py::arg("grad"), py::arg("momentum_buf"),
        py::arg("lr"), py::arg("momentum") = 0.0, py::arg("dampening") = 0.0,
        py::arg("nesterov") = false, py::arg("weight_decay") = 0.0, py::arg("first_step") = false);
  m.def("adam_step", &adam_py, py::arg("param"), py::arg("grad"), py::arg("exp_avg"),
        py::arg("exp_avg_sq"), py::arg("step"), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9,
        py::arg("beta2") = 0.999, py::arg("eps") = 1e-8, py::arg("weight_decay") = 0.0,
        py::arg("decoupled") = false);
  m.def("rmsprop_step", &rmsprop_py, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("momentum_buf"), py::arg("lr") = 1e-2, py::arg("alpha") = 0.99, py::arg("eps") = 1e-8,
        py::arg("weight_decay") = 0.0, py::arg("momentum") = 0.0);

  m.def("first_nonfinite", [](py::handle x_h) {
    const char* op = "first_nonfinite";
    py::object xo = py::reinterpret_borrow<py::object>(x_h);
    if (!py::isinstance<py::array>(xo)) xo = py::module_::import("numpy").attr("asarray")(xo);
    auto a = py::reinterpret_borrow<py::array>(xo);
    if (!is_f32(a) && !is_f64(a))  // integers and booleans are always finite
      return a.dtype().kind() == 'i' || a.dtype().kind() == 'u' || a.dtype().kind() == 'b'
                 ? idx(-1)
                 : throw py::type_error(cat(op, ": x must hold numbers, got ", std::string(py::str(a.dtype()))));
    idx r = -1;
    by_dtype(a, [&](auto tag) {
      using T = decltype(tag);
      auto x = in_arg<T>(op, "x", a);  // a C-ordered copy only if x is not contiguous
      const T* p = cptr<T>(x);
      const idx n = x.size();
      py::gil_scoped_release nogil;
      r = first_nonfinite<T>(p, n);
      return 0;
    });
    return r;
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
      py::gil_scoped_release nogil;
      pcg64_uniform<T>(o, n, st);
      return 0;
    });
    return py::make_tuple(st.state_hi, st.state_lo, st.has_uint32, st.uinteger);
  }, py::arg("out"), py::arg("state_hi"), py::arg("state_lo"), py::arg("inc_hi"), py::arg("inc_lo"),
     py::arg("has_uint32"), py::arg("uinteger"),
     "Fills out with what NumPy's PCG64 Generator.random(out.size, out.dtype) would return from this "
     "state; returns the state after (state_hi, state_lo, has_uint32, uinteger). See fastnn.random.uniform.");
  m.def("mlp_forward", &mlp_forward_py, py::arg("out"), py::arg("x"), py::arg("params"), py::arg("layers"),
        py::arg("check_finite") = false,
        "out = a Sequential of Linear layers and activations applied to x, in one call (fastnn/fused.py). "
        "With check_finite, returns the flat index of x's first NaN/inf or -1.");
  m.def("mlp_train_batches", &mlp_train_batches_py, py::arg("params"), py::arg("grads"), py::arg("layers"),
        py::arg("x"), py::arg("targets"), py::arg("order"), py::arg("batch_size"), py::arg("first_batch"),
        py::arg("n_batches"), py::arg("loss"), py::arg("optimizer"), py::arg("hyper"), py::arg("state_a"),
        py::arg("state_b"), py::arg("step"), py::arg("dropout_u") = py::none(),
        "Runs training steps of an MLP in one call; returns (batch losses, batch correct counts)");
}
