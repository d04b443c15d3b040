// The supervisor's side of running VMs: starts a worker per VM, keeps a connection to each live
// worker, turns the workers' state reports into registry updates, notices workers that die, and
// cleans up after every VM however it ended (runtime dir always; disk when it failed; disk and
// records with run --rm). Callers are checked against the registry's ownership rules first.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/paths.h"
#include "base/unique_fd.h"
#include "ipc/rpc_client.h"
#include "ipc/supervisor.capnp.h"
#include "ipc/vm_spec.h"
#include "ipc/worker.capnp.h"
#include "supervisor/caller.h"
#include "supervisor/vm_registry.h"
#include "supervisor/worker_launcher.h"

namespace fcvm::supervisor {

// How a run's image is read with the caller's rights (see Supervisor.runVm).
struct ImageInputs {
  UniqueFd archive;                    // an archive image: the file the client opened
  std::vector<std::string> podmanEnv;  // where the caller's podman storage is
};

struct RunResult {
  ipc::VmRecord record;
  kj::Maybe<rpc::VmLease::Client> lease;
};

class VmController : private kj::TaskSet::ErrorHandler {
 public:
  VmController(kj::AsyncIoContext& io, VmRegistry& registry, Paths paths);
  ~VmController();

  // How a VM whose worker died while no supervisor ran has ended, from its final state file.
  bool settleOrphan(ipc::VmRecord& record) const;
  // After the registry's adoption: reconnects to every live worker and cleans up ended VMs.
  void adoptLive();

  kj::Promise<RunResult> run(const Caller& caller, ipc::VmSpec spec,
                             kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                             bool autoRemove, ImageInputs image);
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

  ipc::VmRecord visible(const Caller& caller, const std::string& name) const;
  LiveVm* live(const std::string& id);
  void track(const std::string& id, LaunchedWorker worker);
  void connect(LiveVm& vm, kj::Maybe<rpc::OutputSink::Client> output);
  kj::Promise<void> stopLive(LiveVm& vm, uint32_t timeoutMs);
  void workerExited(const std::string& id);
  void finishEnded(const std::string& id);
  void cleanUp(const ipc::VmRecord& record);
  void notify(LiveVm& vm);
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  VmRegistry& registry_;
  const Paths paths_;
  std::map<std::string, kj::Own<LiveVm>> live_;
  std::map<std::string, ipc::VmRecord> ended_;  // final records of VMs removed by --rm
  kj::TaskSet tasks_{*this};
};

}  // namespace fcvm::supervisor
