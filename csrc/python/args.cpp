// The argument checks of args.h.
#include "python/args.h"
#include <pybind11/stl.h>
#include <cstring>
#include <tuple>
#include <vector>

namespace fastnn::py_args {

std::string shape_of(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

std::string type_name(py::handle h) { return py::str(py::type::of(h).attr("__name__")); }

bool is_f32(const py::array& a) { return a.dtype().equal(py::dtype::of<float>()); }
bool is_f64(const py::array& a) { return a.dtype().equal(py::dtype::of<double>()); }

bool is_aligned(const py::array& a) {
  return (a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_) != 0;
}

py::array aligned(py::array a) {
  if (is_aligned(a)) return a;
  py::array copy(a.dtype(), std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
  // a is C-contiguous here (every caller asked for c_style first); memcpy has no alignment needs.
  std::memcpy(copy.mutable_data(), a.data(), static_cast<std::size_t>(a.nbytes()));
  return copy;
}

py::array out_arg(const char* op, const char* name, py::handle h) {
  if (!py::isinstance<py::array>(h))
    throw py::type_error(cat(op, ": ", name, " must be a numpy array it can write into, got ", type_name(h),
                             "; allocate it with np.empty(shape, dtype=np.float32)"));
  auto a = py::reinterpret_borrow<py::array>(h);
  if (!is_f32(a) && !is_f64(a))
    throw py::type_error(cat(op, ": ", name, " must be float32 or float64, got ", std::string(py::str(a.dtype())),
                             "; it is written in place, so it cannot be converted"));
  if (!(a.flags() & py::array::c_style))
    throw py::type_error(cat(op, ": ", name, " with shape ", shape_of(a),
                             " must be C-contiguous: the result is written into it, so a copy would be lost; "
                             "allocate it with np.empty(shape, dtype)"));
  if (!a.writeable()) throw py::type_error(cat(op, ": ", name, " is read-only; pass a writeable array"));
  if (!is_aligned(a))
    throw py::type_error(cat(op, ": ", name, " with shape ", shape_of(a), " is not aligned to its ", a.itemsize(),
                             "-byte items (it starts at an odd byte offset); allocate it with np.empty"));
  return a;
}

py::object opt_out_arg(const char* op, const char* name, py::handle h, const py::array& like) {
  if (h.is_none()) return py::none();
  py::array a = out_arg(op, name, h);
  if (a.dtype().not_equal(like.dtype()))
    throw py::type_error(cat(op, ": ", name, " has dtype ", std::string(py::str(a.dtype())),
                             " but the other outputs are ", std::string(py::str(like.dtype())),
                             "; use one dtype for all outputs"));
  return std::move(a);
}

py::array state_arg(const char* op, const char* name, py::handle h, const py::array& like) {
  py::array a = out_arg(op, name, h);
  if (a.dtype().not_equal(like.dtype()) || a.size() != like.size())
    throw py::value_error(cat(op, ": ", name, " has dtype ", std::string(py::str(a.dtype())), " and ", a.size(),
                              " elements but param has ", std::string(py::str(like.dtype())), " and ", like.size(),
                              "; state buffers must match the parameters"));
  no_overlap(op, name, a, "param", like, false);
  return a;
}

py::array_t<std::int64_t> labels_arg(const char* op, const char* name, py::handle h) {
  auto raw = py::array::ensure(h);
  if (!raw || (raw.dtype().kind() != 'i' && raw.dtype().kind() != 'u'))
    throw py::type_error(cat(op, ": ", name, " must be integer class indices, got ",
                             raw ? std::string(py::str(raw.dtype())) : std::string("a non-array"),
                             "; use y.astype(np.int64)"));
  return aligned(py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(raw));
}

void need_ndim(const char* op, const char* name, const py::array& a, int nd, const char* fix) {
  if (a.ndim() != nd)
    throw py::value_error(cat(op, ": ", name, " must be ", nd, "-D, got shape ", shape_of(a), "; ", fix));
}

void need_same_shape(const char* op, const char* na, const py::array& a, const char* nb, const py::array& b) {
  bool same = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
  if (!same)
    throw py::value_error(cat(op, ": ", na, " has shape ", shape_of(a), " but ", nb, " has shape ", shape_of(b),
                              "; they must have the same shape"));
}

void need_shape2(const char* op, const char* name, const py::array& a, idx r, idx c) {
  if (a.ndim() != 2 || a.shape(0) != r || a.shape(1) != c)
    throw py::value_error(cat(op, ": ", name, " has shape ", shape_of(a), "; expected (", r, ", ", c, ")"));
}

void no_overlap(const char* op, const char* out_name, const py::array& out, const char* in_name,
                const py::array& in, bool allow_identical) {
  auto lo1 = (const char*)out.data(), hi1 = lo1 + out.nbytes();
  auto lo2 = (const char*)in.data(), hi2 = lo2 + in.nbytes();
  if (out.nbytes() == 0 || in.nbytes() == 0 || hi1 <= lo2 || hi2 <= lo1) return;
  if (allow_identical && lo1 == lo2 && out.nbytes() == in.nbytes()) return;
  throw py::value_error(cat(op, ": ", out_name, " shares memory with ", in_name, "; pass a separate output array"));
}

idx checked_add(const char* op, const char* what, idx a, idx b) {
  idx r;
  if (__builtin_add_overflow(a, b, &r)) throw py::value_error(cat(op, ": ", what, " overflows (", a, " + ", b, ")"));
  return r;
}

idx checked_mul(const char* op, const char* what, idx a, idx b) {
  idx r;
  if (__builtin_mul_overflow(a, b, &r)) throw py::value_error(cat(op, ": ", what, " overflows (", a, " × ", b, ")"));
  return r;
}

std::pair<idx, idx> pair_arg(const char* op, const char* name, py::handle h, idx low) {
  idx a, b;
  try {
    if (py::isinstance<py::int_>(h)) {
      a = b = h.cast<idx>();
    } else {
      auto t = h.cast<std::vector<idx>>();
      if (t.size() != 2) throw py::cast_error();
      a = t[0], b = t[1];
    }
  } catch (const py::cast_error&) {
    throw py::type_error(cat(op, ": ", name, " must be an int or a pair of ints, got ", std::string(py::repr(h))));
  }
  if (a < low || b < low)
    throw py::value_error(cat(op, ": ", name, " must be >= ", low, ", got (", a, ", ", b, ")"));
  return {a, b};
}

std::array<idx, 4> padding_arg(const char* op, py::handle h) {
  std::vector<idx> v;
  try {
    if (py::isinstance<py::int_>(h)) v = {h.cast<idx>()};
    else if (!py::isinstance<py::str>(h)) v = h.cast<std::vector<idx>>();
  } catch (const py::cast_error&) {
    v.clear();
  }
  if (v.size() != 1 && v.size() != 2 && v.size() != 4)
    throw py::type_error(cat(op, ": padding must be an int, a pair of ints or four ints (top, bottom, left, right), "
                             "got ", std::string(py::repr(h))));
  for (idx p : v)
    if (p < 0) throw py::value_error(cat(op, ": padding must be >= 0, got ", std::string(py::repr(h))));
  if (v.size() == 1) return {v[0], v[0], v[0], v[0]};
  if (v.size() == 2) return {v[0], v[0], v[1], v[1]};
  return {v[0], v[1], v[2], v[3]};
}

idx out_size(const char* op, const char* axis, idx in, idx pad, idx k, idx stride, idx dilation) {
  const idx span = checked_add(op, "the kernel's span", checked_mul(op, "the kernel's span", dilation, k - 1), 1);
  const idx padded = checked_add(op, "the padded size", in, pad);
  if (padded < span)
    throw py::value_error(cat(op, ": the input's ", axis, " is ", in, " (", padded, " padded), smaller than the ",
                              "kernel's span of ", span, "; use a smaller kernel or more padding, or a larger image"));
  return (padded - span) / stride + 1;
}

Conv2d conv_geometry_of(const char* op, idx N, idx C, idx H, idx W, idx OC, idx Cg, idx KH, idx KW,
                        py::handle stride_h, py::handle padding_h, py::handle dilation_h, idx groups) {
  if (groups < 1) throw py::value_error(cat(op, ": groups must be >= 1, got ", groups));
  Conv2d s{};
  s.N = N, s.C = C, s.H = H, s.W = W, s.OC = OC, s.KH = KH, s.KW = KW, s.G = groups;
  if (OC % groups != 0 || C != checked_mul(op, "channels", Cg, groups))
    throw py::value_error(cat(op, ": x has ", C, " channels and weight has shape (", OC, ", ", Cg, ", ", KH, ", ", KW,
                              ") with groups=", groups, "; the weight must be (out_channels, in_channels/groups, kH, kW) "
                              "with both channel counts divisible by groups"));
  if (KH < 1 || KW < 1)
    throw py::value_error(cat(op, ": the kernel has size 0 (weight (", OC, ", ", Cg, ", ", KH, ", ", KW, "))"));
  std::tie(s.SH, s.SW) = pair_arg(op, "stride", stride_h, 1);
  std::tie(s.DH, s.DW) = pair_arg(op, "dilation", dilation_h, 1);
  const auto pad = padding_arg(op, padding_h);
  s.PH = pad[0], s.PW = pad[2];
  s.OH = out_size(op, "height", H, checked_add(op, "padding", pad[0], pad[1]), KH, s.SH, s.DH);
  s.OW = out_size(op, "width", W, checked_add(op, "padding", pad[2], pad[3]), KW, s.SW, s.DW);
  return s;
}

Pool2d pool_geometry_of(const char* op, idx N, idx C, idx H, idx W, py::handle kernel_h, py::handle stride_h,
                        py::handle padding_h) {
  Pool2d s{};
  s.N = N, s.C = C, s.H = H, s.W = W;
  // A window over padding alone has no maximum and no pixels to average (PyTorch refuses too)
  if (H == 0 || W == 0)
    throw py::value_error(cat(op, ": x has shape (", N, ", ", C, ", ", H, ", ", W,
                              "), an empty image plane; pooling needs images of at least 1x1 pixels"));
  std::tie(s.KH, s.KW) = pair_arg(op, "kernel_size", kernel_h, 1);
  if (stride_h.is_none()) s.SH = s.KH, s.SW = s.KW;
  else std::tie(s.SH, s.SW) = pair_arg(op, "stride", stride_h, 1);
  std::tie(s.PH, s.PW) = pair_arg(op, "padding", padding_h, 0);
  if (s.PH > s.KH / 2 || s.PW > s.KW / 2)
    throw py::value_error(cat(op, ": padding (", s.PH, ", ", s.PW, ") must be at most half the kernel size (", s.KH,
                              ", ", s.KW, ")"));
  s.OH = out_size(op, "height", H, 2 * s.PH, s.KH, s.SH, 1);
  s.OW = out_size(op, "width", W, 2 * s.PW, s.KW, s.SW, 1);
  return s;
}

}  // namespace fastnn::py_args
