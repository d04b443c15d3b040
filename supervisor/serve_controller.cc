#include "supervisor/serve_controller.h"

#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/ids.h"
#include "base/install_layout.h"
#include "base/json_field.h"
#include "base/spawn.h"
#include "ipc/file_handle.h"
#include "ipc/rpc_client.h"
#include "ipc/rpc_error.h"
#include "supervisor/worker_launcher.h"

namespace fcvm::supervisor {
namespace {

// The server passes one fd (a clone's memory image) per answer.
constexpr unsigned kServerFds = 1;

void removeTree(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

}  // namespace

struct ServeController::Serve {
  ServeView view;
  bool child = false;     // started by this supervisor (so it reaps it), not adopted
  bool stopping = false;  // stop() was asked: its exit is not a failure
  UniqueFd pidfd;
  kj::Own<kj::UnixEventPort::FdObserver> exitObserver;
  kj::Promise<void> watching = nullptr;  // after the observer: cancelled before it goes
  kj::Own<ipc::RpcClient> connection;
  kj::Maybe<rpc::PageServer::Client> server;
  kj::Maybe<kj::ForkedPromise<ServeView>> starting;
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> goneWaiters;
};

ServeController::ServeController(kj::AsyncIoContext& io, Paths paths)
    : io_(io), paths_(std::move(paths)) {
  ensureOwnedDirectory(paths_.dataDir / "serves", 0700);
}

ServeController::~ServeController() = default;

void ServeController::taskFailed(kj::Exception&& e) {
  spdlog::warn("serve: {}", e.getDescription().cStr());
}

void ServeController::saveRecord(const Serve& serve) const {
  const auto& v = serve.view;
  nlohmann::json j = {{"id", v.id},
                      {"snapshot_id", v.snapshotId},
                      {"owner_uid", v.ownerUid},
                      {"pid", v.process.pid},
                      {"start_time", v.process.startTime},
                      {"started_at_ns", v.startedAtNs}};
  auto path = paths_.dataDir / "serves" / (v.id + ".json");
  auto tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump() << "\n";
    if (!out) throw Error("write " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

void ServeController::adopt(
    const std::function<std::vector<std::string>(const std::string&)>& liveClones) {
  for (const auto& entry : std::filesystem::directory_iterator(paths_.dataDir / "serves")) {
    if (entry.path().extension() != ".json") continue;
    ServeView view;
    try {
      std::ifstream in(entry.path());
      auto j = nlohmann::json::parse(in);
      view.id = jsonField<std::string>(j, "id");
      view.snapshotId = jsonField<std::string>(j, "snapshot_id");
      if (!isHexId(view.id) || !isHexId(view.snapshotId)) throw Error("bad id");
      view.ownerUid = jsonField<uint32_t>(j, "owner_uid");
      view.process.pid = jsonField<int32_t>(j, "pid");
      if (view.process.pid <= 0) throw Error("bad pid");
      view.process.startTime = jsonField<uint64_t>(j, "start_time");
      view.startedAtNs = jsonField<int64_t>(j, "started_at_ns");
    } catch (const std::exception& e) {
      spdlog::warn("serve record {} is unreadable ({}); removed", entry.path().string(), e.what());
      removeTree(entry.path());
      continue;
    }
    auto pidfd = openPidfd(view.process);
    if (!pidfd || serves_.count(view.snapshotId) != 0) {
      spdlog::info("serve {} of snapshot {} is gone", view.id, view.snapshotId);
      removeTree(entry.path());
      removeTree(paths_.runtimeDir / "serves" / view.id);
      continue;
    }
    auto serve = kj::heap<Serve>();
    serve->view = view;
    serve->view.state = "serving";
    serve->pidfd = std::move(pidfd);
    auto& s = *serve;
    serves_[view.snapshotId] = kj::mv(serve);
    track(s);
    connect(s);
    KJ_IF_MAYBE (server, s.server) {
      auto retain = server->retainClonesRequest();
      auto clones = liveClones(view.snapshotId);
      auto list = retain.initVmIds(static_cast<unsigned>(clones.size()));
      for (unsigned i = 0; i < list.size(); ++i) list.set(i, clones[i]);
      tasks_.add(retain.send().ignoreResult());
    }
    spdlog::info("re-adopted serve {} of snapshot {}, pid {}", view.id, view.snapshotId,
                 view.process.pid);
  }
}

void ServeController::track(Serve& serve) {
  serve.exitObserver = kj::heap<kj::UnixEventPort::FdObserver>(
      io_.unixEventPort, serve.pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  auto snapshotId = serve.view.snapshotId;
  serve.watching = serve.exitObserver->whenBecomesReadable()
                       .then([this, snapshotId] { exited(snapshotId); })
                       .eagerlyEvaluate([](kj::Exception&& e) {
                         spdlog::warn("serve: {}", e.getDescription().cStr());
                       });
}

void ServeController::refresh() {
  // What is shown is the truth: a serve that died is known dead, even before its exit event is
  // handled.
  std::vector<std::string> dead;
  for (const auto& [id, s] : serves_) {
    pollfd pfd{s->pidfd.get(), POLLIN, 0};
    if (s->pidfd && ::poll(&pfd, 1, 0) == 1) dead.push_back(id);
  }
  for (const auto& id : dead) exited(id);
}

void ServeController::connect(Serve& serve) {
  try {
    serve.connection = kj::heap<ipc::RpcClient>(
        io_, paths_.runtimeDir / "serves" / serve.view.id / "server.sock", kServerFds);
    serve.server = serve.connection->bootstrap<rpc::PageServer>();
  } catch (const Error& e) {
    // A server we cannot talk to cannot serve clones: end it; its exit is handled as a failure.
    spdlog::error("serve {}: cannot reach it ({}); killing it", serve.view.id, e.what());
    ::syscall(SYS_pidfd_send_signal, serve.pidfd.get(), SIGKILL, nullptr, 0);
  }
}

kj::Promise<ServeView> ServeController::start(const ServedSnapshot& snapshot) {
  auto serve = kj::heap<Serve>();
  auto& s = *serve;
  s.view.id = randomHexId();
  s.view.snapshotId = snapshot.id;
  s.view.ownerUid = snapshot.ownerUid;
  s.view.state = "starting";
  s.view.startedAtNs = realtimeNs();
  s.child = true;
  auto runDir = paths_.runtimeDir / "serves" / s.view.id;
  ensureOwnedDirectory(runDir.parent_path(), 0755);
  ensureOwnedDirectory(runDir, 0711);  // the uffd socket in it is the snapshot owner's
  SpawnSpec spec;
  spec.argv = {siblingBinary("fcvm-uffd-server", "FCVM_UFFD_SERVER_BIN").string(),
               "--snapshot-id",
               snapshot.id,
               "--image",
               (snapshot.dir / "memory.img").string(),
               "--socket",
               (runDir / "server.sock").string(),
               "--uffd-socket",
               (runDir / "uffd.sock").string(),
               "--owner",
               std::to_string(snapshot.ownerUid)};
  spec.env = environmentWith({});
  auto log = (paths_.dataDir / "serves" / (s.view.id + ".log")).string();
  failed_.erase(snapshot.id);
  auto started = launchDaemon(io_, std::move(spec), log, "fcvm-uffd-server")
                     .then(
                         [this, &s](LaunchedProcess launched) {
                           s.view.process = launched.identity;
                           s.pidfd = std::move(launched.pidfd);
                           s.view.state = "serving";
                           saveRecord(s);
                           track(s);
                           connect(s);
                           spdlog::info("serving snapshot {}: uffd-server {} pid {}",
                                        s.view.snapshotId, s.view.id, s.view.process.pid);
                           return s.view;
                         },
                         [this, id = snapshot.id, runDir](kj::Exception&& e) -> ServeView {
                           removeTree(runDir);
                           // Not from inside the fork this serve holds: once it has settled.
                           tasks_.add(kj::evalLater([this, id] { serves_.erase(id); }));
                           kj::throwFatalException(kj::mv(e));
                         })
                     .fork();
  s.starting = kj::mv(started);
  serves_[snapshot.id] = kj::mv(serve);
  KJ_IF_MAYBE (forked, s.starting) {
    return forked->addBranch();
  }
  KJ_UNREACHABLE;
}

kj::Promise<ServeView> ServeController::ensure(const ServedSnapshot& snapshot) {
  auto it = serves_.find(snapshot.id);
  if (it == serves_.end()) return start(snapshot);
  auto& s = *it->second;
  if (s.stopping) {
    // Its last clone ended (a start-up snapshot) or it was removed: a new serve once it is gone.
    return whenGone(snapshot.id).then([this, snapshot] { return ensure(snapshot); });
  }
  if (s.view.state == "starting") {
    KJ_IF_MAYBE (forked, s.starting) {
      return forked->addBranch();
    }
  }
  return s.view;
}

kj::Promise<UniqueFd> ServeController::attachClone(const ServedSnapshot& snapshot,
                                                   const std::string& vmId) {
  return ensure(snapshot).then([this, id = snapshot.id, vmId](ServeView) -> kj::Promise<UniqueFd> {
    auto it = serves_.find(id);
    if (it == serves_.end()) return ipc::rpcError("the snapshot's serve process ended");
    KJ_IF_MAYBE (server, it->second->server) {
      auto request = server->attachCloneRequest();
      request.setVmId(vmId);
      return request.send().then([](auto reply) {
        return ipc::receiveFile(reply.getMemory(), "the snapshot's memory image");
      });
    }
    return ipc::rpcError("the snapshot's serve process cannot be reached");
  });
}

void ServeController::detachClone(const std::string& snapshotId, const std::string& vmId) {
  auto it = serves_.find(snapshotId);
  if (it == serves_.end()) return;
  KJ_IF_MAYBE (server, it->second->server) {
    auto request = server->detachCloneRequest();
    request.setVmId(vmId);
    tasks_.add(request.send().ignoreResult());
  }
}

kj::Promise<void> ServeController::stop(const std::string& snapshotId) {
  auto it = serves_.find(snapshotId);
  if (it == serves_.end()) {
    failed_.erase(snapshotId);
    return kj::READY_NOW;
  }
  auto& s = *it->second;
  s.stopping = true;
  auto gone = whenGone(snapshotId);
  KJ_IF_MAYBE (server, s.server) {
    // Stopped gently; killed if it cannot be asked.
    tasks_.add(server->stopRequest().send().ignoreResult().catch_([this, snapshotId](auto&&) {
      auto found = serves_.find(snapshotId);
      if (found != serves_.end() && found->second->pidfd) {
        ::syscall(SYS_pidfd_send_signal, found->second->pidfd.get(), SIGKILL, nullptr, 0);
      }
    }));
  } else if (s.pidfd) {
    ::syscall(SYS_pidfd_send_signal, s.pidfd.get(), SIGKILL, nullptr, 0);
  }
  return gone;
}

kj::Promise<void> ServeController::whenGone(const std::string& snapshotId) {
  auto it = serves_.find(snapshotId);
  if (it == serves_.end()) return kj::READY_NOW;
  auto paf = kj::newPromiseAndFulfiller<void>();
  it->second->goneWaiters.push_back(kj::mv(paf.fulfiller));
  return kj::mv(paf.promise);
}

void ServeController::exited(const std::string& snapshotId) {
  auto it = serves_.find(snapshotId);
  if (it == serves_.end()) return;
  auto& s = *it->second;
  if (!s.stopping) {
    std::string how = "the uffd-server exited unexpectedly";
    siginfo_t info{};
    if (s.child &&
        ::waitid(P_PIDFD, static_cast<id_t>(s.pidfd.get()), &info, WEXITED | WNOHANG) == 0 &&
        info.si_pid != 0) {
      how += info.si_code == CLD_EXITED ? fmt::format(" (exit code {})", info.si_status)
                                        : fmt::format(" (signal {})", info.si_status);
    }
    spdlog::warn("serve {} of snapshot {}: {}; its clones run on", s.view.id, snapshotId, how);
    ServeView failed = s.view;
    failed.state = "failed";
    failed.reason = how;
    failed_[snapshotId] = failed;
  } else {
    if (s.child) ::waitid(P_PIDFD, static_cast<id_t>(s.pidfd.get()), nullptr, WEXITED | WNOHANG);
    spdlog::info("serve {} of snapshot {} stopped", s.view.id, snapshotId);
  }
  removeTree(paths_.runtimeDir / "serves" / s.view.id);
  removeTree(paths_.dataDir / "serves" / (s.view.id + ".json"));
  for (auto& waiter : s.goneWaiters) waiter->fulfill();
  // This may run inside the serve's own exit observer: free it once that callback has returned.
  auto owned = kj::mv(it->second);
  serves_.erase(it);
  tasks_.add(kj::evalLater([owned = kj::mv(owned)]() {}));
}

void ServeController::forget(const std::string& snapshotId) { failed_.erase(snapshotId); }

std::optional<ServeView> ServeController::find(const std::string& snapshotId) {
  refresh();
  auto it = serves_.find(snapshotId);
  if (it != serves_.end()) return it->second->view;
  auto f = failed_.find(snapshotId);
  if (f != failed_.end()) return f->second;
  return std::nullopt;
}

std::optional<ServeView> ServeController::findByPid(int32_t pid) {
  refresh();
  for (const auto& [id, s] : serves_) {
    if (s->view.process.pid == pid) return s->view;
  }
  return std::nullopt;
}

std::vector<ServeView> ServeController::list() {
  refresh();
  std::vector<ServeView> out;
  for (const auto& [id, s] : serves_) out.push_back(s->view);
  for (const auto& [id, v] : failed_) out.push_back(v);
  return out;
}

}  // namespace fcvm::supervisor
