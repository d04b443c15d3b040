#include "agent/spawn.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace fcvm::agent {
namespace {

struct Pipe {
  kj::AutoCloseFd read;
  kj::AutoCloseFd write;
};

Pipe makePipe() {
  int fds[2];
  KJ_SYSCALL(pipe2(fds, O_CLOEXEC), "pipe for child");
  return Pipe{kj::AutoCloseFd(fds[0]), kj::AutoCloseFd(fds[1])};
}

std::vector<std::string> mergedEnvironment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  auto nameOf = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    bool replaced = false;
    for (const auto& x : extra) replaced = replaced || nameOf(x) == nameOf(entry);
    if (!replaced) env.push_back(std::move(entry));
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// In the child: async-signal-safe only. Reports errno on `errorFd` and exits 127 on failure.
[[noreturn]] void childFail(int errorFd) {
  int err = errno;
  ssize_t ignored = write(errorFd, &err, sizeof(err));
  (void)ignored;
  _exit(127);
}

}  // namespace

SpawnedProcess spawnProcess(const SpawnOptions& options) {
  KJ_REQUIRE(!options.argv.empty(), "spawn: empty command");
  auto argvStrings = options.argv;
  auto envStrings = mergedEnvironment(options.env);
  auto argv = pointers(argvStrings);
  auto envp = pointers(envStrings);
  // The child searches PATH itself: execvpe with our merged environment.

  SpawnedProcess result;
  kj::AutoCloseFd childIn, childOut, childErr, ptySlave;
  if (options.tty) {
    int master, slave;
    struct winsize ws = {};
    ws.ws_row = options.rows != 0 ? options.rows : 24;
    ws.ws_col = options.cols != 0 ? options.cols : 80;
    KJ_SYSCALL(openpty(&master, &slave, nullptr, nullptr, &ws), "openpty");
    kj::AutoCloseFd masterFd(master);
    ptySlave = kj::AutoCloseFd(slave);
    KJ_SYSCALL(fcntl(master, F_SETFD, FD_CLOEXEC));
    KJ_SYSCALL(fcntl(slave, F_SETFD, FD_CLOEXEC));
    if (options.pipeStdin) {
      int dup;
      KJ_SYSCALL(dup = fcntl(master, F_DUPFD_CLOEXEC, 0));
      result.stdinFd = kj::AutoCloseFd(dup);
    }
    result.stdoutFd = kj::mv(masterFd);
  } else {
    if (options.pipeStdin) {
      auto in = makePipe();
      childIn = kj::mv(in.read);
      result.stdinFd = kj::mv(in.write);
    } else {
      int devNull;
      KJ_SYSCALL(devNull = open("/dev/null", O_RDONLY | O_CLOEXEC), "open /dev/null");
      childIn = kj::AutoCloseFd(devNull);
    }
    if (!options.inheritOutput) {
      auto out = makePipe();
      auto err = makePipe();
      childOut = kj::mv(out.write);
      childErr = kj::mv(err.write);
      result.stdoutFd = kj::mv(out.read);
      result.stderrFd = kj::mv(err.read);
    }
  }
  auto errorPipe = makePipe();

  pid_t pid;
  KJ_SYSCALL(pid = fork(), "fork", options.argv[0]);
  if (pid == 0) {
    int errorFd = errorPipe.write.get();
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
    if (setsid() < 0) childFail(errorFd);
    int in = options.tty ? ptySlave.get() : childIn.get();
    int out = options.tty ? ptySlave.get() : options.inheritOutput ? 1 : childOut.get();
    int err = options.tty ? ptySlave.get() : options.inheritOutput ? 2 : childErr.get();
    if (options.tty && ioctl(ptySlave.get(), TIOCSCTTY, 0) < 0) childFail(errorFd);
    // dup2 clears close-on-exec on the copies; the originals close at exec.
    if (dup2(in, 0) < 0 || (out != 1 && dup2(out, 1) < 0) || (err != 2 && dup2(err, 2) < 0)) {
      childFail(errorFd);
    }
    if (options.passFd >= 0 && dup2(options.passFd, 3) < 0) childFail(errorFd);
    if (!options.workdir.empty() && chdir(options.workdir.c_str()) < 0) childFail(errorFd);
    execvpe(argv[0], argv.data(), envp.data());
    childFail(errorFd);
  }

  errorPipe.write = nullptr;
  childIn = nullptr;
  childOut = nullptr;
  childErr = nullptr;
  ptySlave = nullptr;
  int childErrno = 0;
  ssize_t n;
  KJ_SYSCALL(n = read(errorPipe.read.get(), &childErrno, sizeof(childErrno)));
  if (n > 0) {
    int status;
    KJ_SYSCALL(waitpid(pid, &status, 0));
    KJ_FAIL_REQUIRE("cannot start program", options.argv[0], strerror(childErrno));
  }
  result.pid = pid;
  return result;
}

}  // namespace fcvm::agent
