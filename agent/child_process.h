// Owns one child process: its exit is observed through the event loop (kj's SIGCHLD handling,
// which as PID 1 also reaps orphans), and a child still running when the owner goes away is
// killed and reaped. kj::UnixEventPort::captureChildExit() must run before the event loop exists.
#pragma once

#include <kj/async-unix.h>
#include <sys/types.h>

namespace fcvm::agent {

// Exit code as a shell reports it: the status, or 128+n for death by signal n.
struct ExitStatus {
  int code = 0;
  int signal = 0;
};
ExitStatus decodeWaitStatus(int status);

class ChildProcess {
 public:
  ChildProcess(pid_t pid, kj::UnixEventPort& events);
  ~ChildProcess() noexcept(false);
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Resolves when the child has exited (and was reaped). Any number of calls; the promises must
  // not outlive this object.
  kj::Promise<ExitStatus> exited() { return exit_.addBranch(); }
  bool running() const { return pid_ != nullptr; }
  void kill(int signal);

 private:
  kj::Maybe<pid_t> pid_;                // null once reaped: the pid may be reused from then on
  kj::ForkedPromise<ExitStatus> exit_;  // declared after pid_, destroyed before it
};

}  // namespace fcvm::agent
