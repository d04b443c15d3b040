#include "supervisor/worker_launcher.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/process_identity.h"
#include "ipc/rpc_error.h"

extern char** environ;

namespace fcvm::supervisor {
namespace {

constexpr int kReadyFd = 3;
constexpr size_t kMaxReadyBytes = 4096;

std::string firstLine(std::string text) {
  auto nl = text.find('\n');
  if (nl != std::string::npos) text.resize(nl);
  return text;
}

}  // namespace

UniqueFd openPidfd(const ipc::ProcessId& process) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, process.pid, 0)));
  if (!pidfd) return pidfd;
  // The pid may have been reused before the open: check again now that the pidfd pins it.
  if (!isSameProcessAlive(process.pid, process.startTime)) return UniqueFd();
  return pidfd;
}

kj::Promise<LaunchedWorker> launchWorker(kj::AsyncIoContext& io, const Paths& paths,
                                         const std::string& id) {
  auto binary = siblingBinary("fcvm-worker", "FCVM_WORKER_BIN");
  std::vector<std::string> argv = {binary.string(),
                                   "--id",
                                   id,
                                   "--data-dir",
                                   paths.dataDir.string(),
                                   "--runtime-dir",
                                   paths.runtimeDir.string(),
                                   "--memory-dir",
                                   paths.memoryDir.string(),
                                   "--ready-fd",
                                   std::to_string(kReadyFd)};
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  auto log = (paths.vmDir(id) / "worker.log").string();

  int pipeFds[2];
  checkSys(::pipe2(pipeFds, O_CLOEXEC), "pipe");
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  UniqueFd logFd(static_cast<int>(
      checkSys(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600),
               "open {}", log)));
  UniqueFd nullFd(static_cast<int>(checkSys(::open("/dev/null", O_RDONLY | O_CLOEXEC), "open")));

  pid_t pid = ::fork();
  checkSys(pid, "fork for fcvm-worker");
  if (pid == 0) {
    // Async-signal-safe calls only. dup2 clears close-on-exec on the copies.
    ::setsid();
    if (::dup2(nullFd.get(), 0) == -1 || ::dup2(logFd.get(), 1) == -1 ||
        ::dup2(logFd.get(), 2) == -1 || ::dup2(writeEnd.get(), kReadyFd) == -1) {
      ::_exit(126);
    }
    ::execve(args[0], args.data(), environ);
    ::_exit(127);
  }
  writeEnd.reset();
  LaunchedWorker launched;
  launched.identity.pid = pid;
  launched.identity.startTime = processStartTime(pid).value_or(0);
  launched.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!launched.pidfd) throw SysError(errno, "pidfd_open fcvm-worker");

  auto input = io.lowLevelProvider->wrapInputFd(
      readEnd.release(),
      kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  auto reading = input->readAllText(kMaxReadyBytes);
  return reading.attach(kj::mv(input))
      .then([launched = kj::mv(launched), log](kj::String text) mutable -> LaunchedWorker {
        std::string line = firstLine(text.cStr());
        if (line == "ready") return kj::mv(launched);
        // It failed (and exits) or died: reap it, unless it is still going, which it must not be
        // once it closed the pipe without "ready".
        int status = 0;
        ::waitpid(launched.identity.pid, &status, 0);
        if (line.starts_with("error: ")) ipc::throwRpcError(line.substr(7).c_str());
        auto how = WIFSIGNALED(status) ? fmt::format("signal {}", WTERMSIG(status))
                                       : fmt::format("exit code {}", WEXITSTATUS(status));
        ipc::throwRpcError(
            fmt::format("fcvm-worker exited during setup ({}); see {}", how, log).c_str());
      });
}

}  // namespace fcvm::supervisor
