// Process-wide settings of the C++ kernels: the thread count (and a thread's serial override),
// and what a forked child may do.
//
// GNU libgomp is not fork-safe: a child forked after the parent ran a parallel region (as
// multiprocessing's default "fork" start method does) hangs in its first region, waiting for
// threads that were not forked. So a child runs every kernel on one thread, which needs no
// OpenMP call at all (parallel_chunks and the GEMMs skip the runtime then); results do not
// change with the thread count.
#include "core/common.h"
#include "core/tuner.h"
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace fastnn {

static int g_num_threads = 1;
static bool g_forked = false;
static thread_local int t_serial = 0;

int num_threads() { return t_serial ? 1 : g_num_threads; }
void set_num_threads(int n) { g_num_threads = g_forked || n < 1 ? 1 : n; }
bool forked_child() { return g_forked; }

ThreadTuner& thread_tuner() {
  static ThreadTuner tuner;
  return tuner;
}

SerialScope::SerialScope(bool on) : saved_(t_serial) {
  if (on) t_serial = 1;
}
SerialScope::~SerialScope() { t_serial = saved_; }

#if defined(__unix__) || defined(__APPLE__)
namespace {
void after_fork_in_child() {
  g_forked = true;
  g_num_threads = 1;
}
const int g_atfork = pthread_atfork(nullptr, nullptr, after_fork_in_child);
}  // namespace
#endif

}  // namespace fastnn
