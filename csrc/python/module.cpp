// fastnn._core: the module's runtime settings (threads, SIMD path, build information); the
// kernels are bound in kernels.cpp and the plan in plan.cpp.
#include <pybind11/stl.h>
#include <string>
#include <tuple>
#include <vector>
#include "core/tuner.h"
#include "gemm/gemm.h"
#include "gemm/ukernel.h"
#include "python/args.h"

namespace fastnn {
void bind_kernels(pybind11::module_& m);
void bind_plan(pybind11::module_& m);
}  // namespace fastnn

using namespace fastnn;
using namespace fastnn::py_args;

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastnn's C++ kernels and plan. Use them through fastnn.backends; see csrc/README.md.";
  m.attr("__version__") = FASTNN_VERSION;

  m.def("_set_thread_tuning", [](bool on) { return thread_tuner().set_enabled(on); }, py::arg("on"),
        "Whether training steps may drop to one thread when that is faster (core/tuner.h); returns the old setting");
  m.def("_thread_switches", [] { return thread_tuner().switches(); },
        "Times training switched between all threads and one since the module loaded");
  m.def("_thread_tuning_alternate", [](bool on) { thread_tuner().set_alternate(on); }, py::arg("on"),
        "For tests: training steps alternate between all threads and one");
  // The tuner's decisions on made-up step times, phase after phase (the load comes and goes):
  // each phase is (t_all, t_one, steps, stall_every, t_stall): a step on all threads takes t_all
  // (or, one in stall_every, t_stall: a scheduler time slice lost beside a busy process), on one
  // thread t_one. Returns, per phase, (steps run on one thread, seconds spent); for tests.
  m.def("_tuner_simulate", [](const std::vector<std::tuple<double, double, long, long, double>>& phases) {
    ThreadTuner t;
    py::list out;
    long all_steps = 0;
    for (const auto& [t_all, t_one, steps, stall_every, t_stall] : phases) {
      long on_one = 0;
      double spent = 0;
      for (long i = 0; i < steps; ++i) {
        const bool one = t.one_thread(1);
        double s = t_one;
        if (!one) s = (stall_every > 0 && ++all_steps % stall_every == 0) ? t_stall : t_all;
        on_one += one;
        spent += s;
        t.record(1, s);
      }
      out.append(py::make_tuple(on_one, spent));
    }
    return out;
  }, py::arg("phases"));
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error(cat("set_num_threads: n must be >= 1, got ", n));
    set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("forked_child", &forked_child, "Whether this process was forked after fastnn loaded (it then runs on one thread)");
  m.def("simd_path", [] { return std::string(simd_name(simd_path())); });
  m.def("fma_peak_gflops", [](double seconds) {
    if (!(seconds > 0 && seconds <= 10)) throw py::value_error(cat("fma_peak_gflops: seconds must be in (0, 10], got ", seconds));
    py::gil_scoped_release release;
    return fma_probe_gflops(seconds);
  }, py::arg("seconds") = 0.05,
        "One core's FMA limit in GFLOP/s on the SIMD path in use (12 independent FMA chains, the "
        "best of runs over about `seconds`): what the benchmarks' GFLOP/s are measured against.");
  m.def("simd_available", [] {
    py::list l;
    for (Simd s : {Simd::Portable, Simd::AVX2, Simd::AVX512})
      if (s <= simd_best()) l.append(simd_name(s));
    return l;
  });
  m.def("_set_gemm_sup_max_macs", [](std::int64_t n) { return set_gemm_sup_max_macs(n); }, py::arg("n"),
        "Testing knob: float GEMMs of at most n multiply-adds skip packing; returns the old "
        "limit. n < 0 restores the default, 0 packs every shape.");
  m.def("_set_conv_winograd", [](bool on) { return set_conv_winograd(on); }, py::arg("on"),
        "Testing knob: whether float 3x3 stride-1 convolutions with channels in 16s take Winograd "
        "F(2x2, 3x3) on the AVX-512 path (default True); returns the old setting.");
  m.def("_set_conv_plane", [](bool on) { return set_conv_plane(on); }, py::arg("on"),
        "Testing knob: whether float stride-1 convolutions of one input channel per group take the "
        "plane kernel on the vector paths (default True; the direct kernels' bits); returns the old setting.");
  m.def("_set_conv_phase", [](bool on) { return set_conv_phase(on); }, py::arg("on"),
        "Testing knob: whether float strided convolutions take the vector kernels over the input "
        "split by stride phase on the vector paths (default True; else im2col and the GEMM); returns "
        "the old setting.");
  m.def("_set_conv_sparse_max_density", [](double d) { return set_conv_sparse_max_density(d); }, py::arg("d"),
        "Testing knob: conv2d_backward's weight gradient takes the sparse kernel where at most this "
        "fraction of dout is nonzero (default 0.5; < 0: never, 1: always), its input gradient where at "
        "most 0.6 times it is (on CPUs with half-rate 512-bit FMAs; elsewhere only at 1: always); "
        "returns the old value.");
  m.def("set_simd_path", [](const std::string& name) {
    for (Simd s : {Simd::Portable, Simd::AVX2, Simd::AVX512})
      if (name == simd_name(s)) {
        if (!set_simd_path(s)) throw py::value_error(cat("set_simd_path: this CPU or build cannot run '", name, "'"));
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

  bind_kernels(m);
  bind_plan(m);
}
