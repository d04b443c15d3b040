#include "supervisor/worker_launcher.h"

#include <fcntl.h>
#include <kj/async-unix.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/process_identity.h"
#include "base/spawn.h"
#include "ipc/rpc_error.h"

namespace fcvm::supervisor {
namespace {

constexpr int kReadyFd = 3;
constexpr int kImageArchiveFd = 4;
constexpr int kMemoryFd = 5;
constexpr int kTapFd = 6;
constexpr int kFirstVolumeFd = 7;  // and on, one per volume
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

std::optional<ipc::ProcessId> recordedQemu(const Paths& paths, const std::string& id) {
  std::ifstream in(paths.vmRunDir(id) / "qemu.pid");
  ipc::ProcessId qemu;
  if (!(in >> qemu.pid >> qemu.startTime)) return std::nullopt;
  return qemu;
}

kj::Promise<LaunchedProcess> launchDaemon(kj::AsyncIoContext& io, SpawnSpec spec,
                                          const std::string& log, const std::string& what) {
  int pipeFds[2];
  checkSys(::pipe2(pipeFds, O_CLOEXEC), "pipe");
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  UniqueFd logFd(static_cast<int>(
      checkSys(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600),
               "open {}", log)));
  spec.fds[1] = spec.fds[2] = logFd.get();
  spec.fds[kReadyFd] = writeEnd.get();
  spec.argv.insert(spec.argv.end(), {"--ready-fd", std::to_string(kReadyFd), "--log-file", log});
  // Its own session: the daemon outlives this supervisor by design (a restarted one re-adopts it).
  spec.newSession = true;
  auto child = spawn(spec);
  writeEnd.reset();
  LaunchedProcess launched;
  launched.identity.pid = child.pid();
  launched.identity.startTime = processStartTime(child.pid()).value_or(0);
  launched.pidfd = child.release();

  auto input = io.lowLevelProvider->wrapInputFd(
      readEnd.release(),
      kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);
  auto reading = input->readAllText(kMaxReadyBytes);
  return reading.attach(kj::mv(input))
      .then([launched = kj::mv(launched), log, what](kj::String text) mutable -> LaunchedProcess {
        std::string line = firstLine(text.cStr());
        if (line == "ready") return kj::mv(launched);
        // It failed (and exits) or died: reap it, unless it is still going, which it must not be
        // once it closed the pipe without "ready".
        int status = 0;
        ::waitpid(launched.identity.pid, &status, 0);
        if (line.starts_with("error: ")) ipc::throwRpcError(line.substr(7).c_str());
        ipc::throwRpcError(fmt::format("{} exited during setup ({}); see {}", what,
                                       describeWaitStatus(status), log)
                               .c_str());
      });
}

namespace {

SpawnSpec workerSpec(const Paths& paths, const std::string& id, const WorkerInputs& inputs) {
  SpawnSpec spec;
  spec.argv = {siblingBinary("fcvm-worker", "FCVM_WORKER_BIN").string(),
               "--id",
               id,
               "--data-dir",
               paths.dataDir.string(),
               "--runtime-dir",
               paths.runtimeDir.string(),
               "--memory-dir",
               paths.memoryDir.string(),
               "--owner",
               fmt::format("{}:{}", inputs.owner.uid, inputs.owner.gid),
               "--config",
               paths.configFile.string()};
  spec.env = environmentWith({});
  spec.cgroups = inputs.cgroups;
  if (inputs.imageArchive >= 0) {
    spec.fds[kImageArchiveFd] = inputs.imageArchive;
    spec.argv.insert(spec.argv.end(), {"--image-fd", std::to_string(kImageArchiveFd)});
  }
  if (!inputs.restoreDir.empty()) {
    spec.fds[kMemoryFd] = inputs.memory;
    spec.argv.insert(spec.argv.end(), {"--restore-dir", inputs.restoreDir.string(), "--memory-fd",
                                       std::to_string(kMemoryFd)});
  }
  if (inputs.tap >= 0) {
    spec.fds[kTapFd] = inputs.tap;
    spec.argv.insert(spec.argv.end(), {"--tap-fd", std::to_string(kTapFd)});
  }
  for (size_t i = 0; i < inputs.volumeDirs.size(); ++i) {
    int fd = kFirstVolumeFd + static_cast<int>(i);
    spec.fds[fd] = inputs.volumeDirs[i];
    spec.argv.insert(spec.argv.end(), {"--volume-fd", std::to_string(fd)});
  }
  if (inputs.imagePrepared) spec.argv.push_back("--image-prepared");
  return spec;
}

}  // namespace

kj::Promise<LaunchedWorker> launchWorker(kj::AsyncIoContext& io, const Paths& paths,
                                         const std::string& id, const WorkerInputs& inputs) {
  return launchDaemon(io, workerSpec(paths, id, inputs), (paths.vmDir(id) / "worker.log").string(),
                      "fcvm-worker");
}

kj::Promise<void> prepareImage(kj::AsyncIoContext& io, const Paths& paths, const std::string& id,
                               const WorkerInputs& inputs) {
  WorkerInputs imageOnly;
  imageOnly.owner = inputs.owner;
  imageOnly.imageArchive = inputs.imageArchive;
  auto spec = workerSpec(paths, id, imageOnly);
  spec.argv.push_back("--prepare-image");
  return launchDaemon(io, std::move(spec), (paths.vmDir(id) / "worker.log").string(),
                      "fcvm-worker --prepare-image")
      .then([&io](LaunchedProcess process) {
        // It says "ready" once image.json is written, then exits: reaped once its pidfd says so.
        auto exited = kj::heap<kj::UnixEventPort::FdObserver>(
            io.unixEventPort, process.pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
        auto done = exited->whenBecomesReadable();
        // The observer goes before the pidfd it watches is closed (the outer attachment last).
        return done.attach(kj::mv(exited))
            .attach(std::move(process.pidfd))
            .then([pid = process.identity.pid] { ::waitpid(pid, nullptr, 0); });
      });
}

}  // namespace fcvm::supervisor
