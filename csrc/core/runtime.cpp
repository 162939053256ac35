// Process-wide settings of the C++ kernels: the thread count.
#include "core/common.h"

namespace fastnn {

static int g_num_threads = 1;

int num_threads() { return g_num_threads; }
void set_num_threads(int n) { g_num_threads = n < 1 ? 1 : n; }

}  // namespace fastnn
