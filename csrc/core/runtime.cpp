// Process-wide settings of the C++ kernels: the thread count (and a thread's serial override).
#include "core/common.h"

namespace fastnn {

static int g_num_threads = 1;
static thread_local int t_serial = 0;

int num_threads() { return t_serial ? 1 : g_num_threads; }
void set_num_threads(int n) { g_num_threads = n < 1 ? 1 : n; }

SerialScope::SerialScope() : saved_(t_serial) { t_serial = 1; }
SerialScope::~SerialScope() { t_serial = saved_; }

}  // namespace fastnn
