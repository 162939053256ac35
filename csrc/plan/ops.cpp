// The plan's ops (plan.h) and optimizer steps. Each op is what one layer does, calling the same
// kernels in the same order as the layer's forward and backward in fastnn/layers/, so the plan
// and the layers compute the same bits:
//   LinearOp      fastnn/layers/linear.py       linear_forward / linear_backward
//   ActivationOp  fastnn/layers/activations.py  <act>_forward / <act>_backward (scalar_ops.h list)
//   SoftmaxOp     fastnn/layers/activations.py  softmax_forward / softmax_backward
//   DropoutOp     fastnn/layers/shape.py        pcg64_uniform, then dropout_apply both ways
//   AddOp         fastnn/layers/residual.py     add_forward; its gradient goes to both inputs
//   BranchOp      fastnn/layers/residual.py     none forward (its slot aliases the input); backward
//                                               hands the path's gradient to the input
// (Flatten and eval-mode Dropout are no ops at all: fastnn/plan.py lets them reuse their input's
// slot.)
#include <cstring>
#include "plan/plan.h"

namespace fastnn {
namespace {

template <class T>
struct LinearOp : Op<T> {
  idx C, OC, lead, w_off, b_off;  // b_off < 0: no bias; lead: rows per sample (x is (..., C))
  void forward(const Batch<T>& b, T*) override {
    linear_forward(b.val[this->out], b.val[this->in[0]], b.params + w_off,
                   b_off >= 0 ? b.params + b_off : nullptr, b.rows * lead, C, OC);
  }
  void backward(const Batch<T>& b, T*, T* const* dst) override {
    linear_backward(dst[0], b.grads + w_off, b_off >= 0 ? b.grads + b_off : nullptr, b.grad[this->out],
                    b.val[this->in[0]], b.params + w_off, b.rows * lead, C, OC, /*accumulate=*/false);
  }
  bool spreads_nonfinite() const override { return true; }
};

template <class T>
struct ActivationOp : Op<T> {
  Act act;
  T param;
  bool from_y;
  idx width;
  void forward(const Batch<T>& b, T*) override {
    activation_forward(act, b.val[this->out], b.val[this->in[0]], param, b.rows * width);
  }
  void backward(const Batch<T>& b, T*, T* const* dst) override {
    activation_backward(act, dst[0], b.grad[this->out], b.val[from_y ? this->out : this->in[0]], param,
                        b.rows * width);
  }
};

template <class T>
struct SoftmaxOp : Op<T> {
  idx C, per_row;  // rows of C values, per_row of them per sample
  void forward(const Batch<T>& b, T*) override {
    softmax_forward(b.val[this->out], b.val[this->in[0]], b.rows * per_row, C);
  }
  void backward(const Batch<T>& b, T*, T* const* dst) override {
    softmax_backward(dst[0], b.grad[this->out], b.val[this->out], b.rows * per_row, C);
  }
};

// Draws its uniforms from the plan's generator in forward, as the layer draws them from
// fastnn's, and keeps them for backward.
template <class T>
struct DropoutOp : Op<T> {
  double p;
  idx width;
  idx saved_width() const override { return width; }
  void forward(const Batch<T>& b, T* u) override {
    pcg64_uniform(u, b.rows * width, *b.rng);
    dropout_apply(b.val[this->out], b.val[this->in[0]], u, p, b.rows * width);
  }
  void backward(const Batch<T>& b, T* u, T* const* dst) override {
    dropout_apply(dst[0], b.grad[this->out], u, p, b.rows * width);
  }
};

template <class T>
struct AddOp : Op<T> {
  idx width;
  void forward(const Batch<T>& b, T*) override {
    add_forward(b.val[this->out], b.val[this->in[0]], b.val[this->in[1]], b.rows * width);
  }
  void backward(const Batch<T>& b, T*, T* const* dst) override {
    const size_t bytes = sizeof(T) * (size_t)(b.rows * width);
    for (int k = 0; k < 2; ++k)
      if (dst[k]) std::memcpy(dst[k], b.grad[this->out], bytes);
  }
};

template <class T>
struct BranchOp : Op<T> {
  idx width;
  void forward(const Batch<T>&, T*) override {}  // the output slot shows the input's values
  void backward(const Batch<T>& b, T*, T* const* dst) override {
    std::memcpy(dst[0], b.grad[this->out], sizeof(T) * (size_t)(b.rows * width));
  }
};

template <class T>
struct SgdStep : OptStep<T> {
  T* buf;
  bool first;
  double lr, momentum, dampening, weight_decay;
  bool nesterov;
  void apply(T* p, const T* g) override {
    sgd_step(p + this->start, g + this->start, buf, this->stop - this->start, lr, momentum, dampening,
             nesterov, weight_decay, first);
    first = false;
    ++this->steps;
  }
};

template <class T>
struct AdamStep : OptStep<T> {
  T *m, *v;
  long step;
  double lr, beta1, beta2, eps, weight_decay;
  bool decoupled;
  void apply(T* p, const T* g) override {
    adam_step(p + this->start, g + this->start, m, v, this->stop - this->start, ++step, lr, beta1, beta2,
              eps, weight_decay, decoupled);
    ++this->steps;
  }
};

template <class T>
struct RmspropStep : OptStep<T> {
  T *sq, *buf;
  double lr, alpha, eps, weight_decay, momentum;
  void apply(T* p, const T* g) override {
    rmsprop_step(p + this->start, g + this->start, sq, buf, this->stop - this->start, lr, alpha, eps,
                 weight_decay, momentum);
    ++this->steps;
  }
};

template <class O>
std::unique_ptr<O> with_slots(std::unique_ptr<O> op, std::vector<int> in, int out) {
  op->in = std::move(in);
  op->out = out;
  return op;
}

}  // namespace

template <class T>
std::unique_ptr<Op<T>> make_linear(int in, int out, idx C, idx OC, idx lead, idx w_off, idx b_off) {
  auto op = std::make_unique<LinearOp<T>>();
  op->C = C, op->OC = OC, op->lead = lead, op->w_off = w_off, op->b_off = b_off;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_activation(int in, int out, Act act, double param, idx width) {
  auto op = std::make_unique<ActivationOp<T>>();
  op->act = act, op->param = T(param), op->width = width;
  op->from_y = false;
  for (const ActInfo& a : kActivations)
    if (a.act == act) op->from_y = a.backward_from_y;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_softmax(int in, int out, idx C, idx per_row) {
  auto op = std::make_unique<SoftmaxOp<T>>();
  op->C = C, op->per_row = per_row;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_dropout(int in, int out, double p, idx width) {
  auto op = std::make_unique<DropoutOp<T>>();
  op->p = p, op->width = width;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_add(int a, int b, int out, idx width) {
  auto op = std::make_unique<AddOp<T>>();
  op->width = width;
  return with_slots(std::move(op), {a, b}, out);
}

template <class T>
std::unique_ptr<Op<T>> make_branch(int in, int out, idx width) {
  auto op = std::make_unique<BranchOp<T>>();
  op->width = width;
  return with_slots(std::move(op), {in}, out);
}

template <class T>
std::unique_ptr<OptStep<T>> make_sgd(idx start, idx stop, T* momentum_buf, bool first, double lr,
                                     double momentum, double dampening, bool nesterov, double weight_decay) {
  auto s = std::make_unique<SgdStep<T>>();
  s->start = start, s->stop = stop, s->buf = momentum_buf, s->first = first;
  s->lr = lr, s->momentum = momentum, s->dampening = dampening, s->nesterov = nesterov;
  s->weight_decay = weight_decay;
  return s;
}

template <class T>
std::unique_ptr<OptStep<T>> make_adam(idx start, idx stop, T* exp_avg, T* exp_avg_sq, long step, double lr,
                                      double beta1, double beta2, double eps, double weight_decay, bool decoupled) {
  auto s = std::make_unique<AdamStep<T>>();
  s->start = start, s->stop = stop, s->m = exp_avg, s->v = exp_avg_sq, s->step = step;
  s->lr = lr, s->beta1 = beta1, s->beta2 = beta2, s->eps = eps, s->weight_decay = weight_decay;
  s->decoupled = decoupled;
  return s;
}

template <class T>
std::unique_ptr<OptStep<T>> make_rmsprop(idx start, idx stop, T* square_avg, T* momentum_buf, double lr,
                                         double alpha, double eps, double weight_decay, double momentum) {
  auto s = std::make_unique<RmspropStep<T>>();
  s->start = start, s->stop = stop, s->sq = square_avg, s->buf = momentum_buf;
  s->lr = lr, s->alpha = alpha, s->eps = eps, s->weight_decay = weight_decay, s->momentum = momentum;
  return s;
}

#define FASTNN_INSTANTIATE(T)                                                                         \
  template std::unique_ptr<Op<T>> make_linear<T>(int, int, idx, idx, idx, idx, idx);                  \
  template std::unique_ptr<Op<T>> make_activation<T>(int, int, Act, double, idx);                     \
  template std::unique_ptr<Op<T>> make_softmax<T>(int, int, idx, idx);                                \
  template std::unique_ptr<Op<T>> make_dropout<T>(int, int, double, idx);                             \
  template std::unique_ptr<Op<T>> make_add<T>(int, int, int, idx);                                    \
  template std::unique_ptr<Op<T>> make_branch<T>(int, int, idx);                                      \
  template std::unique_ptr<OptStep<T>> make_sgd<T>(idx, idx, T*, bool, double, double, double, bool,  \
                                                   double);                                           \
  template std::unique_ptr<OptStep<T>> make_adam<T>(idx, idx, T*, T*, long, double, double, double,   \
                                                    double, double, bool);                            \
  template std::unique_ptr<OptStep<T>> make_rmsprop<T>(idx, idx, T*, T*, double, double, double,      \
                                                       double, double);
FASTNN_INSTANTIATE(float)
FASTNN_INSTANTIATE(double)

}  // namespace fastnn
