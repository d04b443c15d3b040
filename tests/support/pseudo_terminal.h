// A pseudo-terminal for a command's stderr in tests that check what a user at a terminal sees:
// the command opens slavePath(); everything it writes is drained by a thread of this object (so
// the command never blocks on a full terminal) and can be waited for.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace fcvm::testing {

class PseudoTerminal {
 public:
  PseudoTerminal() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master_ < 0 || ::grantpt(master_) != 0 || ::unlockpt(master_) != 0) {
      throw std::runtime_error("posix_openpt");
    }
    slavePath_ = ::ptsname(master_);
    // Held open here, so the master never reads as hung up, before the command opens its end or
    // after it has closed it.
    slave_ = ::open(slavePath_.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave_ < 0) throw std::runtime_error("open " + slavePath_);
    stop_ = ::eventfd(0, EFD_CLOEXEC);
    if (stop_ < 0) throw std::runtime_error("eventfd");
    reader_ = std::thread([this] { drain(); });
  }
  ~PseudoTerminal() {
    uint64_t one = 1;
    (void)!::write(stop_, &one, sizeof one);
    reader_.join();
    ::close(stop_);
    ::close(slave_);
    ::close(master_);
  }
  PseudoTerminal(const PseudoTerminal&) = delete;
  PseudoTerminal& operator=(const PseudoTerminal&) = delete;

  const std::string& slavePath() const { return slavePath_; }

  std::string text() {
    std::lock_guard lock(mutex_);
    return text_;
  }
  // Waits until `done(text)` holds; throws with the text so far if it does not within `deadline`.
  void waitUntil(const std::function<bool(const std::string&)>& done,
                 std::chrono::seconds deadline) {
    std::unique_lock lock(mutex_);
    if (!changed_.wait_for(lock, deadline, [&] { return done(text_); })) {
      throw std::runtime_error("the terminal never showed what was expected; it has: " + text_);
    }
  }

 private:
  void drain() {
    for (;;) {
      pollfd fds[2] = {{master_, POLLIN, 0}, {stop_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) continue;
      if (fds[1].revents != 0) return;
      char buffer[4096];
      ssize_t n = ::read(master_, buffer, sizeof buffer);
      if (n <= 0) return;
      std::lock_guard lock(mutex_);
      text_.append(buffer, static_cast<size_t>(n));
      changed_.notify_all();
    }
  }

  int master_ = -1;
  int slave_ = -1;
  int stop_ = -1;
  std::string slavePath_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::string text_;
  std::thread reader_;
};

}  // namespace fcvm::testing
