// The fused MLP: one call runs a whole forward pass (inference) or many training steps of a
// Sequential of Linear layers and activations, with preallocated workspaces and no Python in
// between. It calls exactly the kernels the Python layers call, in the same order (linear,
// activation, ..., loss, zero_grad, backward, optimizer step), so its results equal the
// layer-by-layer path, and like every kernel they do not depend on the thread count.
#pragma once
#include <cstdint>
#include "core/common.h"

namespace fastnn {

enum class MlpAct : int { None = 0, ReLU = 1, Sigmoid = 2, Tanh = 3, GELU = 4, LeakyReLU = 5 };

// One Linear layer (weight (out,in) at params + w_off, bias (out) at params + b_off or b_off < 0
// for none) followed by an activation (None after the last layer). In training, a Dropout with
// probability drop > 0 may come before it (on x for the first layer); inference ignores drop.
struct MlpLayer {
  idx in, out, w_off, b_off;
  MlpAct act;
  double slope;  // LeakyReLU's negative slope
  double drop;   // the p of a Dropout on this layer's input, 0 for none
};

enum class MlpLoss : int { CrossEntropy = 0, MseMean = 1, MseSum = 2, BceWithLogits = 3, Bce = 4 };
enum class MlpOpt : int { SGD = 0, Adam = 1, AdamW = 2, RMSprop = 3 };

struct MlpOptimizer {
  MlpOpt kind;
  double lr, momentum, dampening, weight_decay, beta1, beta2, eps, alpha;
  bool nesterov;
  void* state_a;  // SGD: momentum buffer (or null); Adam: exp_avg; RMSprop: square_avg
  void* state_b;  // Adam: exp_avg_sq; RMSprop: momentum buffer (or null)
  long step;      // Adam: the step count before this call; SGD: 0 = first step (initialises the buffer)
};

// out (N, OC_last) = the network applied to x (N, C0). With check_finite, returns the flat
// index of x's first NaN or infinity (out then unspecified), else -1.
template <class T>
idx mlp_forward(T* out, const T* x, idx N, const T* params, const MlpLayer* layers, int L,
                bool check_finite);

// Runs batches [first_batch, first_batch + n_batches) of an epoch: batch b holds the rows
// order[b*B .. min((b+1)*B, N)) of x (N, C0) and of the targets (int64 labels (N) for
// cross-entropy, T (N, OC_last) for MSE and BCE). Writes each batch's loss into losses[] and
// its number of correct predictions into correct[]: argmax hits for cross-entropy, outputs on
// the target's side of the threshold (0 for logits, 0.5 for probabilities) for BCE, 0 for MSE.
// dropout_u holds the Dropout layers' uniforms, in the order the layers draw them: for each
// batch (rows r), for each layer with drop > 0, first layer first, r × in values (null when
// no layer has dropout).
template <class T>
void mlp_train_batches(T* params, T* grads, idx n_params, const MlpLayer* layers, int L,
                       const T* x, const void* targets, idx N, const std::int64_t* order, idx B,
                       idx first_batch, idx n_batches, MlpLoss loss, const MlpOptimizer& opt,
                       const T* dropout_u, double* losses, std::int64_t* correct);

}  // namespace fastnn
