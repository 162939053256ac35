// Python bindings of the plan (plan/plan.h): fastnn._core.Plan, built op by op by fastnn/plan.py,
// and the optimizer steps it runs. Every slot, size and offset a call passes is checked here,
// with overflow-safe arithmetic, before it can reach a kernel: a wrong or hostile argument is a
// ValueError, never a read or write outside the parameter buffer.
#include <memory>
#include <string>
#include <vector>
#include "plan/plan.h"
#include <pybind11/stl.h>
#include "python/args.h"

namespace fastnn {
void bind_plan(pybind11::module_& m);
}

using namespace fastnn;
using namespace fastnn::py_args;

namespace {

// One optimizer update over [start, stop) of the flat buffers, with its state buffers and
// settings; made by fastnn/optim/optimizer.py for each span an optimizer steps.
struct PlanStep {
  std::string kind;  // "sgd", "adam" or "rmsprop"
  idx start = 0, stop = 0;
  py::object a, b;   // sgd: momentum_buf; adam: exp_avg, exp_avg_sq; rmsprop: square_avg, momentum_buf
  bool first = false, nesterov = false, decoupled = false;
  long step = 0;
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0, beta1 = 0, beta2 = 0, eps = 0, alpha = 0;
};

class PyPlan {
  // Calls f(plan) with the float or double plan (auto-typed callers need it defined first).
  template <class F>
  auto with(F f) const {
    return f32_ ? f(*pf_) : f(*pd_);
  }

 public:
  PyPlan(py::handle params_h, py::handle grads_h, bool training) : training_(training) {
    const char* op = "Plan";
    params_ = out_arg(op, "params", params_h);
    grads_ = state_arg(op, "grads", grads_h, params_);
    need_ndim(op, "params", params_, 1, "pass the model's flat parameter buffer");
    f32_ = is_f32(params_);
    if (f32_) pf_ = std::make_unique<Plan<float>>(ptr<float>(params_), ptr<float>(grads_), params_.size());
    else pd_ = std::make_unique<Plan<double>>(ptr<double>(params_), ptr<double>(grads_), params_.size());
  }

  bool training() const { return training_; }
  int n_slots() const { return with([](auto& p) { return p.n_slots(); }); }
  idx width(int slot) const { return with([&](auto& p) { return p.width(checked_slot("width", slot)); }); }

  void set_input(idx width) {
    if (n_ops_ > 0) throw py::value_error("Plan.set_input: the input is set before any op");
    if (width < 0) throw py::value_error(cat("Plan.set_input: width must be >= 0, got ", width));
    with([&](auto& p) { p.set_input(width); return 0; });
  }

  // out (…, OC) = x (…, C) · Wᵀ + b, over `lead` rows of C per sample.
  int linear(int src, idx w_off, idx b_off, idx C, idx OC, idx lead) {
    const char* op = "Plan.linear";
    checked_slot(op, src);
    if (C < 1 || OC < 1 || lead < 1)
      throw py::value_error(cat(op, ": sizes must be >= 1, got C=", C, ", OC=", OC, ", lead=", lead));
    if (checked_mul(op, "lead × C", lead, C) != width(src))
      throw py::value_error(cat(op, ": the input holds ", width(src), " values per sample, not ", lead, " × ", C));
    span(op, "the weight", w_off, checked_mul(op, "the weight size", C, OC));
    if (b_off != -1) span(op, "the bias", b_off, OC);
    const idx out_w = checked_mul(op, "the output width", lead, OC);
    return with([&](auto& p) {
      using T = std::remove_reference_t<decltype(p)>;
      const int out = p.add_slot(out_w);
      p.add_op(make_linear<typename T::value_type>(src, out, C, OC, lead, w_off, b_off), true);
      ++n_ops_;
      return out;
    });
  }

  int activation(int src, const std::string& name, double param) {
    const char* op = "Plan.activation";
    checked_slot(op, src);
    const ActInfo* a = find_activation(name.c_str());
    if (!a) throw py::value_error(cat(op, ": unknown activation '", name, "'"));
    if (training_ && !a->has_backward)
      throw py::value_error(cat(op, ": '", name, "' has no backward, so a training plan cannot hold it"));
    // a ReLU right after a convolution runs inside it (the same bits, one pass less each way)
    if (with([&](auto& p) { return p.fuse_activation(src, a->act); })) return src;
    return unary(src, width(src), [&](auto tag, int out) {
      return make_activation<decltype(tag)>(src, out, a->act, param, width(src));
    });
  }

  int softmax(int src, idx C) {
    const char* op = "Plan.softmax";
    checked_slot(op, src);
    if (C < 1 || width(src) % C != 0)
      throw py::value_error(cat(op, ": rows of C=", C, " do not tile the input's ", width(src), " values per sample"));
    return unary(src, width(src), [&](auto tag, int out) {
      return make_softmax<decltype(tag)>(src, out, C, width(src) / C);
    });
  }

  int dropout(int src, double p) {
    const char* op = "Plan.dropout";
    checked_slot(op, src);
    if (!training_) throw py::value_error(cat(op, ": dropout is the identity outside training; an inference plan has none"));
    if (!(p >= 0.0 && p < 1.0)) throw py::value_error(cat(op, ": p must be in [0, 1), got ", p));
    return unary(src, width(src), [&](auto tag, int out) {
      return make_dropout<decltype(tag)>(src, out, p, width(src));
    });
  }

  int add(int a, int b) {
    const char* op = "Plan.add";
    checked_slot(op, a);
    checked_slot(op, b);
    if (width(a) != width(b))
      throw py::value_error(cat(op, ": the inputs hold ", width(a), " and ", width(b), " values per sample"));
    const idx w = width(a);
    return with([&](auto& p) {
      using T = typename std::remove_reference_t<decltype(p)>::value_type;
      const int out = p.add_slot(w);
      p.add_op(make_add<T>(a, b, out, w), false);
      ++n_ops_;
      return out;
    });
  }

  // conv2d over src, one sample's C×H×W values; weight (OC, C/groups, KH, KW) at w_off.
  int conv2d(int src, idx w_off, idx b_off, idx C, idx H, idx W, idx OC, idx KH, idx KW, py::handle stride,
             py::handle padding, py::handle dilation, idx groups) {
    const char* op = "Plan.conv2d";
    checked_slot(op, src);
    if (C < 1 || H < 1 || W < 1 || OC < 1 || groups < 1 || C % groups)
      throw py::value_error(cat(op, ": sizes must be >= 1 and C divisible by groups, got C=", C, ", H=", H, ", W=", W,
                                ", OC=", OC, ", groups=", groups));
    if (checked_mul(op, "the input size", checked_mul(op, "the input size", C, H), W) != width(src))
      throw py::value_error(cat(op, ": the input holds ", width(src), " values per sample, not ", C, " × ", H, " × ", W));
    const Conv2d g = conv_geometry_of(op, 1, C, H, W, OC, C / groups, KH, KW, stride, padding, dilation, groups);
    span(op, "the weight", w_off, checked_mul(op, "the weight size", checked_mul(op, "the weight size", OC, C / groups),
                                              checked_mul(op, "the weight size", KH, KW)));
    if (b_off != -1) span(op, "the bias", b_off, OC);
    const idx out_w = checked_mul(op, "the output size", checked_mul(op, "the output size", OC, g.OH), g.OW);
    return push_op(out_w, true, [&](auto tag, int out) { return make_conv2d<decltype(tag)>(src, out, g, w_off, b_off); });
  }

  int pool2d(int src, const std::string& kind, idx C, idx H, idx W, py::handle kernel, py::handle stride,
             py::handle padding) {
    const char* op = "Plan.pool2d";
    checked_slot(op, src);
    if (kind != "max" && kind != "avg") throw py::value_error(cat(op, ": kind must be 'max' or 'avg', got '", kind, "'"));
    if (C < 1 || H < 1 || W < 1) throw py::value_error(cat(op, ": sizes must be >= 1"));
    if (checked_mul(op, "the input size", checked_mul(op, "the input size", C, H), W) != width(src))
      throw py::value_error(cat(op, ": the input holds ", width(src), " values per sample, not ", C, " × ", H, " × ", W));
    if (H * W > INT32_MAX) throw py::value_error(cat(op, ": an image plane over 2^31 pixels"));
    const Pool2d g = pool_geometry_of(op, 1, C, H, W, kernel, stride, padding);
    // a max pool right after a convolution runs inside it (the same bits, its output never
    // leaves the cache)
    if (kind == "max") {
      const int fused = with([&](auto& p) { return p.fuse_pool(src, g); });
      if (fused >= 0) return fused;
    }
    return push_op(C * g.OH * g.OW, false, [&](auto tag, int out) { return make_pool2d<decltype(tag)>(src, out, g, kind == "max"); });
  }

  // BatchNorm of src as (C, L) per sample; gamma at w_off, beta at b_off; the running
  // statistics and the counter are the layer's arrays, updated in place when batch_stats.
  int batchnorm(int src, idx w_off, idx b_off, idx C, idx L, double eps, double momentum, py::handle rm_h,
                py::handle rv_h, py::handle counter_h, bool batch_stats) {
    const char* op = "Plan.batchnorm";
    checked_slot(op, src);
    if (C < 1 || L < 1 || checked_mul(op, "the input size", C, L) != width(src))
      throw py::value_error(cat(op, ": the input holds ", width(src), " values per sample, not ", C, " × ", L));
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
      throw py::value_error(cat(op, ": eps must be > 0 and momentum in [0, 1], got ", eps, " and ", momentum));
    if (batch_stats && !training_) throw py::value_error(cat(op, ": an inference plan uses the running statistics"));
    span(op, "gamma", w_off, C);
    span(op, "beta", b_off, C);
    auto stat = [&](py::handle h, const char* name) {
      py::array a = out_arg(op, name, h);
      if (a.dtype().not_equal(params_.dtype()) || a.ndim() != 1 || a.shape(0) != C)
        throw py::value_error(cat(op, ": ", name, " must hold ", C, " ", std::string(py::str(params_.dtype())),
                                  " values, got shape ", shape_of(a), " of ", std::string(py::str(a.dtype()))));
      no_overlap(op, name, a, "params", params_, false);
      no_overlap(op, name, a, "grads", grads_, false);
      keep_.push_back(a);
      return a;
    };
    py::array mean = stat(rm_h, "running_mean"), var = stat(rv_h, "running_var");
    no_overlap(op, "running_mean", mean, "running_var", var, false);
    if (!py::isinstance<py::array>(counter_h)) throw py::type_error(cat(op, ": num_batches_tracked must be an array"));
    auto counter = py::reinterpret_borrow<py::array>(counter_h);
    if (counter.dtype().not_equal(py::dtype::of<std::int64_t>()) || counter.size() != 1 || !counter.writeable() ||
        !is_aligned(counter))
      throw py::type_error(cat(op, ": num_batches_tracked must be one writeable int64, got ", shape_of(counter), " of ",
                               std::string(py::str(counter.dtype()))));
    keep_.push_back(counter);
    auto* cnt = static_cast<std::int64_t*>(counter.mutable_data());
    return push_op(width(src), true, [&](auto tag, int out) {
      using T = decltype(tag);
      return make_batchnorm<T>(src, out, C, L, w_off, b_off, eps, momentum, ptr<T>(mean), ptr<T>(var), cnt, batch_stats);
    });
  }

  // A slot showing src's values with a gradient of its own (a residual path's input).
  int branch(int src) {
    checked_slot("Plan.branch", src);
    return with([&](auto& p) {
      using T = typename std::remove_reference_t<decltype(p)>::value_type;
      const int out = p.add_alias(src);
      p.add_op(make_branch<T>(src, out, p.width(src)), false);
      ++n_ops_;
      return out;
    });
  }

  void set_output(int slot) {
    checked_slot("Plan.set_output", slot);
    with([&](auto& p) { p.set_output(slot); return 0; });
  }

  idx predict(py::handle out_h, py::handle x_h, idx batch, bool check_finite) {
    const char* op = "Plan.predict";
    if (training_) throw py::value_error(cat(op, ": this is a training plan; predict runs an inference plan"));
    if (batch < 0) throw py::value_error(cat(op, ": batch_size must be >= 1 (or 0: the plan chooses), got ", batch));
    py::array out = out_arg(op, "out", out_h);
    py::array x = data_arg(op, "x", x_h);
    const idx N = x.ndim() ? x.shape(0) : 0;
    if (x.ndim() < 1 || x.size() != checked_mul(op, "x's size", N, width(0)))
      throw py::value_error(cat(op, ": x has shape ", shape_of(x), "; the plan takes ", width(0), " values per sample"));
    const int o = with([](auto& p) { return p.output(); });
    if (out.ndim() < 1 || out.shape(0) != N || out.size() != checked_mul(op, "out's size", N, width(o)))
      throw py::value_error(cat(op, ": out has shape ", shape_of(out), "; expected ", N, " rows of ", width(o), " values"));
    no_overlap(op, "out", out, "x", x, false);
    no_overlap(op, "out", out, "params", params_, false);
    return with([&](auto& p) {
      using T = typename std::remove_reference_t<decltype(p)>::value_type;
      T* op_ = ptr<T>(out);
      const T* xp = cptr<T>(x);
      return nogil([&] { return p.predict(op_, xp, N, batch, check_finite); });
    });
  }

  // Runs batches [first_batch, first_batch + n_batches) of an epoch. rng is fastnn's PCG64
  // state as (state_hi, state_lo, inc_hi, inc_lo, has_uint32, uinteger); stop is a uint8 flag
  // fit's Ctrl-C handler sets. Returns (losses, correct, rng state after, error): error is an
  // exception for the caller to raise once it has recorded the completed batches (a Ctrl-C, a
  // probability outside [0, 1] for BCE), else None. losses and correct hold the completed
  // batches only.
  py::tuple train(py::handle x_h, py::handle targets_h, py::handle order_h, idx B, idx first_batch, idx n_batches,
                  const std::string& loss_name, const std::vector<PlanStep*>& optimizer, py::tuple rng, py::handle stop_h,
                  py::handle shards_h) {
    const char* op = "Plan.train";
    if (!training_) throw py::value_error(cat(op, ": this is an inference plan; train runs a training plan"));
    const int o = with([](auto& p) { return p.output(); });
    if (o == 0) throw py::value_error(cat(op, ": the plan has no output op"));
    LossKind loss;
    if (loss_name == "cross_entropy") loss = LossKind::CrossEntropy;
    else if (loss_name == "mse_mean") loss = LossKind::MseMean;
    else if (loss_name == "mse_sum") loss = LossKind::MseSum;
    else if (loss_name == "bce_with_logits") loss = LossKind::BceWithLogits;
    else if (loss_name == "bce") loss = LossKind::Bce;
    else throw py::value_error(cat(op, ": unknown loss '", loss_name, "'"));

    py::array x = data_arg(op, "x", x_h);
    const idx N = x.ndim() ? x.shape(0) : 0;
    if (x.ndim() < 1 || x.size() != checked_mul(op, "x's size", N, width(0)))
      throw py::value_error(cat(op, ": x has shape ", shape_of(x), "; the plan takes ", width(0), " values per sample"));
    const idx OC = width(o);
    py::array targets;
    if (loss == LossKind::CrossEntropy) {
      targets = exact_arg<std::int64_t>(op, "targets", targets_h);
      if (targets.ndim() != 1 || targets.shape(0) != N)
        throw py::value_error(cat(op, ": targets must be ", N, " labels, got shape ", shape_of(targets)));
    } else {
      targets = data_arg(op, "targets", targets_h);
      if (targets.ndim() < 1 || targets.shape(0) != N || targets.size() != checked_mul(op, "targets' size", N, OC))
        throw py::value_error(cat(op, ": targets must be ", N, " rows of ", OC, " values, got shape ", shape_of(targets)));
    }
    auto order = exact_arg<std::int64_t>(op, "order", order_h);
    if (order.ndim() != 1 || order.shape(0) != N)
      throw py::value_error(cat(op, ": order must hold N = ", N, " indices, got shape ", shape_of(order)));
    const idx total = B >= 1 ? N / B + (N % B != 0) : 0;
    if (B < 1 || first_batch < 0 || n_batches < 0 || first_batch > total || n_batches > total - first_batch)
      throw py::value_error(cat(op, ": batches [", first_batch, ", ", first_batch, " + ", n_batches, ") of ", B,
                                " do not fit ", N, " samples"));
    // the rows these batches read, and their labels, must be in range
    const std::int64_t* ord = static_cast<const std::int64_t*>(order.data());
    const idx r_end = std::min(N, (first_batch + n_batches) * B);
    for (idx r = first_batch * B; r < r_end; ++r) {
      if (ord[r] < 0 || ord[r] >= N)
        throw py::value_error(cat(op, ": order[", r, "] = ", ord[r], " is not in [0, ", N, ")"));
      if (loss == LossKind::CrossEntropy) {
        const std::int64_t t = static_cast<const std::int64_t*>(targets.data())[ord[r]];
        if (t < 0 || t >= OC)
          throw py::value_error(cat(op, ": label ", t, " at index ", ord[r], " is outside [0, ", OC, ")"));
      }
    }
    if (py::len(rng) != 6) throw py::value_error(cat(op, ": rng must be a PCG64 state of 6 values"));
    Pcg64State st{rng[0].cast<std::uint64_t>(), rng[1].cast<std::uint64_t>(), rng[2].cast<std::uint64_t>(),
                  rng[3].cast<std::uint64_t>(), rng[4].cast<bool>(), rng[5].cast<std::uint32_t>()};
    const std::uint8_t* stop_flag = nullptr;
    py::array stop_arr;
    if (!stop_h.is_none()) {
      stop_arr = exact_arg<std::uint8_t>(op, "stop", stop_h);
      if (stop_arr.size() != 1) throw py::value_error(cat(op, ": stop must be one uint8 flag"));
      stop_flag = static_cast<const std::uint8_t*>(stop_arr.data());
    }

    // Data-parallel training: shards = (count, lo, hi, shard_grads, shard_losses,
    // shard_correct, shard_stats, all_stats, combine), as TrainArgs describes them (the stats
    // None when the plan logs none); combine(batch) -> (loss, correct), or None to end the run.
    idx n_shards = 0, lo = 0, hi = 0;
    py::array shard_grads, shard_losses, shard_correct, shard_stats, all_stats;
    py::object combine;
    const idx sw = stats_width();
    if (!shards_h.is_none()) {
      py::tuple t = py::reinterpret_borrow<py::object>(shards_h).cast<py::tuple>();
      if (py::len(t) != 9)
        throw py::value_error(cat(op, ": shards must be (count, lo, hi, grads, losses, correct, stats, all_stats, combine)"));
      n_shards = t[0].cast<idx>(), lo = t[1].cast<idx>(), hi = t[2].cast<idx>();
      if (n_shards < 1 || lo < 0 || hi <= lo || hi > n_shards)
        throw py::value_error(cat(op, ": shards [", lo, ", ", hi, ") of ", n_shards, " is not a range of shards"));
      shard_grads = out_arg(op, "shard_grads", t[3]);
      if (shard_grads.dtype().not_equal(params_.dtype()) ||
          shard_grads.size() != checked_mul(op, "shard_grads' size", hi - lo, params_.size()))
        throw py::value_error(cat(op, ": shard_grads must hold ", hi - lo, " × ", params_.size(), " ",
                                  std::string(py::str(params_.dtype())), " values"));
      no_overlap(op, "shard_grads", shard_grads, "params", params_, false);
      no_overlap(op, "shard_grads", shard_grads, "grads", grads_, false);
      shard_losses = exact_arg<double>(op, "shard_losses", t[4]);
      shard_correct = exact_arg<std::int64_t>(op, "shard_correct", t[5]);
      if (shard_losses.size() != hi - lo || shard_correct.size() != hi - lo)
        throw py::value_error(cat(op, ": shard_losses and shard_correct must hold ", hi - lo, " values"));
      if (sw > 0) {
        shard_stats = out_arg(op, "shard_stats", t[6]);
        all_stats = out_arg(op, "all_stats", t[7]);
        if (shard_stats.dtype().not_equal(params_.dtype()) || all_stats.dtype().not_equal(params_.dtype()) ||
            shard_stats.size() != checked_mul(op, "shard_stats' size", hi - lo, sw) ||
            all_stats.size() != checked_mul(op, "all_stats' size", n_shards, sw))
          throw py::value_error(cat(op, ": shard_stats and all_stats must hold ", hi - lo, " and ", n_shards, " × ", sw,
                                    " ", std::string(py::str(params_.dtype())), " values"));
        no_overlap(op, "shard_stats", shard_stats, "all_stats", all_stats, false);
      }
      combine = t[8];
      if (!PyCallable_Check(combine.ptr())) throw py::type_error(cat(op, ": combine must be callable"));
    }

    py::array_t<double> losses(n_batches);
    py::array_t<std::int64_t> correct(n_batches);
    py::object pending = py::none();
    TrainResult res = with([&](auto& p) {
      using T = typename std::remove_reference_t<decltype(p)>::value_type;
      std::vector<std::unique_ptr<OptStep<T>>> steps;
      for (const PlanStep* s : optimizer) steps.push_back(make_step<T>(op, *s));
      TrainArgs<T> a;
      a.x = cptr<T>(x), a.targets = targets.data(), a.N = N, a.B = B;
      a.first_batch = first_batch, a.n_batches = n_batches, a.order = ord, a.loss = loss;
      for (auto& s : steps) a.optimizer.push_back(s.get());
      a.rng = &st, a.losses = losses.mutable_data(), a.correct = correct.mutable_data();
      // Between batches: run Python's signal handlers (fit's Ctrl-C handler sets the flag;
      // the default one raises KeyboardInterrupt, kept to raise after the batches are recorded)
      a.stop = [&]() {
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) {
          pending = py::error_already_set().value();
          return true;
        }
        return stop_flag && *stop_flag;
      };
      if (n_shards) {
        a.shards = n_shards, a.shard_lo = lo, a.shard_hi = hi;
        a.shard_grads = ptr<T>(shard_grads), a.shard_losses = ptr<double>(shard_losses);
        a.shard_correct = ptr<std::int64_t>(shard_correct);
        if (sw > 0) a.shard_stats = ptr<T>(shard_stats), a.all_stats = ptr<T>(all_stats);
        // an exception in combine (an MPI error) is kept, to raise after the completed batches
        a.combine = [&](idx batch, double* loss, std::int64_t* hits) {
          py::gil_scoped_acquire gil;
          try {
            py::object r = combine(batch);
            if (r.is_none()) return false;
            auto pair = r.cast<py::tuple>();
            *loss = pair[0].cast<double>(), *hits = pair[1].cast<std::int64_t>();
            return true;
          } catch (py::error_already_set& e) {
            pending = e.value();
            return false;
          }
        };
      }
      return nogil([&] { return p.train(a); });
    });
    if (res.bad_prob >= 0 && pending.is_none())
      pending = py::module_::import("builtins").attr("ValueError")(cat(
          "bce_forward: prob must be probabilities in [0, 1], got ", res.bad_value, " at flat index ", res.bad_prob,
          "; apply a sigmoid first, or use BCEWithLogitsLoss on logits"));
    losses.resize({res.done});
    correct.resize({res.done});
    return py::make_tuple(losses, correct, py::make_tuple(st.state_hi, st.state_lo, st.has_uint32, st.uinteger), pending);
  }

  void release() { with([](auto& p) { p.release(); return 0; }); }
  idx stats_width() const { return with([](auto& p) { return p.stats_width(); }); }
  idx auto_rows() const { return with([](auto& p) { return p.auto_rows(); }); }
  void set_profiling(bool on) { with([&](auto& p) { p.set_profiling(on); return 0; }); }
  // [(op name, forward seconds, backward seconds, batches)] since profiling was turned on
  py::list op_times() const {
    return with([](auto& p) {
      py::list l;
      for (size_t i = 0; i < p.op_times().size(); ++i) {
        const auto& t = p.op_times()[i];
        l.append(py::make_tuple(p.op_name(i), t.forward_s, t.backward_s, t.batches));
      }
      return l;
    });
  }
  size_t workspace_bytes() const { return with([](auto& p) { return p.workspace_bytes(); }); }

 private:
  int checked_slot(const char* op, int slot) const {
    const int n = with([](auto& p) { return p.n_slots(); });
    if (slot < 0 || slot >= n) throw py::value_error(cat(op, ": slot ", slot, " does not exist (the plan has ", n, ")"));
    return slot;
  }

  // [off, off + n) must lie in the parameter buffer.
  void span(const char* op, const char* what, idx off, idx n) const {
    const idx total = params_.size();
    if (off < 0 || checked_add(op, what, off, n) > total)
      throw py::value_error(cat(op, ": ", what, " at offset ", off, " with ", n, " values does not fit the parameter "
                                "buffer of ", total));
  }

  // Adds the op make(T{}, out) writing a new slot of `w` values per sample.
  template <class F>
  int push_op(idx w, bool has_params, F make) {
    return with([&](auto& p) {
      using T = typename std::remove_reference_t<decltype(p)>::value_type;
      const int out = p.add_slot(w);
      p.add_op(make(T{}, out), has_params);
      ++n_ops_;
      return out;
    });
  }

  template <class F>
  int unary(int src, idx w, F make) {
    (void)src;
    return push_op(w, false, make);
  }

  // Data the plan reads in place (it never converts a dataset): the params' dtype, C order.
  py::array data_arg(const char* op, const char* name, py::handle h) const {
    if (!py::isinstance<py::array>(h)) throw py::type_error(cat(op, ": ", name, " must be a numpy array, got ", type_name(h)));
    auto a = py::reinterpret_borrow<py::array>(h);
    if (a.dtype().not_equal(params_.dtype()) || !(a.flags() & py::array::c_style) || !is_aligned(a))
      throw py::type_error(cat(op, ": ", name, " must be an aligned C-contiguous ", std::string(py::str(params_.dtype())),
                               " array, got ", std::string(py::str(a.dtype())), " with shape ", shape_of(a)));
    return a;
  }

  template <class I>
  static py::array exact_arg(const char* op, const char* name, py::handle h) {
    if (!py::isinstance<py::array>(h)) throw py::type_error(cat(op, ": ", name, " must be a numpy array, got ", type_name(h)));
    auto a = py::reinterpret_borrow<py::array>(h);
    if (a.dtype().not_equal(py::dtype::of<I>()) || !(a.flags() & py::array::c_style) || !is_aligned(a))
      throw py::type_error(cat(op, ": ", name, " must be an aligned C-contiguous ", std::string(py::str(py::dtype::of<I>())),
                               " array, got ", std::string(py::str(a.dtype()))));
    return a;
  }

  template <class T>
  std::unique_ptr<OptStep<T>> make_step(const char* op, const PlanStep& s) {
    if (s.start < 0 || s.stop < s.start || s.stop > params_.size())
      throw py::value_error(cat(op, ": the optimizer span [", s.start, ", ", s.stop, ") does not fit the parameter "
                                "buffer of ", params_.size()));
    const idx n = s.stop - s.start;
    auto buf = [&](const py::object& h, const char* name, bool needed) -> T* {
      if (h.is_none()) {
        if (needed) throw py::value_error(cat(op, ": the ", s.kind, " step needs its ", name, " buffer"));
        return nullptr;
      }
      py::array a = out_arg(op, name, h);
      if (a.dtype().not_equal(params_.dtype()) || a.size() != n)
        throw py::value_error(cat(op, ": ", name, " must hold ", n, " ", std::string(py::str(params_.dtype())),
                                  " values, got ", a.size(), " ", std::string(py::str(a.dtype()))));
      no_overlap(op, name, a, "params", params_, false);
      no_overlap(op, name, a, "grads", grads_, false);
      return ptr<T>(a);
    };
    if (s.kind == "sgd")
      return make_sgd<T>(s.start, s.stop, buf(s.a, "momentum_buf", s.momentum != 0), s.first, s.lr, s.momentum,
                         s.dampening, s.nesterov, s.weight_decay);
    if (s.kind == "adam") {
      T *m = buf(s.a, "exp_avg", true), *v = buf(s.b, "exp_avg_sq", true);
      if (m == v) throw py::value_error(cat(op, ": exp_avg and exp_avg_sq must be separate buffers"));
      return make_adam<T>(s.start, s.stop, m, v, s.step, s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.decoupled);
    }
    return make_rmsprop<T>(s.start, s.stop, buf(s.a, "square_avg", true), buf(s.b, "momentum_buf", s.momentum > 0),
                           s.lr, s.alpha, s.eps, s.weight_decay, s.momentum);
  }

  py::array params_, grads_;
  std::vector<py::object> keep_;  // arrays the ops point into (BatchNorm's running statistics)
  bool training_, f32_;
  int n_ops_ = 0;
  std::unique_ptr<Plan<float>> pf_;
  std::unique_ptr<Plan<double>> pd_;
};

}  // namespace

void fastnn::bind_plan(py::module_& m) {
  py::class_<PlanStep>(m, "PlanStep", "One optimizer update over a span of a plan's flat buffers (see Plan.train)");
  m.def("plan_sgd", [](idx start, idx stop, py::object momentum_buf, bool first, double lr, double momentum,
                       double dampening, bool nesterov, double weight_decay) {
    PlanStep s;
    s.kind = "sgd", s.start = start, s.stop = stop, s.a = momentum_buf, s.first = first;
    s.lr = lr, s.momentum = momentum, s.dampening = dampening, s.nesterov = nesterov, s.weight_decay = weight_decay;
    return s;
  }, py::arg("start"), py::arg("stop"), py::arg("momentum_buf"), py::kw_only(), py::arg("first"), py::arg("lr"),
     py::arg("momentum"), py::arg("dampening"), py::arg("nesterov"), py::arg("weight_decay"),
     "sgd_step over params[start:stop] in a plan (first: the momentum buffer is set, not updated)");
  m.def("plan_adam", [](idx start, idx stop, py::object exp_avg, py::object exp_avg_sq, long step, double lr,
                        double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
    if (step < 0) throw py::value_error(cat("plan_adam: step must be >= 0, got ", step));
    PlanStep s;
    s.kind = "adam", s.start = start, s.stop = stop, s.a = exp_avg, s.b = exp_avg_sq, s.step = step;
    s.lr = lr, s.beta1 = beta1, s.beta2 = beta2, s.eps = eps, s.weight_decay = weight_decay, s.decoupled = decoupled;
    return s;
  }, py::arg("start"), py::arg("stop"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::kw_only(), py::arg("step"),
     py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("decoupled"),
     "adam_step over params[start:stop] in a plan, counting from step + 1");
  m.def("plan_rmsprop", [](idx start, idx stop, py::object square_avg, py::object momentum_buf, double lr,
                           double alpha, double eps, double weight_decay, double momentum) {
    PlanStep s;
    s.kind = "rmsprop", s.start = start, s.stop = stop, s.a = square_avg, s.b = momentum_buf;
    s.lr = lr, s.alpha = alpha, s.eps = eps, s.weight_decay = weight_decay, s.momentum = momentum;
    return s;
  }, py::arg("start"), py::arg("stop"), py::arg("square_avg"), py::arg("momentum_buf"), py::kw_only(), py::arg("lr"),
     py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"), py::arg("momentum"),
     "rmsprop_step over params[start:stop] in a plan");

  py::class_<PyPlan>(m, "Plan", "A compiled plan of a model's ops; built by fastnn/plan.py")
      .def(py::init<py::handle, py::handle, bool>(), py::arg("params"), py::arg("grads"), py::arg("training"))
      .def_property_readonly("training", &PyPlan::training)
      .def_property_readonly("n_slots", &PyPlan::n_slots)
      .def("width", &PyPlan::width, py::arg("slot"))
      .def("set_input", &PyPlan::set_input, py::arg("width"))
      .def("linear", &PyPlan::linear, py::arg("src"), py::arg("w_off"), py::arg("b_off"), py::arg("C"), py::arg("OC"),
           py::arg("lead"))
      .def("activation", &PyPlan::activation, py::arg("src"), py::arg("name"), py::arg("param") = 0.0)
      .def("softmax", &PyPlan::softmax, py::arg("src"), py::arg("C"))
      .def("dropout", &PyPlan::dropout, py::arg("src"), py::arg("p"))
      .def("add", &PyPlan::add, py::arg("a"), py::arg("b"))
      .def("branch", &PyPlan::branch, py::arg("src"))
      .def("conv2d", &PyPlan::conv2d, py::arg("src"), py::arg("w_off"), py::arg("b_off"), py::arg("C"), py::arg("H"),
           py::arg("W"), py::arg("OC"), py::arg("KH"), py::arg("KW"), py::arg("stride"), py::arg("padding"),
           py::arg("dilation"), py::arg("groups"))
      .def("pool2d", &PyPlan::pool2d, py::arg("src"), py::arg("kind"), py::arg("C"), py::arg("H"), py::arg("W"),
           py::arg("kernel_size"), py::arg("stride"), py::arg("padding"))
      .def("batchnorm", &PyPlan::batchnorm, py::arg("src"), py::arg("w_off"), py::arg("b_off"), py::arg("C"),
           py::arg("L"), py::arg("eps"), py::arg("momentum"), py::arg("running_mean"), py::arg("running_var"),
           py::arg("num_batches_tracked"), py::arg("batch_stats"))
      .def("set_output", &PyPlan::set_output, py::arg("slot"))
      .def("predict", &PyPlan::predict, py::arg("out"), py::arg("x"), py::arg("batch_size"), py::arg("check_finite"))
      .def("train", &PyPlan::train, py::arg("x"), py::arg("targets"), py::arg("order"), py::arg("batch_size"),
           py::arg("first_batch"), py::arg("n_batches"), py::arg("loss"), py::arg("optimizer"), py::arg("rng"),
           py::arg("stop"), py::arg("shards") = py::none())
      .def("release", &PyPlan::release)
      .def_property_readonly("stats_width", &PyPlan::stats_width,
                             "Values of batch statistics a training step logs per shard (BatchNorm: 2 per channel)")
      .def_property_readonly("auto_rows", &PyPlan::auto_rows,
                             "Rows predict takes at a time when batch_size is 0: a workspace of at most 8 MiB")
      .def("set_profiling", &PyPlan::set_profiling, py::arg("on"),
           "Time every op's forward and backward from now on (or stop); see op_times")
      .def("op_times", &PyPlan::op_times, "[(op, forward seconds, backward seconds, batches)] since set_profiling(True)")
      .def_property_readonly("workspace_bytes", &PyPlan::workspace_bytes,
                             "Bytes of workspace the plan keeps between calls");
}
