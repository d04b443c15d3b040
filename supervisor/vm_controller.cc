#include "supervisor/vm_controller.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/ids.h"
#include "base/json_field.h"
#include "base/spawn.h"
#include "ipc/container_log.h"
#include "ipc/rpc_error.h"
#include "supervisor/netd_client.h"

namespace fcvm::supervisor {
namespace {

// A snapshot's three files go to the worker in one call.
constexpr unsigned kWorkerFds = 3;
// A foreground run whose client went away is stopped with this much grace.
constexpr uint32_t kLeaseStopGraceMs = 1000;
// Final records of VMs removed with --rm, kept for a lease's wait() that comes late.
constexpr size_t kMaxRememberedEnds = 256;

ipc::VmState fromWire(rpc::VmState s) {
  return static_cast<ipc::VmState>(static_cast<uint8_t>(s) + 1);
}

bool ended(ipc::VmState s) { return s == ipc::VmState::kStopped || s == ipc::VmState::kFailed; }

bool reached(const ipc::VmRecord& r, rpc::WaitCondition condition) {
  switch (condition) {
    case rpc::WaitCondition::RUNNING:
      return r.state == ipc::VmState::kRunning || r.state == ipc::VmState::kHealthy;
    case rpc::WaitCondition::HEALTHY:
      return r.state == ipc::VmState::kHealthy;
    case rpc::WaitCondition::ENDED:
      return ended(r.state);
  }
  return false;
}

const char* conditionName(rpc::WaitCondition condition) {
  switch (condition) {
    case rpc::WaitCondition::RUNNING:
      return "running";
    case rpc::WaitCondition::HEALTHY:
      return "healthy";
    case rpc::WaitCondition::ENDED:
      return "ended";
  }
  return "?";
}

// How a VM ended, in a few words, for its reason while it restarts.
std::string describeEnd(const ipc::VmRecord& r) {
  if (r.state == ipc::VmState::kFailed) {
    return r.reason.view().empty() ? "failed" : fmt::format("failed: {}", r.reason.view());
  }
  if (r.hasExitCode) return fmt::format("exited with code {}", r.exitCode);
  return "stopped";
}

void removeTree(const std::filesystem::path& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) spdlog::warn("could not remove {}: {}", path.string(), ec.message());
}

class WorkerEventsImpl final : public rpc::WorkerEvents::Server {
 public:
  WorkerEventsImpl(VmController& controller, std::string id)
      : controller_(controller), id_(std::move(id)) {}
  kj::Promise<void> stateChanged(StateChangedContext call) override {
    controller_.onWorkerState(id_, call.getParams().getState());
    return kj::READY_NOW;
  }

 private:
  VmController& controller_;
  std::string id_;
};

// Held by a foreground `fcvm podman run`: its release, however the client goes, stops the VM.
class VmLeaseImpl final : public rpc::VmLease::Server {
 public:
  VmLeaseImpl(VmController& controller, std::string id)
      : controller_(controller), id_(std::move(id)) {}
  ~VmLeaseImpl() { controller_.leaseReleased(id_); }

  kj::Promise<void> wait(WaitContext call) override {
    // Else a client that dies while waiting keeps the call, and so this lease, alive.
    call.allowCancellation();
    return controller_.whenGone(id_).then([call](ipc::VmRecord record) mutable {
      if (record.state == ipc::VmState::kFailed) {
        ipc::throwRpcError(
            kj::str("VM '", record.name.str().c_str(), "' failed: ", record.reason.str().c_str()));
      }
      auto exit = call.getResults().initExit();
      int code = record.hasExitCode ? record.exitCode : 0;
      exit.setCode(code);
      exit.setSignal(code > 128 ? code - 128 : 0);
    });
  }

 private:
  VmController& controller_;
  std::string id_;
};

}  // namespace

struct VmController::Waiter {
  rpc::WaitCondition condition;
  kj::Own<kj::PromiseFulfiller<ipc::VmRecord>> fulfiller;
};

struct VmController::LiveVm {
  std::string id;
  UniqueFd pidfd;
  kj::Own<kj::UnixEventPort::FdObserver> exitObserver;
  kj::Own<ipc::RpcClient> connection;
  kj::Maybe<rpc::Worker::Client> worker;
  bool child = false;  // started by this supervisor (so it reaps it), not adopted
  std::chrono::steady_clock::time_point startedAt = std::chrono::steady_clock::now();
  std::vector<Waiter> waiters;
};

// A VM in state restarting: waiting out its delay, then starting its worker again.
struct VmController::PendingRestart {
  ipc::VmRecord ended;          // how it ended: what it stays if its owner stops it meanwhile
  std::vector<Waiter> waiters;  // for the next start
  bool starting = false;        // past the delay: its worker is being started
  std::optional<uint32_t> stopTimeoutMs;  // its owner stopped it while it started
  kj::Canceler delay;
};

VmController::VmController(kj::AsyncIoContext& io, VmRegistry& registry, Paths paths,
                           NetdClient& netd, UserQuotas quotas, VmCgroups cgroups)
    : io_(io),
      registry_(registry),
      paths_(std::move(paths)),
      netd_(netd),
      quotas_(std::move(quotas)),
      cgroups_(std::move(cgroups)) {}

VmController::~VmController() = default;

void VmController::taskFailed(kj::Exception&& e) { spdlog::warn("{}", e.getDescription().cStr()); }

ipc::VmRecord VmController::visible(const Caller& caller, const std::string& name) const {
  auto record = registry_.find(caller, name);
  if (!record) throw Error(fmt::format("no VM named '{}'", name));
  return *record;
}

VmController::LiveVm* VmController::live(const std::string& id) {
  auto it = live_.find(id);
  return it == live_.end() ? nullptr : it->second.get();
}

bool VmController::settleOrphan(ipc::VmRecord& record) const {
  std::ifstream in(paths_.vmDir(record.id.view()) / "final-state.json");
  if (!in) return false;
  try {
    auto j = nlohmann::json::parse(in);
    auto state = ipc::vmStateFromString(jsonField<std::string>(j, "state"));
    if (!state || !ended(*state)) return false;
    record.state = *state;
    record.health = ipc::Health::kUnknown;
    record.reason.assignTruncated(optionalJsonField<std::string>(j, "reason").value_or(""));
    if (auto code = optionalJsonField<int32_t>(j, "exit_code")) {
      record.hasExitCode = 1;
      record.exitCode = *code;
    }
    return true;
  } catch (const nlohmann::json::exception& e) {
    spdlog::warn("VM {}: unreadable final state: {}", record.id.view(), e.what());
    return false;
  } catch (const Error& e) {
    spdlog::warn("VM {}: unreadable final state: {}", record.id.view(), e.what());
    return false;
  }
}

void VmController::adoptLive(const AdoptionSummary& adoption, bool hostRestarted) {
  const auto& orphans = adoption.orphanedIds;
  for (const auto& record : registry_.visibleTo(Caller{})) {
    std::string id = record.id.str();
    if (ended(record.state)) {
      if (std::find(orphans.begin(), orphans.end(), id) != orphans.end()) {
        settleEnd(record, hostRestarted ? EndCause::kHostRestarted : EndCause::kEnded, false, {});
      } else {
        tasks_.add(cleanUp(record));
      }
      continue;
    }
    LaunchedWorker worker{record.worker, openPidfd(record.worker)};
    if (!worker.pidfd) {
      auto failed = record;
      if (!settleOrphan(failed)) {
        failed.state = ipc::VmState::kFailed;
        failed.reason.assignTruncated("worker exited while the supervisor was starting");
      }
      settleEnd(failed, EndCause::kEnded, false, {});
      continue;
    }
    track(id, kj::mv(worker));
    live(id)->child = false;
    connect(*live(id), nullptr);
    spdlog::info("re-adopted VM {} ({}), worker pid {}", record.name.view(), id, record.worker.pid);
    if (ranInForeground(id)) {
      spdlog::info(
          "VM {}: its foreground client's lease ended with the previous supervisor; "
          "stopping it",
          id);
      tasks_.add(stopLive(*live(id), kLeaseStopGraceMs));
    }
  }
}

void VmController::track(const std::string& id, LaunchedWorker worker) {
  auto vm = kj::heap<LiveVm>();
  vm->id = id;
  vm->child = true;
  vm->pidfd = std::move(worker.pidfd);
  vm->exitObserver = kj::heap<kj::UnixEventPort::FdObserver>(
      io_.unixEventPort, vm->pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  tasks_.add(vm->exitObserver->whenBecomesReadable().then([this, id] { workerExited(id); }));
  live_[id] = kj::mv(vm);
}

void VmController::connect(LiveVm& vm, kj::Maybe<rpc::OutputSink::Client> output,
                           const BeforeAttach& beforeAttach) {
  try {
    vm.connection = kj::heap<ipc::RpcClient>(
        io_, ipc::connectUnixSocket(paths_.vmRunDir(vm.id) / "worker.sock"), kWorkerFds);
    auto worker = vm.connection->bootstrap<rpc::Worker>();
    if (beforeAttach) beforeAttach(worker);  // calls on one capability arrive in order
    auto attach = worker.attachRequest();
    attach.setEvents(kj::heap<WorkerEventsImpl>(*this, vm.id));
    KJ_IF_MAYBE (sink, output) {
      attach.setOutput(kj::mv(*sink));
    }
    tasks_.add(attach.send().ignoreResult());
    vm.worker = kj::mv(worker);
  } catch (const Error& e) {
    // A worker we cannot talk to cannot be managed: end it, its exit is handled as a failure.
    spdlog::error("VM {}: cannot reach its worker ({}); killing it", vm.id, e.what());
    ::syscall(SYS_pidfd_send_signal, vm.pidfd.get(), SIGKILL, nullptr, 0);
  }
}

void VmController::onWorkerState(const std::string& id, rpc::WorkerState::Reader state) {
  auto record = registry_.byId(id);
  auto* vm = live(id);
  if (!record || vm == nullptr || ended(record->state)) return;
  auto wireState = static_cast<uint8_t>(state.getState());
  auto wireHealth = static_cast<uint8_t>(state.getHealth());
  if (wireState > static_cast<uint8_t>(rpc::VmState::FAILED) || wireHealth > ipc::kHealthMax) {
    spdlog::warn("VM {}: worker reported an unknown state; ignored", id);
    return;
  }
  record->state = fromWire(state.getState());
  record->health = static_cast<ipc::Health>(wireHealth);
  record->reason.assignTruncated(
      std::string_view(state.getReason().cStr(), state.getReason().size()));
  record->hasExitCode = state.getHasExitCode() ? 1 : 0;
  record->exitCode = state.getExitCode();
  // "Ended" is decided when the worker process is gone and cleanup is done (workerExited); until
  // then an ended VM still shows as the worker reported it.
  registry_.update(*record);
  notify(*vm);
}

void VmController::notify(LiveVm& vm) {
  auto record = registry_.byId(vm.id);
  if (!record) return;
  auto& waiters = vm.waiters;
  for (auto it = waiters.begin(); it != waiters.end();) {
    if (it->condition != rpc::WaitCondition::ENDED && reached(*record, it->condition)) {
      it->fulfiller->fulfill(ipc::VmRecord(*record));
      it = waiters.erase(it);
    } else {
      ++it;
    }
  }
}

void VmController::workerExited(const std::string& id) {
  auto* vm = live(id);
  if (vm == nullptr) return;
  // A worker killed outright leaves QEMU to die of its parent-death signal; the VM has ended only
  // once QEMU is gone too.
  if (auto qemu = recordedQemu(paths_, id)) {
    struct Watch {  // the observer goes before the fd it watches
      UniqueFd pidfd;
      kj::Own<kj::UnixEventPort::FdObserver> observer;
    };
    auto watch = kj::heap<Watch>();
    watch->pidfd = openPidfd(*qemu);
    if (watch->pidfd) {
      ::syscall(SYS_pidfd_send_signal, watch->pidfd.get(), SIGKILL, nullptr, 0);
      watch->observer = kj::heap<kj::UnixEventPort::FdObserver>(
          io_.unixEventPort, watch->pidfd.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
      auto gone = watch->observer->whenBecomesReadable();
      tasks_.add(gone.attach(kj::mv(watch)).then([this, id] { finishEnded(id); }));
      return;
    }
  }
  finishEnded(id);
}

void VmController::finishEnded(const std::string& id) {
  auto* vm = live(id);
  if (vm == nullptr) return;
  std::string how = "the worker exited unexpectedly";
  if (vm->child) {
    siginfo_t info{};
    if (::waitid(P_PIDFD, static_cast<id_t>(vm->pidfd.get()), &info, WEXITED | WNOHANG) == 0 &&
        info.si_pid != 0) {
      how += info.si_code == CLD_EXITED ? fmt::format(" (exit code {})", info.si_status)
                                        : fmt::format(" (signal {})", info.si_status);
    }
  }
  if (auto record = registry_.byId(id)) {
    auto final = *record;
    if (!ended(final.state) && !settleOrphan(final)) {
      final.state = ipc::VmState::kFailed;
      final.health = ipc::Health::kUnknown;
      final.reason.assignTruncated(how);
    }
    // A VM adopted from an earlier supervisor ran for an unknown time: not a quick end.
    bool quick = vm->child && std::chrono::steady_clock::now() - vm->startedAt < kQuickEnd;
    settleEnd(final, EndCause::kEnded, quick, kj::mv(vm->waiters));
  } else {
    tellEnded(vm->waiters, std::nullopt);
  }
  // This runs inside the VM's own exit observer: free it once that callback has returned.
  auto owned = kj::mv(live_[id]);
  live_.erase(id);
  tasks_.add(kj::evalLater([owned = kj::mv(owned)]() {}));
}

void VmController::settleEnd(ipc::VmRecord final, EndCause cause, bool quick,
                             std::vector<Waiter> waiters) {
  auto id = final.id.str();
  if (stoppedByOwner(id)) cause = EndCause::kStoppedByOwner;
  uint32_t& quickEnds = quickEnds_[id];
  quickEnds = quick ? quickEnds + 1 : 0;
  std::optional<std::chrono::milliseconds> delay;
  if (!final.autoRemove) delay = restartDelay(specOf(id).restart, final, cause, quickEnds);
  spdlog::info("VM {} ({}) ended: {}{}", final.name.view(), id, ipc::toString(final.state),
               final.reason.view().empty() ? "" : fmt::format(" ({})", final.reason.view()));

  // A VM that restarts has not ended for good: its waiters (`wait`, also for "ended") wait on.
  std::vector<Waiter> told;
  if (delay) {
    auto pending = kj::heap<PendingRestart>();
    pending->ended = final;
    pending->waiters = kj::mv(waiters);
    // Else an adoption would take the old run's end for the restarted one's.
    std::error_code ignored;
    std::filesystem::remove(paths_.vmDir(id) / "final-state.json", ignored);
    auto restarting = final;
    restarting.state = ipc::VmState::kRestarting;
    restarting.health = ipc::Health::kUnknown;
    restarting.reason.assignTruncated(fmt::format("{}; restart {} in {} s", describeEnd(final),
                                                  final.restartCount + 1,
                                                  (delay->count() + 999) / 1000));
    registry_.update(restarting);
    spdlog::info("VM {} ({}) restarts in {} ms (restart policy {})", final.name.view(), id,
                 delay->count(), ipc::toString(specOf(id).restart));
    restarts_[id] = kj::mv(pending);
  } else {
    told = kj::mv(waiters);
    registry_.update(final);
  }
  auto teardown = cleanUp(final);
  if (onEnded_) onEnded_(final);

  // Waiters learn the end only once nothing of the VM is left but its records (its network is
  // taken down by netd, asynchronously); so do those who ask meanwhile (teardownOf). A restart
  // starts only then too: its network takes the place of the old one.
  auto forked = teardown.fork();
  if (delay) {
    auto delayed = forked.addBranch()
                       .catch_([](kj::Exception&& e) {
                         spdlog::warn("cleanup before a restart: {}", e.getDescription().cStr());
                       })
                       .then([this, ms = delay->count()] {
                         return io_.provider->getTimer().afterDelay(ms * kj::MILLISECONDS);
                       });
    tasks_.add(restarts_[id]
                   ->delay.wrap(kj::mv(delayed))
                   .then([this, id] { relaunch(id); },
                         [](kj::Exception&&) {
                           // called off by a stop or rm
                         }));
  }
  auto done = forked.addBranch();
  teardowns_.insert_or_assign(id, kj::mv(forked));
  tasks_.add(done.then([this, id, final, told = kj::mv(told)]() mutable {
    teardowns_.erase(id);
    tellEnded(told, final);
  }));
}

void VmController::tellEnded(std::vector<Waiter>& waiters,
                             const std::optional<ipc::VmRecord>& final) {
  for (auto& waiter : waiters) {
    if (!final) {
      waiter.fulfiller->reject(ipc::rpcError("the VM was removed"));
    } else if (waiter.condition == rpc::WaitCondition::ENDED) {
      waiter.fulfiller->fulfill(ipc::VmRecord(*final));
    } else {
      waiter.fulfiller->reject(ipc::rpcError(kj::str(
          "VM '", final->name.str().c_str(), "' ended (", ipc::toString(final->state).data(),
          final->reason.view().empty() ? "" : ": ", final->reason.str().c_str(), ") before it was ",
          conditionName(waiter.condition))));
    }
  }
  waiters.clear();
}

kj::Own<VmController::PendingRestart> VmController::takeRestart(const std::string& id) {
  auto it = restarts_.find(id);
  if (it == restarts_.end()) return {};
  auto pending = kj::mv(it->second);
  restarts_.erase(it);
  return pending;
}

void VmController::relaunch(const std::string& id) {
  auto it = restarts_.find(id);
  auto record = registry_.byId(id);
  if (it == restarts_.end() || !record || record->state != ipc::VmState::kRestarting) return;
  it->second->starting = true;
  record->restartCount += 1;
  registry_.update(*record);
  // Booted from its image again, as at its first start: the old disk goes.
  removeTree(paths_.vmDiskDir(id));
  const ipc::VmSpec spec = specOf(id);
  // Its owner's rights as the user database has them now (there is no client to ask).
  WorkerInputs inputs{
      Credentials::ofUser(record->ownerUid, record->ownerUid), -1, {}, -1, -1, {}, {}, false};
  spdlog::info("VM {} ({}): restart {} (restart policy {})", record->name.view(), id,
               record->restartCount, ipc::toString(spec.restart));
  tasks_.add(startWorker(id, spec, inputs)
                 .then(
                     [this, id](LaunchedWorker worker) {
                       auto pending = takeRestart(id);
                       auto record = registry_.byId(id);
                       if (!record || !pending) {
                         ::syscall(SYS_pidfd_send_signal, worker.pidfd.get(), SIGKILL, nullptr, 0);
                         return;
                       }
                       record->worker = worker.identity;
                       registry_.update(*record);
                       track(id, kj::mv(worker));
                       auto& vm = *live(id);
                       connect(vm, nullptr);
                       vm.waiters = kj::mv(pending->waiters);
                       if (pending->stopTimeoutMs)
                         tasks_.add(stopLive(vm, *pending->stopTimeoutMs));
                     },
                     [this, id](kj::Exception&& e) {
                       auto pending = takeRestart(id);
                       auto record = registry_.byId(id);
                       if (!record) return;
                       record->state = ipc::VmState::kFailed;
                       record->health = ipc::Health::kUnknown;
                       record->hasExitCode = 0;
                       record->reason.assignTruncated(
                           fmt::format("restart failed: {}", e.getDescription().cStr()));
                       std::vector<Waiter> waiters;
                       if (pending) waiters = kj::mv(pending->waiters);
                       settleEnd(*record, EndCause::kEnded, true, kj::mv(waiters));
                     }));
}

kj::Promise<ipc::VmRecord> VmController::stopRestarting(PendingRestart& pending,
                                                        uint32_t timeoutMs) {
  auto id = pending.ended.id.str();
  if (pending.starting) {  // stopped as soon as its worker is up
    pending.stopTimeoutMs = timeoutMs;
    auto pair = kj::newPromiseAndFulfiller<ipc::VmRecord>();
    pending.waiters.push_back({rpc::WaitCondition::ENDED, kj::mv(pair.fulfiller)});
    return kj::mv(pair.promise);
  }
  auto owned = takeRestart(id);  // its delay is cancelled with it
  auto ended = owned->ended;
  registry_.update(ended);
  spdlog::info("VM {} ({}): its restart was called off by a stop; it stays {}", ended.name.view(),
               id, ipc::toString(ended.state));
  return teardownOf(id).then([ended, waiters = kj::mv(owned->waiters)]() mutable {
    tellEnded(waiters, ended);
    return ended;
  });
}

void VmController::markStoppedByOwner(const std::string& id) {
  auto marker = paths_.vmDir(id) / "stopped-by-owner";
  std::ofstream out(marker);
  if (!out)
    spdlog::warn("could not write {}: a restart policy may start the VM again", marker.string());
}

bool VmController::stoppedByOwner(const std::string& id) const {
  std::error_code ignored;
  return std::filesystem::exists(paths_.vmDir(id) / "stopped-by-owner", ignored);
}

void VmController::markForeground(const std::string& id) {
  auto marker = paths_.vmDir(id) / "foreground";
  std::error_code ignored;
  std::filesystem::create_directories(marker.parent_path(), ignored);
  // Without it a supervisor restart would leave the VM running with no client, for good.
  if (!std::ofstream(marker)) throw Error(fmt::format("could not write {}", marker.string()));
}

bool VmController::ranInForeground(const std::string& id) const {
  std::error_code ignored;
  return std::filesystem::exists(paths_.vmDir(id) / "foreground", ignored);
}

const ipc::VmSpec& VmController::specOf(const std::string& id) {
  auto it = specs_.find(id);
  if (it != specs_.end()) return it->second;
  static const ipc::VmSpec kNone;
  try {
    return specs_[id] = ipc::readVmSpecFile((paths_.vmDir(id) / "spec.bin").string());
  } catch (const Error&) {
    return kNone;  // removed, or never written
  }
}

bool VmController::isBridged(const ipc::VmRecord& record) {
  return record.network.view().starts_with("bridged");
}

std::vector<std::string> VmController::bridgedVms() const {
  std::vector<std::string> ids;
  for (const auto& r : registry_.visibleTo(Caller{})) {
    if (isBridged(r) && !ended(r.state)) ids.push_back(r.id.str());
  }
  return ids;
}

kj::Promise<void> VmController::cleanUp(const ipc::VmRecord& record) {
  auto id = record.id.str();
  kj::Promise<void> network = kj::READY_NOW;
  if (isBridged(record)) network = netd_.destroyNetwork(id);
  removeTree(paths_.vmRunDir(id));
  removeTree(paths_.vmMemoryFile(id));
  cgroups_.remove(id);
  if (record.state == ipc::VmState::kFailed || record.autoRemove) {
    removeTree(paths_.vmDiskDir(id));
  }
  if (record.autoRemove) {
    removeTree(paths_.vmDir(id));
    ended_[id] = record;
    if (ended_.size() > kMaxRememberedEnds) ended_.erase(ended_.begin());
    registry_.erase(id);
    specs_.erase(id);
    quickEnds_.erase(id);
  }
  return network;
}

ipc::VmRecord VmController::create(const Caller& caller, ipc::VmSpec& spec, bool autoRemove,
                                   const std::string& snapshotId) {
  if (spec.name.empty()) spec.name = "vm-" + randomHexId().substr(0, 8);
  // The network: a root caller's VMs are bridged, anyone else's rootless (no privilege at all).
  if (spec.network == "auto") spec.network = caller.isRoot() ? "bridged" : "rootless";
  QuotaUsage usage;
  for (const auto& r : registry_.visibleTo(Caller{})) {
    if (r.ownerUid != caller.uid || ended(r.state)) continue;
    usage.vms += 1;
    usage.memoryMib += specOf(r.id.str()).memoryMib;
  }
  quotas_.checkVm(caller.uid, usage, spec.memoryMib);
  ipc::VmRecord record = registry_.create(caller.uid, spec.name, spec.image);
  record.autoRemove = autoRemove ? 1 : 0;
  record.snapshotId.assignTruncated(snapshotId);
  record.network.assignTruncated(spec.network);
  registry_.update(record);
  std::string id = record.id.str();
  specs_[id] = spec;
  try {
    ensureOwnedDirectory(paths_.vmDir(id), 0700);
    ipc::writeVmSpecFile(spec, (paths_.vmDir(id) / "spec.bin").string());
  } catch (...) {
    discard(id);
    throw;
  }
  return record;
}

void VmController::discard(const std::string& id) {
  // Nothing of a VM that never started stays behind.
  if (auto record = registry_.byId(id); record && isBridged(*record)) {
    tasks_.add(netd_.destroyNetwork(id));
  }
  removeTree(paths_.vmRunDir(id));
  removeTree(paths_.vmMemoryFile(id));
  removeTree(paths_.vmDiskDir(id));
  removeTree(paths_.vmDir(id));
  cgroups_.remove(id);
  registry_.erase(id);
  specs_.erase(id);
  quickEnds_.erase(id);
}

kj::Promise<LaunchedWorker> VmController::startWorker(const std::string& id,
                                                      const ipc::VmSpec& spec,
                                                      WorkerInputs inputs) {
  try {
    inputs.cgroups = cgroups_.create(id, vmLimits(spec.memoryMib, spec.cpus));
  } catch (const Error& e) {  // a failed start, which the caller cleans up after
    return ipc::rpcError(kj::str("cannot give the VM its cgroup: ", e.what()));
  }
  kj::Promise<UniqueFd> network = UniqueFd();
  if (spec.network == "bridged") {
    network = netd_.createNetwork(id, spec.ports, spec.dns).then([this, id](VmNetwork network) {
      if (auto record = registry_.byId(id)) {
        record->network.assignTruncated(
            fmt::format("bridged {} via {}", network.guestIp, network.nsIp));
        registry_.update(*record);
      }
      return std::move(network.tap);
    });
  }
  return network.then([this, id, inputs](UniqueFd tap) mutable {
    inputs.tap = tap.get();
    return launchWorker(io_, paths_, id, inputs).attach(std::move(tap));
  });
}

kj::Promise<RunResult> VmController::launch(const std::string& id, const ipc::VmSpec& spec,
                                            WorkerInputs inputs,
                                            kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                                            BeforeAttach beforeAttach) {
  if (!detach) {
    try {
      markForeground(id);  // before the worker exists: a restart must see it
    } catch (const Error&) {
      discard(id);
      throw;
    }
  }
  return startWorker(id, spec, kj::mv(inputs))
      .then(
          [this, id, detach, output = kj::mv(output),
           beforeAttach = std::move(beforeAttach)](LaunchedWorker worker) mutable {
            auto record = registry_.byId(id);
            if (!record) {
              // Removed (rm -f) while it started: its worker must not run on untracked.
              ::syscall(SYS_pidfd_send_signal, worker.pidfd.get(), SIGKILL, nullptr, 0);
              ipc::throwRpcError("the VM was removed while it started");
            }
            record->worker = worker.identity;
            registry_.update(*record);
            track(id, kj::mv(worker));
            connect(*live(id), detach ? nullptr : kj::mv(output), beforeAttach);
            RunResult result{*registry_.byId(id), nullptr};
            if (!detach) result.lease = rpc::VmLease::Client(kj::heap<VmLeaseImpl>(*this, id));
            return result;
          },
          [this, id](kj::Exception&& e) -> RunResult {
            discard(id);
            kj::throwFatalException(kj::mv(e));
          });
}

std::string VmController::begin(const Caller& caller, ipc::VmSpec& spec, bool detach,
                                bool autoRemove, const std::vector<std::string>& podmanEnv) {
  if (spec.restart.kind != ipc::RestartPolicy::Kind::kNo) {
    // A restart starts the VM with no client: only what the supervisor can reach on its own.
    if (autoRemove) throw Error("--restart and --rm conflict: a VM that restarts is kept");
    if (!detach) throw Error("--restart needs -d: a foreground VM ends with its client");
    if (ipc::isArchiveImage(spec.image)) {
      throw Error(
          "--restart cannot restart an image archive: only the client can open the archive");
    }
    if (!spec.volumes.empty()) {
      throw Error(
          "--restart cannot be used with --map: the directories are opened with the client's "
          "rights, and a restart has no client");
    }
  }
  auto record = create(caller, spec, autoRemove, "");
  std::string id = record.id.str();
  try {
    ipc::writePodmanEnvFile(podmanEnv, (paths_.vmDir(id) / "podman-env.json").string());
  } catch (...) {
    discard(id);
    throw;
  }
  spdlog::info("uid {} runs VM {} ({}) with {}{}", caller.uid, spec.name, id, spec.image,
               detach ? ", detached" : "");
  return id;
}

kj::Promise<RunResult> VmController::run(const Caller& caller, ipc::VmSpec spec,
                                         kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                                         bool autoRemove, ImageInputs image) {
  auto id = begin(caller, spec, detach, autoRemove, image.podmanEnv);
  WorkerInputs inputs{
      Credentials{caller.uid, caller.gid, {}}, image.archive.get(), {}, -1, -1, {}, {}, false};
  for (const auto& dir : image.volumeDirs) inputs.volumeDirs.push_back(dir.get());
  return launch(id, spec, inputs, kj::mv(output), detach)
      .attach(std::move(image.archive), std::move(image.volumeDirs));
}

void VmController::markClone(const std::string& id, const std::string& snapshotId) {
  if (auto record = registry_.byId(id)) {
    record->snapshotId.assignTruncated(snapshotId);
    registry_.update(*record);
  }
}

std::vector<ipc::VmRecord> VmController::clonesOf(const std::string& snapshotId) const {
  std::vector<ipc::VmRecord> clones;
  for (const auto& r : registry_.visibleTo(Caller{})) {
    if (r.snapshotId.view() == snapshotId && !ended(r.state)) clones.push_back(r);
  }
  return clones;
}

kj::Promise<void> VmController::stopById(const std::string& id, uint32_t timeoutMs) {
  auto* vm = live(id);
  if (vm == nullptr) return kj::READY_NOW;
  return stopLive(*vm, timeoutMs);
}

kj::Maybe<rpc::Worker::Client> VmController::workerOf(const std::string& id) {
  auto* vm = live(id);
  if (vm == nullptr) return nullptr;
  return vm->worker;
}

kj::Promise<rpc::Process::Client> VmController::exec(const Caller& caller, const std::string& name,
                                                     rpc::ExecSpec::Reader request,
                                                     rpc::OutputSink::Client output) {
  auto record = visible(caller, name);
  auto* vm = live(record.id.str());
  if (vm == nullptr || ended(record.state)) {
    throw Error(fmt::format("VM '{}' is not running ({})", name, ipc::toString(record.state)));
  }
  KJ_IF_MAYBE (worker, vm->worker) {
    auto call = worker->execRequest();
    call.setRequest(request);
    call.setOutput(kj::mv(output));
    return call.send().then([](auto reply) { return reply.getProcess(); });
  }
  throw Error(fmt::format("VM '{}' has no worker connection", name));
}

kj::Promise<capnp::Response<rpc::Worker::MemoryResults>> VmController::memory(
    const Caller& caller, const std::string& name) {
  auto record = visible(caller, name);
  auto* vm = live(record.id.str());
  if (vm == nullptr || ended(record.state)) {
    throw Error(fmt::format("VM '{}' is not running ({})", name, ipc::toString(record.state)));
  }
  KJ_IF_MAYBE (worker, vm->worker) {
    return worker->memoryRequest().send();
  }
  throw Error(fmt::format("VM '{}' has no worker connection", name));
}

kj::Promise<void> VmController::stopLive(LiveVm& vm, uint32_t timeoutMs) {
  KJ_IF_MAYBE (worker, vm.worker) {
    auto call = worker->stopRequest();
    call.setTimeoutMs(timeoutMs);
    tasks_.add(call.send().ignoreResult().catch_([](kj::Exception&&) {}));
  } else {
    ::syscall(SYS_pidfd_send_signal, vm.pidfd.get(), SIGKILL, nullptr, 0);
  }
  return whenGone(vm.id).ignoreResult();
}

kj::Promise<ipc::VmRecord> VmController::stop(const Caller& caller, const std::string& name,
                                              uint32_t timeoutMs) {
  auto record = visible(caller, name);
  auto id = record.id.str();
  auto* vm = live(id);
  auto restart = restarts_.find(id);
  if (vm != nullptr || restart != restarts_.end()) markStoppedByOwner(id);
  if (restart != restarts_.end()) return stopRestarting(*restart->second, timeoutMs);
  if (vm == nullptr) return teardownOf(id).then([record]() { return record; });  // ended
  spdlog::info("uid {} stops VM {} ({})", caller.uid, name, id);
  return stopLive(*vm, timeoutMs).then([this, id, record]() {
    auto now = registry_.byId(id);
    return now ? *now : record;
  });
}

kj::Promise<void> VmController::remove(const Caller& caller, const std::string& name, bool force) {
  auto record = visible(caller, name);
  auto id = record.id.str();
  auto removeEnded = [this, id, name, uid = caller.uid]() {
    auto now = registry_.byId(id);
    if (!now) return;  // removed meanwhile (--rm)
    removeTree(paths_.vmRunDir(id));
    removeTree(paths_.vmMemoryFile(id));
    removeTree(paths_.vmDiskDir(id));
    removeTree(paths_.vmDir(id));
    registry_.erase(id);
    specs_.erase(id);
    quickEnds_.erase(id);
    spdlog::info("uid {} removed VM {} ({})", uid, name, id);
  };
  auto* vm = live(id);
  if (vm == nullptr && !isActive(record.state)) return teardownOf(id).then(kj::mv(removeEnded));
  if (!force) {
    throw Error(fmt::format("VM '{}' is {}; stop it first or use rm -f", name,
                            ipc::toString(record.state)));
  }
  markStoppedByOwner(id);
  if (auto restart = restarts_.find(id); restart != restarts_.end()) {
    return stopRestarting(*restart->second, 0).ignoreResult().then(kj::mv(removeEnded));
  }
  if (vm == nullptr) return teardownOf(id).then(kj::mv(removeEnded));
  return stopLive(*vm, 0).then(kj::mv(removeEnded));
}

kj::Promise<void> VmController::logs(const Caller& caller, const std::string& name, bool follow,
                                     rpc::OutputSink::Client output, rpc::LogSource source) {
  auto record = visible(caller, name);
  if (source != rpc::LogSource::CONTAINER) {
    if (follow) throw Error("only the container's output can be followed");
    const char* file = source == rpc::LogSource::CONSOLE ? "console.log" : "worker.log";
    return ipc::sendTextFile(paths_.vmDir(record.id.view()) / file, kj::mv(output));
  }
  auto* vm = live(record.id.str());
  if (vm != nullptr) {
    KJ_IF_MAYBE (worker, vm->worker) {
      auto call = worker->logsRequest();
      call.setFollow(follow);
      call.setOutput(kj::mv(output));
      return call.send().ignoreResult();
    }
  }
  auto reader = kj::heap<ipc::ContainerLogReader>(paths_.vmDir(record.id.view()) / "container.log");
  return ipc::sendContainerLog(kj::mv(reader), kj::mv(output));
}

kj::Promise<ipc::VmRecord> VmController::waitFor(const Caller& caller, const std::string& name,
                                                 rpc::WaitCondition condition) {
  auto record = visible(caller, name);
  if (reached(record, condition)) {
    return teardownOf(record.id.str()).then([record]() { return record; });
  }
  if (auto restart = restarts_.find(record.id.str()); restart != restarts_.end()) {
    auto pair = kj::newPromiseAndFulfiller<ipc::VmRecord>();
    restart->second->waiters.push_back({condition, kj::mv(pair.fulfiller)});
    return kj::mv(pair.promise);
  }
  auto* vm = live(record.id.str());
  if (vm == nullptr) {
    throw Error(fmt::format("VM '{}' is {} and will not become {}", name,
                            ipc::toString(record.state), conditionName(condition)));
  }
  auto pair = kj::newPromiseAndFulfiller<ipc::VmRecord>();
  vm->waiters.push_back({condition, kj::mv(pair.fulfiller)});
  return kj::mv(pair.promise);
}

kj::Promise<void> VmController::teardownOf(const std::string& id) {
  auto it = teardowns_.find(id);
  if (it == teardowns_.end()) return kj::READY_NOW;
  return it->second.addBranch();
}

kj::Promise<ipc::VmRecord> VmController::whenGone(const std::string& id) {
  auto* vm = live(id);
  if (vm == nullptr) {
    return teardownOf(id).then([this, id]() -> kj::Promise<ipc::VmRecord> {
      if (auto record = registry_.byId(id)) return *record;
      auto it = ended_.find(id);
      if (it != ended_.end()) return it->second;
      return ipc::rpcError("the VM is gone");
    });
  }
  auto pair = kj::newPromiseAndFulfiller<ipc::VmRecord>();
  vm->waiters.push_back({rpc::WaitCondition::ENDED, kj::mv(pair.fulfiller)});
  return kj::mv(pair.promise);
}

void VmController::leaseReleased(const std::string& id) {
  auto* vm = live(id);
  if (vm == nullptr) return;
  spdlog::info("VM {}: its foreground client went away; stopping it", id);
  tasks_.add(stopLive(*vm, kLeaseStopGraceMs));
}

}  // namespace fcvm::supervisor
