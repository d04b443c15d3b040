#include "supervisor/snapshot_controller.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>

#include "base/error.h"
#include "base/ids.h"
#include "base/subprocess.h"
#include "ipc/file_handle.h"
#include "ipc/rpc_error.h"
#include "ipc/vm_spec.h"

namespace fcvm::supervisor {
namespace {

// Clones stopped because their snapshot's serving ends get this long to power off.
constexpr uint32_t kCloneStopGraceMs = 2000;

}  // namespace

SnapshotController::SnapshotController(kj::AsyncIoContext& io, Paths paths, VmRegistry& registry,
                                       VmController& vms)
    : io_(io),
      paths_(paths),
      registry_(registry),
      vms_(vms),
      store_(paths.dataDir / "snapshots", paths.storageDir() / "snapshots"),
      serves_(io, paths) {
  // A clone that ends no longer holds its snapshot's memory.
  vms_.setEndListener([this](const ipc::VmRecord& record) {
    if (!record.snapshotId.view().empty()) cloneGone(record.snapshotId.str(), record.id.str());
  });
}

SnapshotController::~SnapshotController() = default;

void SnapshotController::taskFailed(kj::Exception&& e) {
  spdlog::warn("snapshot: {}", e.getDescription().cStr());
}

void SnapshotController::adopt() {
  for (auto& meta : store_.load()) ready_[meta.id] = std::move(meta);
  serves_.adopt([this](const std::string& snapshotId) {
    std::vector<std::string> ids;
    for (const auto& r : vms_.clonesOf(snapshotId)) ids.push_back(r.id.str());
    return ids;
  });
  // Start-up snapshots whose runs all ended while no supervisor was there.
  for (const auto& [id, meta] : ready_) stopIdleServe(id, "");
  spdlog::info("{} snapshots, {} served", ready_.size(), serves_.list().size());
}

void SnapshotController::cloneGone(const std::string& snapshotId, const std::string& vmId) {
  serves_.detachClone(snapshotId, vmId);
  stopIdleServe(snapshotId, vmId);
}

void SnapshotController::stopIdleServe(const std::string& snapshotId, const std::string& goneVmId) {
  // A start-up snapshot is served only while runs use it: its image is memory the host wants.
  auto it = ready_.find(snapshotId);
  if (it == ready_.end() || it->second.startupKey.empty()) return;
  if (!serves_.find(snapshotId)) return;
  for (const auto& clone : vms_.clonesOf(snapshotId)) {
    if (clone.id.view() != goneVmId) return;
  }
  tasks_.add(serves_.stop(snapshotId));
}

const std::string& SnapshotController::qemuVersion() {
  if (qemuVersion_.empty()) {
    auto r = runCommand({"qemu-system-x86_64", "--version"});
    qemuVersion_ = r.output.substr(0, r.output.find('\n'));
  }
  return qemuVersion_;
}

SnapshotView SnapshotController::view(const SnapshotMeta& meta, const std::string& state) {
  SnapshotView v;
  v.meta = meta;
  v.state = state;
  v.serve = serves_.find(meta.id);
  v.clones = static_cast<uint32_t>(vms_.clonesOf(meta.id).size());
  return v;
}

const SnapshotMeta& SnapshotController::visible(const Caller& caller,
                                                const std::string& tag) const {
  // root asking for a tag that several users have: its own first.
  const SnapshotMeta* found = nullptr;
  for (const auto& [id, meta] : ready_) {
    if (meta.tag != tag || !caller.mayAccess(meta.ownerUid)) continue;
    if (found == nullptr || meta.ownerUid == caller.uid) found = &meta;
  }
  if (found == nullptr) throw Error(fmt::format("no snapshot tagged '{}'", tag));
  return *found;
}

ServedSnapshot SnapshotController::served(const SnapshotMeta& meta) const {
  return {meta.id, meta.ownerUid, store_.bulkOf(meta.id)};
}

std::string SnapshotController::tagOf(const std::string& snapshotId) const {
  auto it = ready_.find(snapshotId);
  return it == ready_.end() ? snapshotId : it->second.tag;
}

kj::Promise<SnapshotView> SnapshotController::create(const Caller& caller,
                                                     const std::string& vmName, int32_t workerPid,
                                                     const std::string& tag) {
  std::optional<ipc::VmRecord> record;
  if (workerPid != 0) {
    for (const auto& r : registry_.visibleTo(caller)) {
      if (r.worker.pid == workerPid && isActive(r.state)) record = r;
    }
    if (!record) throw Error(fmt::format("no VM of yours has its worker at pid {}", workerPid));
  } else {
    record = registry_.find(caller, vmName);
    if (!record) throw Error(fmt::format("no VM named '{}'", vmName));
  }
  auto name = record->name.str();
  if (record->state != ipc::VmState::kRunning && record->state != ipc::VmState::kHealthy) {
    throw Error(fmt::format("VM '{}' is {}; only a running VM can be snapshotted", name,
                            ipc::toString(record->state)));
  }
  if (!record->snapshotId.view().empty()) {
    // A clone's guest memory is its snapshot's image mapped copy-on-write: what it changed lives
    // only in QEMU's private pages, which no file holds to copy.
    auto origin = tagOf(record->snapshotId.str());
    if (origin.starts_with(kStartupTagPrefix)) {
      throw Error(fmt::format(
          "VM '{}' started from the start-up snapshot '{}', and such a VM cannot be snapshotted: "
          "run it with --no-snapshot-cache to snapshot it",
          name, origin));
    }
    throw Error(fmt::format("VM '{}' is a clone of snapshot '{}'; clones cannot be snapshotted",
                            name, origin));
  }
  rpc::Worker::Client worker = nullptr;
  KJ_IF_MAYBE (w, vms_.workerOf(record->id.str())) {
    worker = *w;
  } else {
    throw Error(fmt::format("VM '{}' has no worker connection", name));
  }
  if (tag.starts_with(kStartupTagPrefix)) {
    throw Error(
        fmt::format("invalid snapshot tag '{}': tags starting with '{}' are fcvm's own "
                    "start-up snapshots",
                    tag, kStartupTagPrefix));
  }
  if (!isValidName(tag)) {
    throw Error(fmt::format(
        "invalid snapshot tag '{}': use 1-63 letters, digits, '_', '.' or '-', starting with a "
        "letter or digit",
        tag));
  }
  QuotaUsage usage;  // a snapshot is its VM owner's, whoever takes it
  for (const auto* set : {&ready_, &creating_}) {
    for (const auto& [id, meta] : *set) {
      // Start-up snapshots are the host's cache, bounded on their own (startup_cache.h).
      if (meta.ownerUid != record->ownerUid || !meta.startupKey.empty()) continue;
      if (meta.tag == tag) throw Error(fmt::format("a snapshot tagged '{}' already exists", tag));
      usage.snapshots += 1;
    }
  }
  vms_.quotas().checkSnapshot(record->ownerUid, usage);
  SnapshotMeta meta;
  meta.id = randomHexId();
  meta.tag = tag;
  meta.ownerUid = record->ownerUid;
  meta.sourceVmId = record->id.str();
  meta.sourceVmName = name;
  meta.image = record->image.str();
  meta.qemuVersion = qemuVersion();
  meta.volumes = vms_.specOf(meta.sourceVmId).volumes;
  auto staging = store_.begin(meta.id);
  auto request = worker.snapshotRequest();
  request.setState(ipc::fileHandleOf(staging->state));
  request.setMemory(ipc::fileHandleOf(staging->memory));
  request.setDisk(ipc::fileHandleOf(staging->disk));
  creating_[meta.id] = meta;
  spdlog::info("uid {} snapshots VM {} ({}) as '{}' ({})", caller.uid, name, meta.sourceVmId, tag,
               meta.id);
  auto specFile = paths_.vmDir(meta.sourceVmId) / "spec.bin";
  return request.send().then(
      [this, meta, specFile, staging = kj::mv(staging)](auto reply) mutable {
        meta.createdAtNs = realtimeNs();
        meta.pauseNs = reply.getPauseNs();
        meta.memoryBytes = reply.getMemoryBytes();
        std::string restore(reply.getRestore().cStr(), reply.getRestore().size());
        staging->commit(meta, restore, specFile);
        creating_.erase(meta.id);
        ready_[meta.id] = meta;
        spdlog::info("snapshot '{}' ({}) ready: paused {:.1f} ms, {} MiB of memory", meta.tag,
                     meta.id, meta.pauseNs / 1e6, meta.memoryBytes >> 20);
        return view(meta, "ready");
      },
      [this, id = meta.id, name](kj::Exception&& e) -> SnapshotView {
        creating_.erase(id);
        ipc::throwRpcError(
            kj::str("snapshot of VM '", name.c_str(), "' failed: ", ipc::messageOf(e)));
      });
}

std::vector<SnapshotView> SnapshotController::list(const Caller& caller) {
  std::vector<SnapshotView> out;
  for (const auto& [id, meta] : creating_) {
    if (caller.mayAccess(meta.ownerUid)) out.push_back(view(meta, "creating"));
  }
  for (const auto& [id, meta] : ready_) {
    if (caller.mayAccess(meta.ownerUid)) out.push_back(view(meta, "ready"));
  }
  return out;
}

std::vector<ServeView> SnapshotController::serves(const Caller& caller) {
  std::vector<ServeView> out;
  for (auto& s : serves_.list()) {
    if (caller.mayAccess(s.ownerUid)) out.push_back(std::move(s));
  }
  return out;
}

kj::Promise<void> SnapshotController::stopAll(const std::string& snapshotId) {
  auto clones = vms_.clonesOf(snapshotId);
  auto stops = kj::heapArrayBuilder<kj::Promise<void>>(clones.size());
  for (const auto& clone : clones) {
    spdlog::info("stopping clone {} ({}) of snapshot {}", clone.name.view(), clone.id.view(),
                 snapshotId);
    stops.add(vms_.stopById(clone.id.str(), kCloneStopGraceMs));
  }
  return kj::joinPromises(stops.finish()).then([this, snapshotId] {
    return serves_.stop(snapshotId);
  });
}

kj::Promise<void> SnapshotController::remove(const Caller& caller, const std::string& tag,
                                             bool force) {
  const auto& meta = visible(caller, tag);
  auto id = meta.id;
  auto clones = vms_.clonesOf(id);
  if (!clones.empty() && !force) {
    std::string names;
    for (const auto& c : clones) names += (names.empty() ? "" : ", ") + c.name.str();
    throw Error(
        fmt::format("snapshot '{}' is used by {} clone{} ({}); stop them first or use "
                    "snapshot rm -f",
                    tag, clones.size(), clones.size() == 1 ? "" : "s", names));
  }
  return stopAll(id).then([this, id, tag, uid = caller.uid] {
    auto it = ready_.find(id);
    if (it == ready_.end()) return;  // removed meanwhile
    store_.remove(id);
    ready_.erase(it);
    serves_.forget(id);
    spdlog::info("uid {} removed snapshot '{}' ({})", uid, tag, id);
  });
}

const SnapshotMeta& SnapshotController::userSnapshot(const SnapshotMeta& meta) const {
  if (!meta.startupKey.empty()) {
    throw Error(fmt::format(
        "snapshot '{}' is a start-up snapshot, which `podman run` serves and clones by itself; "
        "it can be listed and removed only",
        meta.tag));
  }
  return meta;
}

kj::Promise<ServeView> SnapshotController::serve(const Caller& caller, const std::string& tag) {
  return serves_.ensure(served(userSnapshot(visible(caller, tag))));
}

kj::Promise<void> SnapshotController::stopServe(const Caller& caller, const std::string& tag) {
  const auto& meta = userSnapshot(visible(caller, tag));
  auto serve = serves_.find(meta.id);
  if (!serve || serve->state == "failed") {
    serves_.forget(meta.id);
    throw Error(fmt::format("snapshot '{}' is not being served", tag));
  }
  spdlog::info("uid {} stops serving snapshot '{}'", caller.uid, tag);
  return stopAll(meta.id);
}

void SnapshotController::leaseReleased(const std::string& snapshotId) {
  if (!serves_.find(snapshotId)) return;
  spdlog::info("snapshot {}: its foreground serve went away; stopping it", snapshotId);
  tasks_.add(stopAll(snapshotId));
}

kj::Promise<void> SnapshotController::whenServeGone(const std::string& snapshotId) {
  return serves_.whenGone(snapshotId);
}

const SnapshotMeta& SnapshotController::resolve(const Caller& caller, const std::string& tag,
                                                int32_t servePid) {
  if (servePid == 0) return visible(caller, tag);
  auto serve = serves_.findByPid(servePid);
  auto it = serve ? ready_.find(serve->snapshotId) : ready_.end();
  if (it == ready_.end() || !caller.mayAccess(it->second.ownerUid)) {
    throw Error(fmt::format("no snapshot of yours is served by pid {}", servePid));
  }
  return it->second;
}

SnapshotView SnapshotController::inspect(const Caller& caller, const std::string& tag,
                                         int32_t servePid) {
  return view(resolve(caller, tag, servePid), "ready");
}

kj::Promise<RunResult> SnapshotController::runClone(const Caller& caller, const CloneRequest& r,
                                                    kj::Maybe<rpc::OutputSink::Client> output,
                                                    std::vector<UniqueFd> volumeDirs) {
  const SnapshotMeta* meta = &userSnapshot(resolve(caller, r.tag, r.servePid));
  if (!r.snapshotId.empty() && r.snapshotId != meta->id) {
    // Removed and taken again since the client looked: its volumes may not be the ones the client
    // opened.
    throw Error(
        fmt::format("snapshot '{}' changed while the clone was asked for; try again", meta->tag));
  }
  if (volumeDirs.size() != meta->volumes.size()) {
    throw Error(
        fmt::format("snapshot '{}' has {} --map volumes but {} directories came with the "
                    "request",
                    meta->tag, meta->volumes.size(), volumeDirs.size()));
  }
  if (meta->qemuVersion != qemuVersion()) {
    throw Error(
        fmt::format("snapshot '{}' was taken with {}, and this host has {}: its device "
                    "state cannot be loaded",
                    meta->tag, meta->qemuVersion, qemuVersion()));
  }
  auto spec = ipc::readVmSpecFile(store_.specOf(meta->id).string());
  spec.name = r.name;
  if (!r.ports.empty() && spec.network == "none") {
    throw Error(fmt::format("snapshot '{}' has no network: -p needs one", meta->tag));
  }
  spec.ports = r.ports;
  // A clone's start needs its snapshot's serve process, which a restart would not have.
  spec.restart = {};
  auto record = vms_.create(caller, spec, r.autoRemove, meta->id);
  auto vmId = record.id.str();
  spdlog::info("uid {} runs clone {} ({}) of snapshot '{}'{}", caller.uid, spec.name, vmId,
               meta->tag, r.detach ? ", detached" : "");
  WorkerInputs inputs{Credentials{caller.uid, caller.gid, {}}, -1, {}, -1, -1, {}, {}, false};
  for (const auto& d : volumeDirs) inputs.volumeDirs.push_back(d.get());
  return launchClone(*meta, vmId, spec, inputs, kj::mv(output), r.detach)
      .attach(std::move(volumeDirs));
}

kj::Promise<RunResult> SnapshotController::launchClone(const SnapshotMeta& meta,
                                                       const std::string& vmId,
                                                       const ipc::VmSpec& spec, WorkerInputs inputs,
                                                       kj::Maybe<rpc::OutputSink::Client> output,
                                                       bool detach, NoMemory noMemory) {
  inputs.restoreDir = store_.bulkOf(meta.id);
  return serves_.attachClone(served(meta), vmId)
      .then(
          [this, vmId, spec, inputs, output = kj::mv(output), detach,
           snapshotId = meta.id](UniqueFd memory) mutable {
            inputs.memory = memory.get();
            return vms_.launch(vmId, spec, inputs, kj::mv(output), detach)
                .attach(std::move(memory))
                .catch_([this, snapshotId, vmId](kj::Exception&& e) -> kj::Promise<RunResult> {
                  cloneGone(snapshotId, vmId);
                  return kj::mv(e);
                });
          },
          [this, vmId, snapshotId = meta.id,
           noMemory = std::move(noMemory)](kj::Exception&& e) -> kj::Promise<RunResult> {
            cloneGone(snapshotId, vmId);
            if (noMemory) return noMemory(kj::mv(e));
            vms_.discard(vmId);
            return kj::mv(e);
          });
}

const SnapshotMeta* SnapshotController::findStartup(uint32_t ownerUid,
                                                    const std::string& startupKey) const {
  for (const auto& [id, meta] : ready_) {
    if (meta.ownerUid == ownerUid && meta.startupKey == startupKey) return &meta;
  }
  return nullptr;
}

std::vector<SnapshotMeta> SnapshotController::startupSnapshots() const {
  std::vector<SnapshotMeta> out;
  for (const auto& [id, meta] : ready_) {
    if (!meta.startupKey.empty()) out.push_back(meta);
  }
  return out;
}

std::unique_ptr<SnapshotStaging> SnapshotController::stage(const std::string& snapshotId) const {
  return store_.begin(snapshotId);
}

void SnapshotController::commit(SnapshotMeta meta, SnapshotStaging& staging,
                                const std::string& restore, const std::filesystem::path& specFile) {
  staging.commit(meta, restore, specFile);
  meta.lastUsedNs = meta.createdAtNs;
  ready_[meta.id] = std::move(meta);
}

void SnapshotController::markUsed(const std::string& snapshotId) {
  auto it = ready_.find(snapshotId);
  if (it == ready_.end()) return;
  it->second.lastUsedNs = realtimeNs();
  store_.markUsed(snapshotId);
}

kj::Promise<bool> SnapshotController::removeUnused(const std::string& snapshotId) {
  if (!vms_.clonesOf(snapshotId).empty()) return false;
  return serves_.stop(snapshotId).then([this, snapshotId] {
    auto it = ready_.find(snapshotId);
    if (it == ready_.end() || !vms_.clonesOf(snapshotId).empty()) return false;
    store_.remove(snapshotId);
    spdlog::info("removed snapshot '{}' ({})", it->second.tag, snapshotId);
    ready_.erase(it);
    serves_.forget(snapshotId);
    return true;
  });
}

}  // namespace fcvm::supervisor
