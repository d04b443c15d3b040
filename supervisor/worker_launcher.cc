#include "supervisor/worker_launcher.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/process_identity.h"
#include "base/spawn.h"
#include "ipc/rpc_error.h"

namespace fcvm::supervisor {
namespace {

constexpr int kReadyFd = 3;
constexpr int kImageArchiveFd = 4;
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
                                         const std::string& id, const WorkerInputs& inputs) {
  auto binary = siblingBinary("fcvm-worker", "FCVM_WORKER_BIN");
  SpawnSpec spec;
  spec.argv = {binary.string(),
               "--id",
               id,
               "--data-dir",
               paths.dataDir.string(),
               "--runtime-dir",
               paths.runtimeDir.string(),
               "--memory-dir",
               paths.memoryDir.string(),
               "--ready-fd",
               std::to_string(kReadyFd),
               "--owner",
               fmt::format("{}:{}", inputs.owner.uid, inputs.owner.gid)};
  spec.env = environmentWith({});
  auto log = (paths.vmDir(id) / "worker.log").string();
  int pipeFds[2];
  checkSys(::pipe2(pipeFds, O_CLOEXEC), "pipe");
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  UniqueFd logFd(static_cast<int>(
      checkSys(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600),
               "open {}", log)));
  spec.fds = {{1, logFd.get()}, {2, logFd.get()}, {kReadyFd, writeEnd.get()}};
  if (inputs.imageArchive >= 0) {
    spec.fds[kImageArchiveFd] = inputs.imageArchive;
    spec.argv.insert(spec.argv.end(), {"--image-fd", std::to_string(kImageArchiveFd)});
  }
  // Its own session: the worker outlives this supervisor by design (a restarted one re-adopts it).
  spec.newSession = true;
  auto child = spawn(spec);
  writeEnd.reset();
  LaunchedWorker launched;
  launched.identity.pid = child.pid();
  launched.identity.startTime = processStartTime(child.pid()).value_or(0);
  launched.pidfd = child.release();

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
