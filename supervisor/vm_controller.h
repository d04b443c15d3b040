// The supervisor's side of running VMs: starts a worker per VM, keeps a connection to each live
// worker, turns the workers' state reports into registry updates, notices workers that die, and
// cleans up after every VM however it ended (runtime dir always; disk when it failed; disk and
// records with run --rm), and starts again a VM whose restart policy says so (supervisor/
// restart_rule.h). Callers are checked against the registry's ownership rules first.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/paths.h"
#include "base/unique_fd.h"
#include "base/vm_cgroup.h"
#include "ipc/rpc_client.h"
#include "ipc/supervisor.capnp.h"
#include "ipc/vm_spec.h"
#include "ipc/worker.capnp.h"
#include "supervisor/caller.h"
#include "supervisor/netd_client.h"
#include "supervisor/restart_rule.h"
#include "supervisor/user_quotas.h"
#include "supervisor/vm_registry.h"
#include "supervisor/worker_launcher.h"

namespace fcvm::supervisor {

// How a run's image is read with the caller's rights (see Supervisor.runVm).
struct ImageInputs {
  UniqueFd archive;                    // an archive image: the file the client opened
  std::vector<std::string> podmanEnv;  // where the caller's podman storage is
  std::vector<UniqueFd> volumeDirs;    // each of spec.volumes, as the client opened it
};

struct RunResult {
  ipc::VmRecord record;
  kj::Maybe<rpc::VmLease::Client> lease;
};

class VmController : private kj::TaskSet::ErrorHandler {
 public:
  VmController(kj::AsyncIoContext& io, VmRegistry& registry, Paths paths, NetdClient& netd,
               UserQuotas quotas = {}, VmCgroups cgroups = {});
  ~VmController();

  // How a VM whose worker died while no supervisor ran has ended, from its final state file.
  bool settleOrphan(ipc::VmRecord& record) const;
  // After the registry's adoption: reconnects to every live worker, cleans up ended VMs, and
  // restarts those that ended while no supervisor ran (the adoption's orphans) as their restart
  // policy says.
  void adoptLive(const AdoptionSummary& adoption, bool hostRestarted);

  kj::Promise<RunResult> run(const Caller& caller, ipc::VmSpec spec,
                             kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                             bool autoRemove, ImageInputs image);
  // run() in two steps, for VMs that need more between them (a clone's memory image): register
  // the VM (a generated name when it has none) and write its spec, then start its worker. A VM
  // created but not launched is discarded.
  ipc::VmRecord create(const Caller& caller, ipc::VmSpec& spec, bool autoRemove,
                       const std::string& snapshotId);
  // What a caller sends the worker before the first attach (a start-up snapshot's request).
  using BeforeAttach = std::function<void(rpc::Worker::Client&)>;
  kj::Promise<RunResult> launch(const std::string& id, const ipc::VmSpec& spec, WorkerInputs inputs,
                                kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                                BeforeAttach beforeAttach = nullptr);
  // run()'s first step for a VM from an image: checks the spec, registers the VM and writes its
  // spec and the caller's podman settings. Returns the VM's id.
  std::string begin(const Caller& caller, ipc::VmSpec& spec, bool detach, bool autoRemove,
                    const std::vector<std::string>& podmanEnv);
  // The VM `id` starts from the snapshot `snapshotId` (a start-up snapshot's clone).
  void markClone(const std::string& id, const std::string& snapshotId);
  void discard(const std::string& id);

  const UserQuotas& quotas() const { return quotas_; }
  // The VM's spec as it was asked for (ports, volumes, ...); empty if it has none on record.
  const ipc::VmSpec& specOf(const std::string& id);
  // The live VMs with a bridged network (netd keeps theirs, removes any other).
  std::vector<std::string> bridgedVms() const;
  // The live clones of a snapshot.
  std::vector<ipc::VmRecord> clonesOf(const std::string& snapshotId) const;
  // Stops a VM by id (no caller check: the supervisor's own decision); resolves once it ended.
  kj::Promise<void> stopById(const std::string& id, uint32_t timeoutMs);
  kj::Maybe<rpc::Worker::Client> workerOf(const std::string& id);
  // Called with the final record of every VM that ends (after its cleanup).
  void setEndListener(std::function<void(const ipc::VmRecord&)> listener) {
    onEnded_ = std::move(listener);
  }
  // The running VM's memory, from its worker.
  kj::Promise<capnp::Response<rpc::Worker::MemoryResults>> memory(const Caller& caller,
                                                                  const std::string& name);
  kj::Promise<rpc::Process::Client> exec(const Caller& caller, const std::string& name,
                                         rpc::ExecSpec::Reader request,
                                         rpc::OutputSink::Client output);
  kj::Promise<ipc::VmRecord> stop(const Caller& caller, const std::string& name,
                                  uint32_t timeoutMs);
  kj::Promise<void> remove(const Caller& caller, const std::string& name, bool force);
  kj::Promise<void> logs(const Caller& caller, const std::string& name, bool follow,
                         rpc::OutputSink::Client output, rpc::LogSource source);
  kj::Promise<ipc::VmRecord> waitFor(const Caller& caller, const std::string& name,
                                     rpc::WaitCondition condition);

  // For the lease and event capabilities.
  void onWorkerState(const std::string& id, rpc::WorkerState::Reader state);
  void leaseReleased(const std::string& id);
  kj::Promise<ipc::VmRecord> whenGone(const std::string& id);

 private:
  struct LiveVm;
  struct Waiter;
  struct PendingRestart;

  ipc::VmRecord visible(const Caller& caller, const std::string& name) const;
  LiveVm* live(const std::string& id);
  void track(const std::string& id, LaunchedWorker worker);
  void connect(LiveVm& vm, kj::Maybe<rpc::OutputSink::Client> output,
               const BeforeAttach& beforeAttach = nullptr);
  kj::Promise<void> stopLive(LiveVm& vm, uint32_t timeoutMs);
  void workerExited(const std::string& id);
  void finishEnded(const std::string& id);
  // VM `final.id` ended as `final`: records it and cleans up, then restarts it if its policy
  // says so (its waiters wait on: it has not ended for good) or tells every waiter.
  void settleEnd(ipc::VmRecord final, EndCause cause, bool quick, std::vector<Waiter> waiters);
  void relaunch(const std::string& id);
  kj::Own<PendingRestart> takeRestart(const std::string& id);  // null if none
  // Tells those waiting on a VM that it ended as `final` (none: it was removed).
  static void tellEnded(std::vector<Waiter>& waiters, const std::optional<ipc::VmRecord>& final);
  // Calls off a pending restart on the owner's stop: the VM stays as it ended.
  kj::Promise<ipc::VmRecord> stopRestarting(PendingRestart& pending, uint32_t timeoutMs);
  // A stop or rm by the owner is final for every restart policy, across supervisor restarts.
  void markStoppedByOwner(const std::string& id);
  bool stoppedByOwner(const std::string& id) const;
  // A foreground VM's lease lives in the supervisor that started it: one that comes after it (a
  // restart) has no client to hold it for, so it stops the VM as the lease's release would.
  void markForeground(const std::string& id);
  bool ranInForeground(const std::string& id) const;
  // The worker's start: the VM's cgroup, its network from netd (bridged), then the process.
  kj::Promise<LaunchedWorker> startWorker(const std::string& id, const ipc::VmSpec& spec,
                                          WorkerInputs inputs);
  kj::Promise<void> cleanUp(const ipc::VmRecord& record);  // resolves once its network is gone
  // Resolves once VM `id`'s cleanup after its end is done (at once if none is under way): an
  // ended VM is observed as ended (wait, rm, stop) only with nothing of it left but records.
  kj::Promise<void> teardownOf(const std::string& id);
  static bool isBridged(const ipc::VmRecord& record);
  void notify(LiveVm& vm);
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  VmRegistry& registry_;
  const Paths paths_;
  NetdClient& netd_;
  const UserQuotas quotas_;
  const VmCgroups cgroups_;
  std::map<std::string, kj::Own<LiveVm>> live_;
  std::map<std::string, ipc::VmRecord> ended_;  // final records of VMs removed by --rm
  std::function<void(const ipc::VmRecord&)> onEnded_;
  std::map<std::string, ipc::VmSpec> specs_;                  // by VM id, read once
  std::map<std::string, kj::ForkedPromise<void>> teardowns_;  // cleanups under way, by VM id
  std::map<std::string, kj::Own<PendingRestart>> restarts_;   // VMs in state restarting, by id
  std::map<std::string, uint32_t> quickEnds_;  // by VM id: ends in a row soon after the start
  kj::TaskSet tasks_{*this};                   // last: its tasks go before what they use
};

}  // namespace fcvm::supervisor
