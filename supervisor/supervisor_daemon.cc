#include "supervisor/supervisor_daemon.h"

#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>

#include "base/error.h"
#include "base/ids.h"
#include "base/unique_fd.h"
#include "ipc/listening_socket.h"
#include "setup/reflink_storage.h"
#include "supervisor/host_boot.h"
#include "supervisor/netd_client.h"
#include "supervisor/snapshot_controller.h"
#include "supervisor/supervisor_server.h"
#include "supervisor/vm_controller.h"

namespace fcvm::supervisor {
namespace {

// Holds `<runtime dir>/supervisor.lock` for the process's life: one supervisor per runtime dir.
// The kernel drops the lock when the process dies, however it dies.
UniqueFd takeInstanceLock(const std::filesystem::path& path) {
  UniqueFd fd(static_cast<int>(
      checkSys(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600), "open {}",
               path.string())));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK) {
      throw Error(
          fmt::format("another fcvm-supervisor already runs for {}", path.parent_path().string()));
    }
    throw SysError(errno, "lock " + path.string());
  }
  return fd;
}

void signalReady(int fd) {
  static constexpr char kReady[] = "ready\n";
  if (retryEintr([&] { return ::write(fd, kReady, sizeof kReady - 1); }) == -1) {
    spdlog::warn("could not signal readiness on fd {}: {}", fd, errnoText(errno));
  }
  ::close(fd);
}

kj::Promise<void> stopOnSignal(kj::UnixEventPort& port, int signo) {
  return port.onSignal(signo).then(
      [](siginfo_t info) { spdlog::info("stopping on signal {}", info.si_signo); });
}

}  // namespace

int runSupervisor(const DaemonOptions& options) {
  const Paths& paths = options.paths;
  bool root = ::geteuid() == 0;
  // Root's runtime dir must be reachable by every user (its socket is how they reach fcvm); a
  // user's own supervisor keeps everything private.
  ensureOwnedDirectory(paths.runtimeDir, root ? 0755 : 0700);
  ensureOwnedDirectory(paths.dataDir, 0755);
  UniqueFd instanceLock = takeInstanceLock(paths.supervisorLock());
  spdlog::info("fcvm-supervisor {} starting (pid {}, uid {}, data {}, runtime {})", FCVM_VERSION,
               ::getpid(), ::geteuid(), paths.dataDir.string(), paths.runtimeDir.string());

  // What a reboot takes away comes back here, before anything needs it: the runtime dir above,
  // the memory dir with the first VM, the storage mount now.
  bool hostRestarted = hostRestartedSince(paths.dataDir / "boot-id", currentBootId());
  if (hostRestarted) spdlog::info("the host restarted since the last supervisor start");
  try {
    if (root &&
        setup::remountReflinkStorage(paths.dataDir, (paths.dataDir / "storage.log").string())) {
      spdlog::info("mounted the storage again ({})", (paths.dataDir / "storage.btrfs").string());
    }
  } catch (const Error& e) {
    spdlog::error("cannot mount the storage again, so no VM can start: {}", e.what());
  }

  auto table = ipc::StateTableWriter::open(paths.stateTable(), ipc::TableCapacity{}, 0600);
  RecordStore store(paths.vmRecordDir());
  VmRegistry registry(table, store);
  kj::UnixEventPort::captureSignal(SIGTERM);
  kj::UnixEventPort::captureSignal(SIGINT);
  ::signal(SIGPIPE, SIG_IGN);
  auto io = kj::setupAsyncIo();
  NetdClient netd(io, paths);
  VmController vms(io, registry, paths, netd);
  AdoptionSummary adoption = registry.adopt([&vms, hostRestarted](ipc::VmRecord& record) {
    if (vms.settleOrphan(record)) return true;
    if (!hostRestarted) return false;
    // Its worker and QEMU went with the host; its disk and logs stay until rm.
    record.state = ipc::VmState::kFailed;
    record.health = ipc::Health::kUnknown;
    record.reason.assignTruncated("the host restarted");
    return true;
  });
  spdlog::info("state table {} (epoch {}, {}); {} VM records: {} live re-adopted, {} orphaned",
               paths.stateTable().string(), table.writerEpoch(),
               table.adopted() ? "adopted" : "new", adoption.records, adoption.live,
               adoption.orphaned);

  vms.adoptLive();
  netd.adopt(vms.bridgedVms());
  SnapshotController snapshots(io, paths, registry, vms);
  snapshots.adopt();

  ipc::ListeningSocket socket(paths.supervisorSocket(), root ? 0666 : 0600);
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      socket.releaseFd(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP |
                              kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC |
                              kj::LowLevelAsyncIoProvider::ALREADY_NONBLOCK);

  auto shutdown = kj::newPromiseAndFulfiller<void>();
  SupervisorContext context{
      registry,         vms,           snapshots,    table,    paths.dataDir,
      paths.runtimeDir, socket.path(), realtimeNs(), adoption, shutdown.fulfiller};
  SupervisorServer server(context, io.provider->getTimer());
  auto serving = server.listen(*listener);

  spdlog::info("listening on {}", socket.path().string());
  if (options.readyFd) signalReady(*options.readyFd);

  shutdown.promise.exclusiveJoin(stopOnSignal(io.unixEventPort, SIGTERM))
      .exclusiveJoin(stopOnSignal(io.unixEventPort, SIGINT))
      .exclusiveJoin(kj::mv(serving))
      .wait(io.waitScope);
  spdlog::info("fcvm-supervisor stopped");
  return 0;
}

}  // namespace fcvm::supervisor
