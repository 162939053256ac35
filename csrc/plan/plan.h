// A compiled plan: a model's ops over value slots, built once (fastnn/plan.py asks every layer to
// describe itself; python/plan.cpp checks what it adds) and run many times with the GIL released:
// inference over a dataset in batches (predict) and training steps (gather the shuffled batch,
// forward, loss, backward, optimizer step).
//
// Every op calls the kernels its layer calls, in the same order, so a plan's results equal the
// layer-by-layer path bit for bit; like every kernel they do not depend on the thread count.
//
// Values: slot 0 is the input. A slot holds rows × width values (width: one sample's size) and,
// in training, their gradient when one is needed (the slot depends on a parameter). Gradients:
// a training step is zero_grad + backward, so ops write (never add) their parameters'
// gradients. A slot read by several ops (a residual block's input) gets its gradient from each:
// the first consumer in backward order writes it, the later ones add (through scratch memory).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include "core/tuner.h"
#include <vector>
#include "core/buffer.h"
#include "core/common.h"
#include "kernels/kernels.h"

namespace fastnn {

// What an op's forward and backward see for one batch.
template <class T>
struct Batch {
  idx rows = 0;
  T* const* val = nullptr;    // per slot: rows × width values
  T* const* grad = nullptr;   // per slot: their gradients (training), null where none is kept
  T* params = nullptr;        // the flat parameter buffer
  T* grads = nullptr;         // the flat gradient buffer (training)
  Pcg64State* rng = nullptr;  // the plan's copy of fastnn's generator (training)
  // Data-parallel training: where ops log their batch statistics (at their stats_off) instead
  // of updating running averages; null otherwise.
  T* stats = nullptr;
};

// A BatchNorm in training as the convolution before it sees it, once the plan has linked the
// two (Plan::set_output): forward, the convolution writes every output row's moments
// (batchnorm_row_moments) while the rows are in cache, and the BatchNorm combines them
// instead of reading its input twice more; backward, the BatchNorm's input gradient is never
// stored: the convolution asks for it chunk by chunk of samples and uses it while it is in
// cache. The same kernels on the same values, so the same bits as the two layers.
template <class T>
struct LinkedNorm {
  virtual ~LinkedNorm() = default;
  // Where the moments of `rows` samples' rows go (3 doubles per row, sample n's channel c at
  // 3·(n·C + c)).
  virtual double* row_moments(idx rows) = 0;
  // dx (nn samples' input gradient) for samples n0 .. n0 + nn; only after this op's backward
  // has run for the batch (it keeps what it needs).
  virtual void input_grad(const Batch<T>& b, idx n0, idx nn, T* dx) = 0;
  bool linked = false;
};

template <class T>
struct Op {
  std::vector<int> in;  // slots read
  int out = -1;         // slot written
  virtual ~Op() = default;
  virtual const char* name() const = 0;
  // Bytes this op keeps from forward to backward for a batch of `rows` (Dropout's uniforms,
  // MaxPool's argmax, BatchNorm's batch statistics); handed to forward and backward as `saved`.
  virtual size_t saved_bytes(idx rows) const { (void)rows; return 0; }
  // A NaN or infinity in a row of the input makes every value of that output row NaN or
  // infinite (Linear): predict then scans this op's output, not the (wider) input.
  virtual bool spreads_nonfinite() const { return false; }
  // Draws from fastnn's generator (Dropout).
  virtual bool draws() const { return false; }
  // backward hands the output's gradient to in[0] unchanged (a residual block's branch): where
  // another op wrote in[0]'s gradient first, the plan adds it there itself, in one pass, where
  // backward would copy it to scratch for the plan to add (the same sums; ~1.7 ms of the ResNet's step)
  virtual bool passes_grad() const { return false; }
  // Batch statistics that update running averages (BatchNorm in training): with Batch::stats
  // set, forward writes them (stats_width() values at stats_off, which the plan assigns)
  // instead of updating, and update_running applies them later, as from a batch of `rows`.
  // Data-parallel training logs every shard's and replays them in shard order on every rank.
  idx stats_off = 0;
  virtual idx stats_width() const { return 0; }
  virtual void update_running(const T* stats, idx rows) { (void)stats, (void)rows; }
  virtual void forward(const Batch<T>& b, void* saved) = 0;
  // dst[k]: where ∂loss/∂in[k] goes (written), or null when in[k] needs no gradient.
  virtual void backward(const Batch<T>& b, void* saved, T* const* dst) = 0;
  // Take over the activation that follows (a convolution's ReLU): true if this op now applies
  // it to its output and backpropagates through it, with the same bits.
  virtual bool fuse(Act act) { (void)act; return false; }
  // Take over the max pool that follows (a convolution's): true if this op now writes the
  // pool's output (and keeps its argmax), with the same bits as the two ops.
  virtual bool fuse_pool(const Pool2d& pool) { (void)pool; return false; }
  // This op as a BatchNorm that can be linked to the convolution before it (training), else null.
  virtual LinkedNorm<T>* linkable_norm() { return nullptr; }
  // Take the BatchNorm that alone reads this op's output (a convolution's): true if this op now
  // gives it the row moments and takes its input gradient chunk by chunk (LinkedNorm).
  virtual bool link_norm(LinkedNorm<T>* norm) { (void)norm; return false; }
};

// The ops layers lower to (plan/ops.cpp); each takes its slots, then its sizes and offsets,
// already checked by the bindings.
template <class T> std::unique_ptr<Op<T>> make_linear(int in, int out, idx C, idx OC, idx lead, idx w_off, idx b_off);
template <class T> std::unique_ptr<Op<T>> make_activation(int in, int out, Act act, double param, idx width);
template <class T> std::unique_ptr<Op<T>> make_softmax(int in, int out, idx C, idx per_row);
template <class T> std::unique_ptr<Op<T>> make_dropout(int in, int out, double p, idx width);
template <class T> std::unique_ptr<Op<T>> make_add(int a, int b, int out, idx width);
// out is an alias of in (add_alias): the same values, a gradient of its own, copied into in's.
template <class T> std::unique_ptr<Op<T>> make_branch(int in, int out, idx width);
// The geometry's N is the batch's rows at run time.
template <class T> std::unique_ptr<Op<T>> make_conv2d(int in, int out, const Conv2d& g, idx w_off, idx b_off);
template <class T> std::unique_ptr<Op<T>> make_pool2d(int in, int out, const Pool2d& g, bool max);
// BatchNorm over C channels of L values per sample, gamma/beta at w_off/b_off in the parameter
// buffer. batch_stats: the batch's statistics (training; the running ones and the counter are
// updated), else the running ones.
template <class T> std::unique_ptr<Op<T>> make_batchnorm(int in, int out, idx C, idx L, idx w_off, idx b_off,
                                                         double eps, double momentum, T* running_mean,
                                                         T* running_var, std::int64_t* counter, bool batch_stats);

enum class LossKind { CrossEntropy, MseMean, MseSum, BceWithLogits, Bce };

// One optimizer update over params/grads[start, stop), the optimizer's state buffers covering
// the same span. `steps` counts the updates applied (fit commits it to the Python state).
template <class T>
struct OptStep {
  idx start = 0, stop = 0;
  long steps = 0;
  virtual ~OptStep() = default;
  virtual void apply(T* params, const T* grads) = 0;
};
template <class T> std::unique_ptr<OptStep<T>> make_sgd(idx start, idx stop, T* momentum_buf, bool first,
    double lr, double momentum, double dampening, bool nesterov, double weight_decay);
template <class T> std::unique_ptr<OptStep<T>> make_adam(idx start, idx stop, T* exp_avg, T* exp_avg_sq,
    long step, double lr, double beta1, double beta2, double eps, double weight_decay, bool decoupled);
template <class T> std::unique_ptr<OptStep<T>> make_rmsprop(idx start, idx stop, T* square_avg, T* momentum_buf,
    double lr, double alpha, double eps, double weight_decay, double momentum);

// A run of training batches: batch b holds rows order[b*B .. min((b+1)*B, N)) of x (N × the
// input width) and of the targets (int64 labels (N) for cross-entropy, T (N × the output
// width) otherwise).
template <class T>
struct TrainArgs {
  const T* x = nullptr;
  const void* targets = nullptr;
  idx N = 0, B = 0, first_batch = 0, n_batches = 0;
  const std::int64_t* order = nullptr;
  LossKind loss = LossKind::CrossEntropy;
  std::vector<OptStep<T>*> optimizer;
  Pcg64State* rng = nullptr;
  double* losses = nullptr;       // per batch
  std::int64_t* correct = nullptr;  // per batch: argmax hits (cross-entropy), outputs on the
                                    // target's side (BCE), 0 (MSE)
  std::function<bool()> stop;     // asked between batches (Ctrl-C); true ends the run there
  // Data-parallel training (fastnn/distributed.py). With shards > 0, batch rows are cut into
  // `shards` pieces, shard s holding rows [s·rows/shards, (s+1)·rows/shards) of the batch, each
  // with its own stretch of the generator's stream (pcg64_jump by s·2⁴⁰; by shards·2⁴⁰ after
  // the batch when the plan draws at all, so that without Dropout the generator, and the next
  // epoch's shuffle, stay as plain training leaves them). This process computes shards [shard_lo, shard_hi): the gradient of shard k of
  // them into shard_grads + k·n_params (its loss share: ∂loss/∂output scaled by its rows /
  // the batch's rows, so the shards' gradients sum to the batch's), its loss and count into
  // shard_losses[k], shard_correct[k]. Then `combine(batch, loss, correct)` (which exchanges
  // them with the other processes) writes the batch's gradient into the plan's gradient buffer
  // and its loss and count into *loss, *correct; false ends the run before the optimizer step.
  idx shards = 0, shard_lo = 0, shard_hi = 0;
  T* shard_grads = nullptr;
  double* shard_losses = nullptr;
  std::int64_t* shard_correct = nullptr;
  // With BatchNorm (stats_width() > 0): shard k's batch statistics go to shard_stats +
  // k·stats_width(); combine fills all_stats with every shard's (shards × stats_width()), which
  // update the running averages in shard order after it.
  T* shard_stats = nullptr;
  const T* all_stats = nullptr;
  std::function<bool(idx batch, double* loss, std::int64_t* correct)> combine;
};

struct TrainResult {
  idx done = 0;        // batches completed (loss, backward and optimizer step)
  bool combine_failed = false;  // combine returned false (data-parallel training)
  idx bad_prob = -1;   // BCE: flat index (in the batch's output) of a probability outside [0, 1]
  double bad_value = 0;
};

template <class T>
class Plan {
 public:
  using value_type = T;
  Plan(T* params, T* grads, idx n_params)
      : params_(params), grads_(grads), n_params_(n_params), tuning_id_(new_tuning_id()) {
    slots_.push_back({0, false, -1});  // the input; its width is set by set_input
  }
  void set_input(idx width) { slots_[0].width = width; }
  // A new slot of `width` values per sample; returns its index.
  int add_slot(idx width) { slots_.push_back({width, false, -1}); return (int)slots_.size() - 1; }
  // A new slot that shows the values of `src` (no copy) with a gradient of its own: a residual
  // block reads its input through one per path, so every slot has at most two consumers and
  // the gradients of the two paths are summed as the layers sum them.
  int add_alias(int src) {
    slots_.push_back({slots_[(size_t)src].width, false, src});
    return (int)slots_.size() - 1;
  }
  // `has_params`: the op reads parameters (so its output needs a gradient in training).
  void add_op(std::unique_ptr<Op<T>> op, bool has_params);
  // The last call of a plan's building: then every convolution whose output only a BatchNorm in
  // training reads is linked to it (LinkedNorm), and that output keeps no gradient.
  void set_output(int slot) {
    output_ = slot;
    link_norms();
  }
  // When nothing reads `slot` yet and the op writing it can fuse `act`, fuses it there and
  // returns true: the slot then holds act's output.
  bool fuse_activation(int slot, Act act) {
    if (slot == 0 || consumers(slot) > 0) return false;
    for (auto& op : ops_)
      if (op->out == slot) return op->fuse(act);
    return false;
  }

  // When nothing reads `slot` yet and the op writing it can fuse a max pool of geometry g,
  // fuses it there: that op then writes a new slot of the pool's output, whose index is
  // returned (else -1), and `slot` is left empty.
  int fuse_pool(int slot, const Pool2d& g) {
    if (slot == 0 || consumers(slot) > 0) return -1;
    for (auto& op : ops_)
      if (op->out == slot) {
        if (!op->fuse_pool(g)) return -1;
        const int out = add_slot(g.C * g.OH * g.OW);
        slots_[(size_t)out].needs_grad = slots_[(size_t)slot].needs_grad;
        slots_[(size_t)slot].width = 0, slots_[(size_t)slot].needs_grad = false;
        op->out = out;
        return out;
      }
    return -1;
  }

  int n_slots() const { return (int)slots_.size(); }
  idx width(int slot) const { return slots_[(size_t)slot].width; }
  int output() const { return output_; }
  idx n_params() const { return n_params_; }
  // Values of batch statistics the ops log per batch (Op::stats_width, summed).
  idx stats_width() const { return stats_width_; }
  // Consumers of each slot so far (a slot is produced once and read by later ops).
  int consumers(int slot) const;

  // out (N × output width) = the network on x (N × input width) in batches of at most `batch`
  // rows (0: as many as keep the workspace within kKeepBytes, at least 1). With check_finite,
  // returns the flat index of x's first NaN or infinity (out is then unspecified), else -1.
  idx predict(T* out, const T* x, idx N, idx batch, bool check_finite);
  // The rows predict takes at a time for batch = 0.
  idx auto_rows() const;
  // Runs a.n_batches training steps. Each step runs on all threads or on one, as the
  // process's ThreadTuner finds faster (core/tuner.h); no result depends on it.
  TrainResult train(const TrainArgs<T>& a);
  // Frees the workspace (fit calls it when it ends; predict frees a large one itself).
  void release();
  // Bytes the cached workspace holds now.
  size_t workspace_bytes() const { return cached_.bytes; }
  // With profiling on, every op's forward and backward is timed (steady clock, summed over
  // calls): what bench/cnn_profile.py prints. Off by default: it costs two clock reads per op.
  void set_profiling(bool on) { profiling_ = on; times_.assign(ops_.size(), {0.0, 0.0, 0}); }
  struct OpTime { double forward_s, backward_s; long batches; };
  const std::vector<OpTime>& op_times() const { return times_; }
  const char* op_name(size_t i) const { return ops_[i]->name(); }
  size_t n_ops() const { return ops_.size(); }

 private:
  struct Slot {
    idx width;
    bool needs_grad;
    int alias_of;  // the slot whose values this one shows, or -1
    bool streamed = false;  // its gradient is never stored (a convolution linked to a BatchNorm)
  };
  void link_norms();
  struct Workspace {
    idx rows = 0;
    bool training = false;
    std::vector<Buf<T>> val, grad;  // per slot
    std::vector<Buf<unsigned char>> saved;  // per op
    std::vector<T*> valp, gradp;
    Buf<T> xb, yb, scratch;
    std::vector<std::int64_t> lb;
    size_t bytes = 0;
  };
  void size(Workspace& w, idx rows, bool training, LossKind loss) const;
  void bind_aliases(Workspace& w) const;
  void forward(Workspace& w, const Batch<T>& b);
  void backward(Workspace& w, const Batch<T>& b);

  T* params_;
  T* grads_;
  idx n_params_;
  idx stats_width_ = 0;
  std::uint64_t tuning_id_;  // who this plan is to the ThreadTuner
  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<Op<T>>> ops_;
  std::vector<std::vector<bool>> first_writer_;  // per op, per input: writes the gradient (else adds)
  int output_ = 0;
  bool profiling_ = false;
  std::vector<OpTime> times_;
  // One cached workspace; a concurrent call (another Python thread) gets its own.
  std::mutex mu_;
  Workspace cached_;
};

}  // namespace fastnn
