// The plan's run loops (plan.h): its workspace, predict, and the training steps that replace
// fit's layer-by-layer batch (forward, loss, zero_grad + backward, optimizer step) with one
// C++ loop over many batches.
#include "plan/plan.h"
#include <algorithm>
#include <chrono>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace fastnn {

namespace {

// Workspaces up to this size stay with the plan between calls; larger ones are freed when
// predict returns. Allocating afresh costs page faults on every call (measured: predict of
// 1000 rows through 784-128-64-10, a 1.6 MB workspace, 0.86 -> 0.95 ms when freed each call),
// and batch-1 predict would allocate every time.
constexpr size_t kKeepBytes = size_t(8) << 20;

// Frees a workspace and hands the memory back to the system: glibc keeps freed heap memory for
// later (measured: +36 MB of resident memory after predict of 20,000 rows through
// 784-4096-10 freed its 34 MB workspace; +3 MB after malloc_trim).
template <class W>
void give_back(W& w) {
  w = W();
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

template <class V>
size_t grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.size() * sizeof(typename V::value_type);
}

// The loss of a batch into *loss, ∂loss/∂y into dy and the accuracy count into *correct: the
// calls Loss.forward and fit's accuracy make for the layers. Returns the flat index of a BCE
// probability outside [0, 1] (the layer path's bce_forward raises there), else -1.
template <class T>
idx loss_forward(LossKind kind, T* dy, const T* y, const std::int64_t* labels, const T* t, idx rows,
                 idx width, double* loss, std::int64_t* correct) {
  const idx n = rows * width;
  switch (kind) {
    case LossKind::CrossEntropy:
      *loss = cross_entropy_forward(dy, y, labels, rows, width);
      *correct = argmax_correct(y, labels, rows, width);
      return -1;
    case LossKind::MseMean:
    case LossKind::MseSum:
      *loss = mse_forward(dy, y, t, n, kind == LossKind::MseSum);
      *correct = 0;
      return -1;
    case LossKind::BceWithLogits:
      *loss = bce_with_logits_forward(dy, y, t, n);
      *correct = threshold_correct(y, t, 0.0, n);
      return -1;
    case LossKind::Bce:
      for (idx i = 0; i < n; ++i)
        if (!(y[i] >= T(0) && y[i] <= T(1))) return i;
      *loss = bce_forward(dy, y, t, n);
      *correct = threshold_correct(y, t, 0.5, n);
      return -1;
  }
  return -1;
}

}  // namespace

template <class T>
void Plan<T>::add_op(std::unique_ptr<Op<T>> op, bool has_params) {
  // The last consumer of a slot in forward order is the first in backward: it writes the
  // slot's gradient, and every earlier consumer now adds.
  std::vector<bool> first(op->in.size(), true);
  bool needs = has_params;
  for (size_t k = 0; k < op->in.size(); ++k) {
    const int s = op->in[k];
    needs = needs || slots_[(size_t)s].needs_grad;
    for (size_t j = 0; j < ops_.size(); ++j)
      for (size_t q = 0; q < ops_[j]->in.size(); ++q)
        if (ops_[j]->in[q] == s) first_writer_[j][q] = false;
    for (size_t q = 0; q < k; ++q)
      if (op->in[q] == s) first[q] = false;
  }
  slots_[(size_t)op->out].needs_grad = needs;
  op->stats_off = stats_width_;
  stats_width_ += op->stats_width();
  first_writer_.push_back(std::move(first));
  ops_.push_back(std::move(op));
}

template <class T>
void Plan<T>::link_norms() {
  for (auto& op : ops_) {
    LinkedNorm<T>* norm = op->linkable_norm();
    const int s = op->in.empty() ? 0 : op->in[0];
    if (!norm || norm->linked || s == 0 || slots_[(size_t)s].alias_of >= 0 || consumers(s) != 1) continue;
    for (auto& producer : ops_)
      if (producer->out == s && producer->link_norm(norm)) {
        norm->linked = true;
        slots_[(size_t)s].streamed = true;
      }
  }
}

template <class T>
int Plan<T>::consumers(int slot) const {
  int n = 0;
  for (const auto& op : ops_)
    for (int s : op->in) n += s == slot;
  return n;
}

template <class T>
void Plan<T>::size(Workspace& w, idx rows, bool training, LossKind loss) const {
  // Buffers only grow while the workspace lives: a cached one is reused at no cost.
  rows = std::max(rows, w.rows);
  training = training || w.training;
  size_t bytes = 0;
  const size_t S = slots_.size();
  w.val.resize(S);
  w.grad.resize(S);
  w.valp.assign(S, nullptr);
  w.gradp.assign(S, nullptr);
  for (size_t s = 1; s < S; ++s) {  // slot 0 points at the caller's rows (or the gathered batch)
    const size_t n = (size_t)(rows * slots_[s].width);
    if (slots_[s].alias_of < 0) bytes += grow(w.val[s], n);
    if (training && slots_[s].needs_grad && !slots_[s].streamed) bytes += grow(w.grad[s], n);
  }
  // what ops keep from forward to backward (a max pool's argmax, needed by predict too)
  w.saved.resize(ops_.size());
  for (size_t i = 0; i < ops_.size(); ++i) bytes += grow(w.saved[i], ops_[i]->saved_bytes(rows));
  if (training) {
    idx scratch = 0;
    for (size_t i = 0; i < ops_.size(); ++i) {
      idx adds = 0;
      for (size_t k = 0; k < ops_[i]->in.size(); ++k)
        if (!first_writer_[i][k] && slots_[(size_t)ops_[i]->in[k]].needs_grad) adds += width(ops_[i]->in[k]);
      scratch = std::max(scratch, adds);
    }
    bytes += grow(w.scratch, (size_t)(rows * scratch));
    bytes += grow(w.xb, (size_t)(rows * slots_[0].width));
    if (loss == LossKind::CrossEntropy) bytes += grow(w.lb, (size_t)rows);
    else bytes += grow(w.yb, (size_t)(rows * width(output_)));
  }
  for (size_t s = 1; s < S; ++s) {
    w.valp[s] = w.val[s].data();
    if (training && slots_[s].needs_grad && !slots_[s].streamed) w.gradp[s] = w.grad[s].data();
  }
  bind_aliases(w);
  w.rows = rows;
  w.training = training;
  w.bytes = bytes;
}

// An alias shows its source's values: called whenever a source pointer moves (slot 0 to the
// caller's rows). Sources come before their aliases.
template <class T>
void Plan<T>::bind_aliases(Workspace& w) const {
  for (size_t s = 1; s < slots_.size(); ++s)
    if (slots_[s].alias_of >= 0) w.valp[s] = w.valp[(size_t)slots_[s].alias_of];
}

static double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class T>
void Plan<T>::forward(Workspace& w, const Batch<T>& b) {
  for (size_t i = 0; i < ops_.size(); ++i) {
    const auto t0 = profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    ops_[i]->forward(b, w.saved[i].data());
    if (profiling_) {
      times_[i].forward_s += seconds_since(t0);
      ++times_[i].batches;
    }
  }
}

template <class T>
void Plan<T>::backward(Workspace& w, const Batch<T>& b) {
  std::vector<T*> dst;
  for (size_t i = ops_.size(); i-- > 0;) {
    const Op<T>& op = *ops_[i];
    if (!slots_[(size_t)op.out].needs_grad) continue;  // nothing before it holds a parameter
    const auto t0 = profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    if (op.passes_grad() && slots_[(size_t)op.in[0]].needs_grad && !first_writer_[i][0]) {
      T* g = w.gradp[(size_t)op.in[0]];
      add_forward(g, g, b.grad[op.out], b.rows * width(op.in[0]));
      if (profiling_) times_[i].backward_s += seconds_since(t0);
      continue;
    }
    dst.assign(op.in.size(), nullptr);
    T* scratch = w.scratch.data();
    for (size_t k = 0; k < op.in.size(); ++k) {
      const int s = op.in[k];
      if (!slots_[(size_t)s].needs_grad) continue;
      if (first_writer_[i][k]) {
        dst[k] = w.gradp[(size_t)s];
      } else {
        dst[k] = scratch;
        scratch += b.rows * width(s);
      }
    }
    ops_[i]->backward(b, w.saved[i].data(), dst.data());
    for (size_t k = 0; k < op.in.size(); ++k)
      if (dst[k] && !first_writer_[i][k]) {
        T* g = w.gradp[(size_t)op.in[k]];
        add_forward(g, g, dst[k], b.rows * width(op.in[k]));
      }
    if (profiling_) times_[i].backward_s += seconds_since(t0);
  }
}

template <class T>
idx Plan<T>::auto_rows() const {
  size_t per_row = 0;  // an inference workspace's bytes per row: every value slot, what ops keep
  for (size_t s = 1; s < slots_.size(); ++s)
    if (slots_[s].alias_of < 0) per_row += sizeof(T) * (size_t)slots_[s].width;
  for (const auto& op : ops_) per_row += op->saved_bytes(1);
  return std::max<idx>(1, (idx)(kKeepBytes / std::max<size_t>(per_row, 1)));
}

template <class T>
idx Plan<T>::predict(T* out, const T* x, idx N, idx batch, bool check_finite) {
  if (N == 0) return -1;
  if (batch == 0) batch = auto_rows();
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  Workspace local;
  Workspace& w = lock.owns_lock() ? cached_ : local;
  const idx rows = std::min(N, batch);
  size(w, rows, false, LossKind::CrossEntropy);
  const idx C0 = slots_[0].width, OC = width(output_);
  // A NaN or infinity in x: the first op's output shows it in every value of its row when that
  // op spreads it (Linear), and is width/C0 times smaller to scan than x; x is scanned only
  // when it fails, to tell a bad input from a finite one whose product overflowed.
  const bool scan_first_op = !ops_.empty() && ops_[0]->spreads_nonfinite() && ops_[0]->in[0] == 0;
  idx bad = -1;
  for (idx r0 = 0; r0 < N && bad < 0; r0 += rows) {
    const idx r = std::min(rows, N - r0);
    const T* xr = x + r0 * C0;
    w.valp[0] = const_cast<T*>(xr);
    T* o = out + r0 * OC;
    if (output_ != 0) w.valp[(size_t)output_] = o;  // the last op writes straight into out
    bind_aliases(w);
    Batch<T> b;
    b.rows = r, b.val = w.valp.data(), b.params = params_;
    if (check_finite && !scan_first_op) {
      const idx i = first_nonfinite(xr, r * C0);
      if (i >= 0) bad = r0 * C0 + i;
    }
    for (size_t i = 0; i < ops_.size() && bad < 0; ++i) {
      const auto t0 = profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
      ops_[i]->forward(b, w.saved[i].data());
      if (profiling_) {
        times_[i].forward_s += seconds_since(t0);
        ++times_[i].batches;
      }
      if (i == 0 && check_finite && scan_first_op) {
        const int s = ops_[0]->out;
        if (first_nonfinite(w.valp[(size_t)s], r * width(s)) >= 0) {
          const idx j = first_nonfinite(xr, r * C0);
          if (j >= 0) bad = r0 * C0 + j;
        }
      }
    }
    if (output_ == 0 && bad < 0) std::memcpy(o, xr, sizeof(T) * (size_t)(r * OC));
  }
  if (output_ != 0) w.valp[(size_t)output_] = w.val[(size_t)output_].data();
  if (w.bytes > kKeepBytes) give_back(w);
  return bad;
}

template <class T>
TrainResult Plan<T>::train(const TrainArgs<T>& a) {
  TrainResult res;
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  Workspace local;
  Workspace& w = lock.owns_lock() ? cached_ : local;
  ThreadTuner& tuner = thread_tuner();
  const bool tune = num_threads() > 1 && tuner.enabled();
  size(w, std::min(a.N, a.B), true, a.loss);  // never more rows than the data has
  const idx C0 = slots_[0].width, OC = width(output_);
  const bool labels = a.loss == LossKind::CrossEntropy;
  const T* x = a.x;
  const std::int64_t* order = a.order;

  // Gathering rows of a shuffled dataset waits on DRAM for each one (measured: 14% of an
  // epoch on Fashion-MNIST); asking for the row kAhead places ahead while copying this one
  // keeps several rows in flight. Touches nothing past the data.
  constexpr idx kAhead = 6;
  auto prefetch_row = [&](idx r) {
    const T* row = x + order[r] * C0;
    for (idx k = 0; k < C0; k += 64 / (idx)sizeof(T)) __builtin_prefetch(row + k, 0, 3);
  };
  // gather rows [r0, r0 + rows) of the shuffled data into the workspace (fit's X[idx], y[idx]);
  // threads copy even shares of the rows (at least 8 each), each with its own requests in
  // flight (measured, 2 threads: chunks of 32 rows left batch 32 to one thread and split batch
  // 100 64/36; even shares took the gather from 29 to 18 ms per epoch at batch 32, 19 to 16 ms
  // at batch 100). A copy sums nothing, so the split cannot change a result.
  T* const xb = w.xb.data();
  T* const yb = w.yb.data();
  std::int64_t* const lb = w.lb.data();
  auto gather = [&](idx r0, idx rows) {
    const idx share = std::max<idx>(8, (rows + num_threads() - 1) / num_threads());
    parallel_chunks(rows, share, [&](idx i0, idx i1) {
      for (idx i = i0; i < std::min(i0 + kAhead, i1); ++i) prefetch_row(r0 + i);
      for (idx i = i0; i < i1; ++i) {
        if (i + kAhead < i1) prefetch_row(r0 + i + kAhead);
        const idx src = order[r0 + i];
        std::memcpy(xb + i * C0, x + src * C0, sizeof(T) * (size_t)C0);
        if (labels) lb[i] = static_cast<const std::int64_t*>(a.targets)[src];
        else std::memcpy(yb + i * OC, static_cast<const T*>(a.targets) + src * OC, sizeof(T) * (size_t)OC);
      }
    });
  };
  // forward, loss and backward of the gathered rows, the parameters' gradients into `grads`;
  // ∂loss/∂output scaled by `scale` unless 1. Returns loss_forward's bad index.
  auto pass = [&](idx rows, Pcg64State* rng, T* grads, T scale, double* loss, std::int64_t* correct, T* stats) {
    w.valp[0] = xb;
    bind_aliases(w);
    Batch<T> b;
    b.rows = rows, b.val = w.valp.data(), b.grad = w.gradp.data();
    b.params = params_, b.grads = grads, b.rng = rng, b.stats = stats;
    forward(w, b);
    // the loss writes ∂loss/∂output: the output's one consumer, so it writes the gradient
    T* dy = w.gradp[(size_t)output_];
    const idx at = loss_forward(a.loss, dy, w.valp[(size_t)output_], lb, yb, rows, OC, loss, correct);
    if (at >= 0) return at;
    if (dy && scale != T(1))
      for (idx i = 0; i < rows * OC; ++i) dy[i] *= scale;
    if (dy) backward(w, b);  // (no gradient at all: a model without parameters)
    return at;
  };
  for (idx bi = a.first_batch; bi < a.first_batch + a.n_batches; ++bi) {
    const auto t0 = std::chrono::steady_clock::now();
    SerialScope one_thread(tune && tuner.one_thread(tuning_id_));
    const idx r0 = bi * a.B, rows = std::min(a.N, r0 + a.B) - r0, k = bi - a.first_batch;
    idx at = -1;
    if (a.shards == 0) {
      gather(r0, rows);
      at = pass(rows, a.rng, grads_, T(1), &a.losses[k], &a.correct[k], nullptr);
    } else {
      for (idx s = a.shard_lo; s < a.shard_hi && at < 0; ++s) {
        const idx s0 = rows * s / a.shards, n = rows * (s + 1) / a.shards - s0, j = s - a.shard_lo;
        T* g = a.shard_grads + j * n_params_;
        if (n == 0) {  // a short last batch leaves some shards empty: they add nothing
          std::fill(g, g + n_params_, T(0));
          a.shard_losses[j] = 0, a.shard_correct[j] = 0;
          continue;
        }
        gather(r0 + s0, n);
        Pcg64State st = *a.rng;
        pcg64_jump(st, (std::uint64_t)s << 40);
        const T scale = a.loss == LossKind::MseSum ? T(1) : static_cast<T>((double)n / (double)rows);
        at = pass(n, &st, g, scale, &a.shard_losses[j], &a.shard_correct[j],
                  stats_width_ ? a.shard_stats + j * stats_width_ : nullptr);
      }
      if (std::any_of(ops_.begin(), ops_.end(), [](const auto& op) { return op->draws(); }))
        pcg64_jump(*a.rng, (std::uint64_t)a.shards << 40);
    }
    if (at >= 0) {
      res.bad_prob = at;
      res.bad_value = (double)w.valp[(size_t)output_][at];
      break;
    }
    double waited = 0;  // in combine: the other processes' time, not this one's threads'
    if (a.shards) {
      const auto c0 = std::chrono::steady_clock::now();
      if (!a.combine(bi, &a.losses[k], &a.correct[k])) {
        res.combine_failed = true;
        break;
      }
      waited = seconds_since(c0);
      // running averages move by every shard's statistics, in shard order (as one process
      // running the shards one after another would move them)
      if (stats_width_)
        for (idx s = 0; s < a.shards; ++s) {
          const idx n = rows * (s + 1) / a.shards - rows * s / a.shards;
          if (n == 0) continue;
          for (auto& op : ops_)
            if (op->stats_width()) op->update_running(a.all_stats + s * stats_width_ + op->stats_off, n);
        }
    }
    for (OptStep<T>* s : a.optimizer) s->apply(params_, grads_);
    ++res.done;
    if (tune && rows == a.B) tuner.record(tuning_id_, seconds_since(t0) - waited);
    if (bi + 1 < a.first_batch + a.n_batches && a.stop && a.stop()) break;
  }
  return res;
}

template <class T>
void Plan<T>::release() {
  std::unique_lock<std::mutex> lock(mu_, std::try_to_lock);
  if (lock.owns_lock() && cached_.bytes) give_back(cached_);
}

template class Plan<float>;
template class Plan<double>;

}  // namespace fastnn
