// Argument checks shared by every binding (the only files that know Python are in this folder).
// For every kernel: validate arguments (shapes, dtypes, layouts) with messages that name the
// problem and the fix, take pointers with the GIL held, release the GIL around the kernel only.
//   Outputs / in-place buffers: must already be writeable C-contiguous float32/float64 arrays;
//     they are never converted (a converted copy would silently drop the result) -> TypeError.
//   Read-only inputs: converted to the output's dtype and C order (forcecast), never misread.
//   Alignment: kernels dereference float*/double*/int64*, which must be aligned to the item size
//     (NumPy allows arrays that are not, e.g. np.frombuffer(buf, offset=1)). Unaligned inputs
//     are copied; unaligned outputs are refused (TypeError), like non-contiguous ones.
// The output's dtype selects the float32 or float64 kernel. Sizes and offsets are int64 and
// every sum or product of them is checked before use (checked_add / checked_mul), so no
// argument can make a kernel read or write outside an array.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <sstream>
#include <string>
#include <utility>
#include <array>
#include "core/common.h"
#include "kernels/kernels.h"

namespace fastnn::py_args {

namespace py = pybind11;

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream s;
  (s << ... << args);
  return s.str();
}

std::string shape_of(const py::array& a);
std::string type_name(py::handle h);

// dtypes compare by value (an equal dtype that went through pickle is not the same object).
bool is_f32(const py::array& a);
bool is_f64(const py::array& a);
template <class T> bool is_dtype(const py::array& a) {
  if constexpr (sizeof(T) == 4) return is_f32(a);
  else return is_f64(a);
}

// Whether the data pointer is a multiple of the item size (NumPy's ALIGNED flag).
bool is_aligned(const py::array& a);
// `a` itself when aligned, else an aligned C-ordered copy of it (same dtype and shape).
py::array aligned(py::array a);

// An output or in-place buffer: checked, never converted.
py::array out_arg(const char* op, const char* name, py::handle h);
// An optional output: None or a valid output of the same dtype as `like`.
py::object opt_out_arg(const char* op, const char* name, py::handle h, const py::array& like);
// An output the size of `like` with its dtype (an optimizer's state buffer, a gradient buffer).
py::array state_arg(const char* op, const char* name, py::handle h, const py::array& like);

// A read-only input, converted to T and C order if needed.
template <class T>
py::array_t<T> in_arg(const char* op, const char* name, py::handle h) {
  if (h.is_none()) throw py::type_error(cat(op, ": ", name, " must be an array, got None"));
  auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(h);
  if (!a)
    throw py::type_error(cat(op, ": ", name, " (", type_name(h), ") cannot be converted to ",
                             sizeof(T) == 4 ? "float32" : "float64"));
  return py::array_t<T>(aligned(std::move(a)));
}
// Integer class labels (or indices) as int64, C order.
py::array_t<std::int64_t> labels_arg(const char* op, const char* name, py::handle h);

void need_ndim(const char* op, const char* name, const py::array& a, int nd, const char* fix);
void need_same_shape(const char* op, const char* na, const py::array& a, const char* nb, const py::array& b);
void need_shape2(const char* op, const char* name, const py::array& a, idx r, idx c);
// Writing the output while reading an overlapping input would corrupt the result. Elementwise
// kernels may run exactly in place (same buffer); nothing may partially overlap.
void no_overlap(const char* op, const char* out_name, const py::array& out, const char* in_name,
                const py::array& in, bool allow_identical);

// a + b and a * b for sizes and offsets, or ValueError naming `what` (no int64 overflow).
idx checked_add(const char* op, const char* what, idx a, idx b);
idx checked_mul(const char* op, const char* what, idx a, idx b);

// Image geometry (convolution and pooling arguments as PyTorch takes them).
// An int or a pair of ints, each >= low (stride, dilation, kernel size, padding).
std::pair<idx, idx> pair_arg(const char* op, const char* name, py::handle h, idx low);
// Padding: an int, a pair (rows, columns) on both sides, or (top, bottom, left, right).
std::array<idx, 4> padding_arg(const char* op, py::handle h);
// (in + pad − dilation·(k − 1) − 1) / stride + 1, or ValueError when the padded input is
// smaller than the (dilated) kernel.
idx out_size(const char* op, const char* axis, idx in, idx pad, idx k, idx stride, idx dilation);
// conv2d of x (N, C, H, W) with a weight (OC, Cg, KH, KW), checked.
Conv2d conv_geometry_of(const char* op, idx N, idx C, idx H, idx W, idx OC, idx Cg, idx KH, idx KW,
                        py::handle stride, py::handle padding, py::handle dilation, idx groups);
// A pooling window over x (N, C, H, W), padding at most half the window as PyTorch requires
// (every window holds part of the image); stride None: the window.
Pool2d pool_geometry_of(const char* op, idx N, idx C, idx H, idx W, py::handle kernel, py::handle stride,
                        py::handle padding);

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

// Runs a kernel with the GIL released (pointers and sizes were taken with it held).
template <class F>
auto nogil(F f) {
  py::gil_scoped_release release;
  return f();
}

}  // namespace fastnn::py_args
