#include "supervisor/supervisor_daemon.h"

#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <optional>

#include "base/error.h"
#include "base/ids.h"
#include "base/jail_uids.h"
#include "base/unique_fd.h"
#include "ipc/activated_socket.h"
#include "ipc/listening_socket.h"
#include "ipc/ready_pipe.h"
#include "setup/reflink_storage.h"
#include "supervisor/host_boot.h"
#include "supervisor/netd_client.h"
#include "supervisor/snapshot_controller.h"
#include "supervisor/startup_cache.h"
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

kj::Promise<void> stopOnSignal(kj::UnixEventPort& port, int signo) {
  return port.onSignal(signo).then(
      [](siginfo_t info) { spdlog::info("stopping on signal {}", info.si_signo); });
}

int serve(const DaemonOptions& options, bool& ready) {
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
  auto cgroups = VmCgroups::probe();
  spdlog::info("VM limits: {}", cgroups.description());
  // Read by each worker as it jails its QEMU; a wrong one is refused now, not at the first VM.
  auto jailUids = JailUids::load(paths.configFile);
  if (auto account = jailUids.ownedByAnAccount(); account && ::geteuid() == 0) {
    throw Error(fmt::format(
        "the uids VMMs are jailed as ({}-{}) include {}: set another range in "
        "{} (\"jail\": {{\"first_uid\": N, \"uids\": M}})",
        jailUids.first, jailUids.first + jailUids.count - 1, *account, paths.configFile.string()));
  }
  spdlog::info("VMMs run jailed as uids {}-{}", jailUids.first,
               jailUids.first + jailUids.count - 1);
  VmController vms(io, registry, paths, netd, UserQuotas::load(paths.configFile), cgroups);
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

  vms.adoptLive(adoption, hostRestarted);
  netd.adopt(vms.bridgedVms());
  SnapshotController snapshots(io, paths, registry, vms);
  snapshots.adopt();
  StartupCache startup(io, paths, vms, snapshots, StartupCache::maxEntriesFrom(paths.configFile));

  // systemd's socket (fcvm-supervisor.socket) if it started us: it owns the path and keeps it
  // across our restarts. Otherwise our own, removed when we stop.
  auto socketPath = paths.supervisorSocket();
  std::optional<ipc::ListeningSocket> ownSocket;
  int listenFd = -1;
  if (auto activated = ipc::takeActivatedSocket(socketPath)) {
    listenFd = activated->release();
    spdlog::info("started by systemd: its socket {}", socketPath.string());
  } else {
    ownSocket.emplace(socketPath, root ? 0666 : 0600);
    listenFd = ownSocket->releaseFd();
  }
  // Not ALREADY_NONBLOCK: systemd's socket blocks; kj makes it non-blocking.
  auto listener = io.lowLevelProvider->wrapListenSocketFd(
      listenFd,
      kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP | kj::LowLevelAsyncIoProvider::ALREADY_CLOEXEC);

  auto shutdown = kj::newPromiseAndFulfiller<void>();
  SupervisorContext context{registry,     vms,           snapshots,         startup,
                            table,        paths.dataDir, paths.runtimeDir,  socketPath,
                            realtimeNs(), adoption,      shutdown.fulfiller};
  SupervisorServer server(context, io.provider->getTimer());
  auto serving = server.listen(*listener);

  spdlog::info("listening on {}", socketPath.string());
  ipc::reportReady(options.readyFd);
  ready = true;

  shutdown.promise.exclusiveJoin(stopOnSignal(io.unixEventPort, SIGTERM))
      .exclusiveJoin(stopOnSignal(io.unixEventPort, SIGINT))
      .exclusiveJoin(kj::mv(serving))
      .wait(io.waitScope);
  spdlog::info("fcvm-supervisor stopped");
  return 0;
}

}  // namespace

int runSupervisor(const DaemonOptions& options) {
  // Why it could not start goes to whoever waits on the ready pipe (the CLI, which prints it).
  bool ready = false;
  try {
    return serve(options, ready);
  } catch (const Error& e) {
    if (!ready) ipc::reportFailure(options.readyFd, e.what());
    throw;
  } catch (const kj::Exception& e) {
    if (!ready) ipc::reportFailure(options.readyFd, e.getDescription().cStr());
    throw;
  }
}

}  // namespace fcvm::supervisor
