// The Supervisor capability one connection gets: every call runs with the credentials the kernel
// reported for that connection.
#pragma once

#include <kj/async.h>

#include <filesystem>

#include "base/paths.h"
#include "ipc/supervisor.capnp.h"
#include "supervisor/caller.h"
#include "supervisor/snapshot_controller.h"
#include "supervisor/startup_cache.h"
#include "supervisor/vm_controller.h"
#include "supervisor/vm_registry.h"

namespace fcvm::supervisor {

// What every connection shares: constant after start, except the registry.
struct SupervisorContext {
  VmRegistry& registry;
  VmController& vms;
  SnapshotController& snapshots;
  StartupCache& startup;
  const ipc::StateTable& table;
  std::filesystem::path dataDir;
  std::filesystem::path runtimeDir;
  std::filesystem::path socket;
  int64_t startedAtNs = 0;
  AdoptionSummary adoption;
  kj::Own<kj::PromiseFulfiller<void>>& shutdown;  // fulfilled by an allowed shutdown call
};

class SupervisorService final : public rpc::Supervisor::Server {
 public:
  SupervisorService(SupervisorContext& context, Caller caller);

  kj::Promise<void> status(StatusContext context) override;
  kj::Promise<void> listVms(ListVmsContext context) override;
  kj::Promise<void> getVm(GetVmContext context) override;
  kj::Promise<void> removeVm(RemoveVmContext context) override;
  kj::Promise<void> shutdown(ShutdownContext context) override;
  kj::Promise<void> runVm(RunVmContext context) override;
  kj::Promise<void> exec(ExecContext context) override;
  kj::Promise<void> stopVm(StopVmContext context) override;
  kj::Promise<void> logs(LogsContext context) override;
  kj::Promise<void> waitVm(WaitVmContext context) override;
  kj::Promise<void> createSnapshot(CreateSnapshotContext context) override;
  kj::Promise<void> listSnapshots(ListSnapshotsContext context) override;
  kj::Promise<void> removeSnapshot(RemoveSnapshotContext context) override;
  kj::Promise<void> serveSnapshot(ServeSnapshotContext context) override;
  kj::Promise<void> stopServe(StopServeContext context) override;
  kj::Promise<void> runClone(RunCloneContext context) override;
  kj::Promise<void> listServes(ListServesContext context) override;
  kj::Promise<void> inspectSnapshot(InspectSnapshotContext context) override;
  kj::Promise<void> diskUsage(DiskUsageContext context) override;
  kj::Promise<void> prune(PruneContext context) override;
  kj::Promise<void> vmMemory(VmMemoryContext context) override;

 private:
  Paths paths() const { return Paths{context_.dataDir, context_.runtimeDir, {}, {}}; }

  SupervisorContext& context_;
  const Caller caller_;
};

}  // namespace fcvm::supervisor
