// Snapshots and clones on the supervisor's side: `snapshot create` (the VM's worker pauses it and
// fills the files of a staged snapshot; the store commits them whole), `snapshot ls/rm`, serving
// (ServeController) and `snapshot run` (a VM started from the snapshot, its memory image from the
// snapshot's serve process). A snapshot belongs to the owner of the VM it was taken from; a user
// sees and uses only their own, root all.
#pragma once

#include <kj/async-io.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/paths.h"
#include "ipc/supervisor.capnp.h"
#include "supervisor/caller.h"
#include "supervisor/serve_controller.h"
#include "supervisor/snapshot_store.h"
#include "supervisor/vm_controller.h"
#include "supervisor/vm_registry.h"

namespace fcvm::supervisor {

// The tags of start-up snapshots (startup_cache.h); `snapshot create` refuses them.
inline constexpr char kStartupTagPrefix[] = "startup-";

struct SnapshotView {
  SnapshotMeta meta;
  std::string state;  // creating, ready
  std::optional<ServeView> serve;
  uint32_t clones = 0;
};

// What a client asks of runClone besides its output and the volumes' directories.
struct CloneRequest {
  std::string tag;
  int32_t servePid = 0;    // instead of `tag`: the snapshot this serve process serves
  std::string snapshotId;  // the snapshot the client looked at (inspect), if it did; else empty
  std::string name;        // the clone's; empty: generated
  std::vector<ipc::PortMapping> ports;
  bool detach = false;
  bool autoRemove = false;
};

class SnapshotController : private kj::TaskSet::ErrorHandler {
 public:
  SnapshotController(kj::AsyncIoContext& io, Paths paths, VmRegistry& registry, VmController& vms);
  ~SnapshotController();

  // Loads the snapshot store and re-adopts serve processes; after VmController::adoptLive().
  void adopt();

  kj::Promise<SnapshotView> create(const Caller& caller, const std::string& vmName,
                                   int32_t workerPid, const std::string& tag);
  std::vector<SnapshotView> list(const Caller& caller);
  kj::Promise<void> remove(const Caller& caller, const std::string& tag, bool force);
  kj::Promise<ServeView> serve(const Caller& caller, const std::string& tag);
  kj::Promise<void> stopServe(const Caller& caller, const std::string& tag);
  // The snapshot `tag` (or the one the serve process `servePid` serves), as the caller sees it.
  SnapshotView inspect(const Caller& caller, const std::string& tag, int32_t servePid);
  // Starts a clone; `volumeDirs` are the snapshot's volumes' directories as the client opened
  // them, in order.
  kj::Promise<RunResult> runClone(const Caller& caller, const CloneRequest& request,
                                  kj::Maybe<rpc::OutputSink::Client> output,
                                  std::vector<UniqueFd> volumeDirs);
  std::vector<ServeView> serves(const Caller& caller);

  // For a foreground serve's lease: its release stops the serve (and the clones); wait() resolves
  // once the serve has ended.
  void leaseReleased(const std::string& snapshotId);
  kj::Promise<void> whenServeGone(const std::string& snapshotId);
  // The tag of a snapshot by id, for showing a clone's origin.
  std::string tagOf(const std::string& snapshotId) const;

  // For the start-up snapshot cache (startup_cache.h).
  const SnapshotMeta* findStartup(uint32_t ownerUid, const std::string& startupKey) const;
  std::vector<SnapshotMeta> startupSnapshots() const;
  std::unique_ptr<SnapshotStaging> stage(const std::string& snapshotId) const;
  // Commits `staging` as the snapshot `meta`; `specFile` is its source VM's spec.
  void commit(SnapshotMeta meta, SnapshotStaging& staging, const std::string& restore,
              const std::filesystem::path& specFile);
  void markUsed(const std::string& snapshotId);
  // Removes the snapshot unless a clone runs from it; resolves with whether it was removed.
  kj::Promise<bool> removeUnused(const std::string& snapshotId);
  // Starts the created VM `vmId` as a clone of `meta`: its memory image from the snapshot's serve.
  // If the serve cannot give it, `noMemory` decides what becomes of the VM (without: discarded,
  // the run fails).
  using NoMemory = std::function<kj::Promise<RunResult>(kj::Exception&&)>;
  kj::Promise<RunResult> launchClone(const SnapshotMeta& meta, const std::string& vmId,
                                     const ipc::VmSpec& spec, WorkerInputs inputs,
                                     kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                                     NoMemory noMemory = nullptr);
  const std::string& qemuVersion();

 private:
  SnapshotView view(const SnapshotMeta& meta, const std::string& state);
  const SnapshotMeta& visible(const Caller& caller, const std::string& tag) const;
  const SnapshotMeta& resolve(const Caller& caller, const std::string& tag, int32_t servePid);
  ServedSnapshot served(const SnapshotMeta& meta) const;
  // Stops the snapshot's clones, then its serve process.
  kj::Promise<void> stopAll(const std::string& snapshotId);
  // The clone `vmId` ended or never started: it no longer holds the image.
  void cloneGone(const std::string& snapshotId, const std::string& vmId);
  // A start-up snapshot's serve stops once no VM but `goneVmId` runs from it.
  void stopIdleServe(const std::string& snapshotId, const std::string& goneVmId);
  // `meta` unless it is a start-up snapshot, which only `podman run` clones and serves.
  const SnapshotMeta& userSnapshot(const SnapshotMeta& meta) const;
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  const Paths paths_;
  VmRegistry& registry_;
  VmController& vms_;
  SnapshotStore store_;
  ServeController serves_;
  std::map<std::string, SnapshotMeta> ready_;     // by id
  std::map<std::string, SnapshotMeta> creating_;  // by id, while their VM is being snapshotted
  std::string qemuVersion_;
  kj::TaskSet tasks_{*this};
};

}  // namespace fcvm::supervisor
