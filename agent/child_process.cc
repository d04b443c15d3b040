#include "agent/child_process.h"

#include <kj/debug.h>
#include <signal.h>
#include <sys/wait.h>

#include <cerrno>

namespace fcvm::agent {

ExitStatus decodeWaitStatus(int status) {
  if (WIFSIGNALED(status)) return ExitStatus{128 + WTERMSIG(status), WTERMSIG(status)};
  return ExitStatus{WEXITSTATUS(status), 0};
}

ChildProcess::ChildProcess(pid_t pid, kj::UnixEventPort& events)
    : pid_(pid),
      exit_(events.onChildExit(pid_)
                .then([](int status) { return decodeWaitStatus(status); })
                .fork()) {}

ChildProcess::~ChildProcess() noexcept(false) {
  KJ_IF_MAYBE (pid, pid_) {
    // Still running (or exited and not yet reaped): kill, then reap synchronously. The event
    // loop's waiter for this pid is dropped with exit_ first, so nobody else waits for it.
    pid_t p = *pid;
    ::kill(p, SIGKILL);
    exit_ = kj::Promise<ExitStatus>(ExitStatus{}).fork();
    int status;
    while (waitpid(p, &status, 0) < 0 && errno == EINTR) {
    }
  }
}

void ChildProcess::kill(int signal) {
  KJ_IF_MAYBE (pid, pid_) {
    KJ_SYSCALL(::kill(*pid, signal), "kill child", *pid);
  }
}

}  // namespace fcvm::agent
