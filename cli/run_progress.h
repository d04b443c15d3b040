// What a run is waiting for, shown the way podman shows a pull: one status line on stderr
// ("fcvm: booting VM web... 4s"), rewritten in place every second and erased before anything
// else reaches the terminal (the container's output, an error). Only when stderr is a terminal
// and the user did not ask for --quiet; otherwise it writes nothing at all.
#pragma once

#include <kj/async.h>
#include <kj/timer.h>

#include <string>

namespace fcvm::cli {

class RunProgress {
 public:
  // Writes to `fd` if `enabled`; redraws on `timer` (the event loop's) while the loop runs and
  // reads the elapsed time from `clock` (the timer's own time stands still while the loop does
  // not run, e.g. during a podman pull).
  RunProgress(int fd, bool enabled, kj::Timer& timer,
              const kj::MonotonicClock& clock = kj::systemPreciseMonotonicClock());
  ~RunProgress();  // erases the line
  RunProgress(const RunProgress&) = delete;
  RunProgress& operator=(const RunProgress&) = delete;

  // A new wait: `what` (short, e.g. "booting VM web"), with its own clock from now.
  void show(const std::string& what);
  // Erases the line; nothing shows until the next show(). Cheap when nothing is shown.
  void clear();
  // Erases the line for good: the container's output has begun (or the run is over), and a
  // later show() would erase a line of it.
  void done();

  // The line for `what` after `seconds`, cut to `columns` (the terminal's width).
  static std::string line(const std::string& what, long seconds, unsigned columns);

 private:
  void draw();
  kj::Promise<void> tick();

  const int fd_;
  const bool enabled_;
  kj::Timer& timer_;
  const kj::MonotonicClock& clock_;
  std::string what_;
  kj::TimePoint since_;
  bool shown_ = false;
  bool done_ = false;
  kj::Maybe<kj::Promise<void>> ticker_;  // redraws every second while something shows
};

}  // namespace fcvm::cli
