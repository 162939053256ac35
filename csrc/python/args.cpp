// The argument checks of args.h.
#include "python/args.h"

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
                             " must be C-contiguous; pass np.ascontiguousarray(", name, ")"));
  if (!a.writeable()) throw py::type_error(cat(op, ": ", name, " is read-only; pass a writeable array"));
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
  return py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(raw);
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

}  // namespace fastnn::py_args
