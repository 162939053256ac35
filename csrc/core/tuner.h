// ThreadTuner: runs training steps on all threads or on one, whichever is faster right now.
//
// Beside another busy process, an OpenMP team is only as fast as its slowest thread: a step of
// the MLP makes ~15 parallel regions, each ending at a barrier, and whenever the OS parks one
// of our two threads to run the other process, the region waits out its time slice (a woken
// thread can wait 25-30 ms). Measured on 2 cores beside one busy process (bench/under_load.py):
// 2 threads took 19-23x the 1-thread time per MLP epoch, 1.9x per CNN epoch. Passive waiting
// (OMP_WAIT_POLICY=passive) fixed that (1.1x) but made every region on an idle machine pay a
// futex wake-up: the idle MLP epoch took 2.3x longer. So training times its steps instead and
// now and then runs a few the other way (a probe), switching when that is clearly faster.
// Results never depend on the thread count, so switching changes no number, only the time.
//
// - Windows, not steps: beside a busy process most steps on all threads are fast and one in a
//   few waits a whole time slice, so the tuner compares mean step times over windows of at
//   least kWindowSeconds.
// - Cheap probes: a probe stops as soon as it can no longer win, and the next one comes after
//   twice as many windows, or later if it cost more than kProbeShare of the time in between
//   (at most kMaxRounds windows, ~0.6 s, so a load that goes away is noticed).
// - Quick to react: a window on all threads 1.5x slower than the one before (a process
//   started) calls for a probe at once.
// - One per process: whether the machine is busy is not a property of one model, so a new fit
//   starts the way the last one ended and probes after its first window. Windows restart when
//   another plan records (step times of different models cannot be compared).
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>

namespace fastnn {

class ThreadTuner {
 public:
  static constexpr double kWindowSeconds = 0.01;  // a window: at least this long and
  static constexpr long kWindowSteps = 2;         // this many steps, or
  static constexpr double kLongWindow = 0.03;     // this long whatever the steps
  static constexpr long kAfterSwitch = 8;         // windows before the first probe after a switch
  static constexpr long kMaxRounds = 64;          // windows between probes, doubling up to
  static constexpr double kJump = 1.5;            // a window this much slower than the last: probe
  static constexpr double kMargin = 0.9;          // switch when the other way takes < 90% of the time
  static constexpr double kProbeShare = 0.02;     // a lost probe may cost this share of the time to the next

  // Whether the next step of plan `who` (its new_tuning_id()) runs on one thread (false: on
  // every thread the kernels may use).
  bool one_thread(std::uint64_t who) {
    std::lock_guard<std::mutex> hold(mu_);
    if (alternate_) return (alternate_++ & 1) != 0;
    if (who != who_) restart(who);
    return probing_ ? !one_ : one_;
  }

  // The wall time of the step of `who` just run, on the threads one_thread() said. Call only
  // for steps of the usual size (a short last batch would look fast).
  void record(std::uint64_t who, double seconds) {
    std::lock_guard<std::mutex> hold(mu_);
    if (who != who_) return restart(who);
    if (probing_) excess_ += seconds - current_;  // what the probe costs over the current way
    sum_ += seconds;
    ++steps_;
    if (!probing_) {
      if ((steps_ < kWindowSteps || sum_ < kWindowSeconds) && sum_ < kLongWindow) return;
      const double mean = sum_ / (double)steps_;
      // Steps on all threads slowing down suddenly (another process started) call for a probe
      // now. (Not on one thread: right after a probe the team's other threads still spin for a
      // few ms and slow it; a busy process costs it little anyway.)
      const bool jumped = !one_ && have_current_ && mean > kJump * current_;
      current_ = mean;
      have_current_ = true;
      window_steps_ = steps_;
      sum_ = 0, steps_ = 0;
      if (++rounds_ >= interval_ || jumped) probing_ = true, excess_ = 0;
      return;
    }
    // A probe runs as many steps as the last window of the current way, and stops early once
    // it can no longer win: beside a busy process a step on all threads can take 10 ms.
    const double budget = kMargin * current_ * (double)window_steps_;
    if (sum_ >= budget) {
      end_probe(false);
    } else if (steps_ >= window_steps_) {
      end_probe(true);
    }
  }

  // Off: every step runs on all threads (bench/under_load.py compares both).
  bool set_enabled(bool on) {
    std::lock_guard<std::mutex> hold(mu_);
    const bool old = enabled_;
    enabled_ = on;
    one_ = false;
    restart(0);
    return old;
  }
  bool enabled() const { return enabled_; }
  // For tests: steps alternate between all threads and one, whatever their times.
  void set_alternate(bool on) {
    std::lock_guard<std::mutex> hold(mu_);
    alternate_ = on ? 1 : 0;
  }

  long switches() {
    std::lock_guard<std::mutex> hold(mu_);
    return switches_;
  }

 private:
  void end_probe(bool won) {
    probing_ = false;
    sum_ = 0, steps_ = 0, rounds_ = 0;
    if (won) {
      one_ = !one_;
      have_current_ = false;  // current_ timed the other way
      ++switches_;
      interval_ = kAfterSwitch;
    } else {
      // Beside a busy process one step on all threads can take 30 ms while a window of the
      // current way is 10 ms: a probe is put off until it costs at most kProbeShare of the time.
      const double window = current_ * (double)window_steps_;
      const long affordable = (long)(excess_ / (kProbeShare * window)) + 1;
      interval_ = std::min(std::max(2 * interval_, affordable), kMaxRounds);
    }
  }
  void restart(std::uint64_t who) {  // keep the choice, time anew, probe after one window
    who_ = who;
    have_current_ = false;
    interval_ = 1;
    probing_ = false;
    sum_ = 0, steps_ = 0, rounds_ = 0;
  }

  std::mutex mu_;
  std::uint64_t who_ = 0;  // 0: nobody
  std::uint64_t alternate_ = 0;
  bool enabled_ = true, one_ = false, probing_ = false, have_current_ = false;
  long steps_ = 0, window_steps_ = 0, rounds_ = 0, interval_ = 1, switches_ = 0;
  double sum_ = 0, current_ = 0, excess_ = 0;
};

// The process's tuner (core/runtime.cpp).
ThreadTuner& thread_tuner();
// A number no other plan of this process has had (a plan's address can be reused by the next).
inline std::uint64_t new_tuning_id() {
  static std::atomic<std::uint64_t> next{1};
  return next++;
}

}  // namespace fastnn
