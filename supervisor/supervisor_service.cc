#include "supervisor/supervisor_service.h"

#include <kj/debug.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <map>

#include "base/error.h"
#include "ipc/file_handle.h"
#include "ipc/rpc_error.h"
#include "supervisor/storage_inventory.h"
#include "supervisor/storage_pruner.h"

namespace fcvm::supervisor {
namespace {

// Runs `body`, turning an fcvm::Error into a clean remote exception for the client. `body` may
// return a promise (an asynchronous answer) or nothing.
template <typename F>
kj::Promise<void> answer(F&& body) {
  try {
    if constexpr (std::is_void_v<decltype(body())>) {
      body();
      return kj::READY_NOW;
    } else {
      return body();
    }
  } catch (const Error& e) {
    return ipc::rpcError(e.what());
  }
}

// Root, or the user whose own supervisor this is: the shared kinds of storage (artifacts, image
// disks, the process logs) are theirs to see whole and to prune.
bool ownsSharedStorage(const Caller& caller) {
  return caller.isRoot() || caller.uid == ::geteuid();
}

// What of the storage `caller` is shown: the shared artifacts and image disks to everyone (they
// are what each user's VMs boot), a VM's or snapshot's to its owner, the rest to its owner.
bool isShownTo(const StorageItem& item, const Caller& caller) {
  if (item.kind == StorageKind::kArtifacts || item.kind == StorageKind::kImages) return true;
  if (!item.ownerUid) return ownsSharedStorage(caller);
  return caller.mayAccess(*item.ownerUid);
}

bool hasEnded(const ipc::VmRecord& r) {
  return r.state == ipc::VmState::kStopped || r.state == ipc::VmState::kFailed;
}

void fill(rpc::ServeInfo::Builder out, const ServeView& v, const std::string& tag) {
  out.setId(v.id);
  out.setSnapshotTag(tag);
  out.setOwnerUid(v.ownerUid);
  out.setPid(v.process.pid);
  out.setState(v.state);
  out.setReason(v.reason);
  out.setStartedAtNs(v.startedAtNs);
}

// Directories the client opened with its own rights (--map volumes), in order. Never opened by
// path here: that would read them with the supervisor's powers. `what` names each, for errors.
kj::Promise<std::vector<UniqueFd>> receiveDirectories(
    capnp::List<rpc::FileHandle, capnp::Kind::INTERFACE>::Reader handles,
    std::vector<std::string> what) {
  auto fds = kj::heap<std::vector<UniqueFd>>();
  kj::Promise<void> received = kj::READY_NOW;
  for (unsigned i = 0; i < handles.size(); ++i) {
    received = received.then([&fds = *fds, handle = handles[i], what = what[i]]() mutable {
      return ipc::receiveDirectory(kj::mv(handle), what).then([&fds](UniqueFd fd) {
        fds.push_back(std::move(fd));
      });
    });
  }
  return received.then([fds = kj::mv(fds)]() mutable { return std::move(*fds); });
}

void fill(rpc::SnapshotInfo::Builder out, const SnapshotView& v) {
  out.setId(v.meta.id);
  out.setTag(v.meta.tag);
  out.setOwnerUid(v.meta.ownerUid);
  out.setState(v.state);
  out.setSourceVm(v.meta.sourceVmName);
  out.setImage(v.meta.image);
  out.setCreatedAtNs(v.meta.createdAtNs);
  out.setPauseNs(v.meta.pauseNs);
  out.setMemoryBytes(v.meta.memoryBytes);
  out.setClones(v.clones);
  if (v.serve) {
    out.setHasServe(true);
    fill(out.initServe(), *v.serve, v.meta.tag);
  }
  ipc::encodeVolumes(v.meta.volumes, out.initVolumes(static_cast<unsigned>(v.meta.volumes.size())));
}

// Held by a foreground `fcvm snapshot serve`: its release, however the client goes, stops the
// snapshot's clones and its serve process.
class ServeLeaseImpl final : public rpc::ServeLease::Server {
 public:
  ServeLeaseImpl(SnapshotController& snapshots, std::string snapshotId)
      : snapshots_(snapshots), snapshotId_(std::move(snapshotId)) {}
  ~ServeLeaseImpl() { snapshots_.leaseReleased(snapshotId_); }

  kj::Promise<void> wait(WaitContext call) override {
    call.allowCancellation();
    return snapshots_.whenServeGone(snapshotId_);
  }

 private:
  SnapshotController& snapshots_;
  std::string snapshotId_;
};

void fill(rpc::VmInfo::Builder out, const ipc::VmRecord& r) {
  out.setId(std::string(r.id.view()));
  out.setName(std::string(r.name.view()));
  out.setOwnerUid(r.ownerUid);
  // ipc::VmState counts kFree as 0; the wire enum starts at creating.
  out.setState(static_cast<rpc::VmState>(static_cast<uint8_t>(r.state) - 1));
  out.setHealth(static_cast<rpc::Health>(r.health));
  out.setHasExitCode(r.hasExitCode != 0);
  out.setExitCode(r.exitCode);
  out.setReason(std::string(r.reason.view()));
  out.setImage(std::string(r.image.view()));
  out.setNetwork(std::string(r.network.view()));
  out.setWorkerPid(r.worker.pid);
  out.setCreatedAtNs(r.createdAtNs);
  out.setUpdatedAtNs(r.updatedAtNs);
  out.setRestartCount(r.restartCount);
}

void fill(rpc::VmInfo::Builder out, const ipc::VmRecord& r, SupervisorContext& context) {
  fill(out, r);
  if (!r.snapshotId.view().empty()) out.setSnapshot(context.snapshots.tagOf(r.snapshotId.str()));
  const auto& spec = context.vms.specOf(r.id.str());
  ipc::encodePorts(spec.ports, out.initPorts(static_cast<unsigned>(spec.ports.size())));
  ipc::encodeVolumes(spec.volumes, out.initVolumes(static_cast<unsigned>(spec.volumes.size())));
  out.setRestartPolicy(ipc::toString(spec.restart));
}

std::string textParam(capnp::Text::Reader text) { return std::string(text.cStr(), text.size()); }

}  // namespace

SupervisorService::SupervisorService(SupervisorContext& context, Caller caller)
    : context_(context), caller_(caller) {}

kj::Promise<void> SupervisorService::status(StatusContext call) {
  auto s = call.getResults().initStatus();
  s.setVersion(FCVM_VERSION);
  s.setPid(::getpid());
  s.setUid(::geteuid());
  s.setStartedAtNs(context_.startedAtNs);
  s.setDataDir(context_.dataDir.string());
  s.setRuntimeDir(context_.runtimeDir.string());
  s.setSocket(context_.socket.string());
  s.setVmCount(static_cast<uint32_t>(context_.registry.visibleTo(caller_).size()));
  s.setStateEpoch(context_.table.writerEpoch());
  s.setAdoptedVms(context_.adoption.live);
  return kj::READY_NOW;
}

kj::Promise<void> SupervisorService::listVms(ListVmsContext call) {
  auto records = context_.registry.visibleTo(caller_);
  auto list = call.getResults().initVms(static_cast<unsigned>(records.size()));
  for (size_t i = 0; i < records.size(); ++i) {
    fill(list[static_cast<unsigned>(i)], records[i], context_);
  }
  return kj::READY_NOW;
}

kj::Promise<void> SupervisorService::getVm(GetVmContext call) {
  return answer([&] {
    auto name = textParam(call.getParams().getName());
    auto record = context_.registry.find(caller_, name);
    if (!record) throw Error(fmt::format("no VM named '{}'", name));
    fill(call.getResults().initVm(), *record, context_);
  });
}

kj::Promise<void> SupervisorService::removeVm(RemoveVmContext call) {
  return answer([&] {
    auto name = textParam(call.getParams().getName());
    return context_.vms.remove(caller_, name, call.getParams().getForce());
  });
}

kj::Promise<void> SupervisorService::runVm(RunVmContext call) {
  return answer([&] {
    auto params = call.getParams();
    auto spec = ipc::decodeVmSpec(params.getSpec());
    kj::Maybe<rpc::OutputSink::Client> output;
    if (params.hasOutput()) output = params.getOutput();
    if (!params.getDetach() && output == nullptr) throw Error("a foreground run needs an output");
    auto image = kj::heap<ImageInputs>();
    image->podmanEnv = ipc::decodePodmanEnv(params.getPodmanEnv());
    kj::Promise<void> received = kj::READY_NOW;
    if (ipc::isArchiveImage(spec.image)) {
      // Never opened by path here: that would read it with the supervisor's powers.
      if (!params.hasImageArchive()) {
        throw Error(fmt::format("{}: the client must open the archive and pass it", spec.image));
      }
      received = ipc::receiveFile(params.getImageArchive(), spec.image)
                     .then([&inputs = *image](UniqueFd fd) { inputs.archive = std::move(fd); });
    }
    auto dirs = params.getVolumeDirs();
    if (dirs.size() != spec.volumes.size()) {
      throw Error(fmt::format("{} --map volumes but {} directories came with the request",
                              spec.volumes.size(), dirs.size()));
    }
    std::vector<std::string> what;
    for (const auto& v : spec.volumes) what.push_back("--map " + v.hostPath);
    received = received.then([&inputs = *image, dirs, what = std::move(what)]() mutable {
      return receiveDirectories(dirs, what).then([&inputs](std::vector<UniqueFd> fds) {
        inputs.volumeDirs = std::move(fds);
      });
    });
    return received
        .then([this, call, spec = std::move(spec), output = kj::mv(output),
               image = kj::mv(image)]() mutable {
          auto params = call.getParams();
          try {
            return context_.startup.run(caller_, std::move(spec), kj::mv(output),
                                        params.getDetach(), params.getAutoRemove(),
                                        std::move(*image), !params.getNoSnapshotCache());
          } catch (const Error& e) {  // else kj would pass it on as "std::exception: ..."
            return kj::Promise<RunResult>(ipc::rpcError(e.what()));
          }
        })
        .then([this, call](RunResult result) mutable {
          auto results = call.getResults();
          fill(results.initVm(), result.record, context_);
          KJ_IF_MAYBE (lease, result.lease) {
            results.setLease(kj::mv(*lease));
          }
        });
  });
}

kj::Promise<void> SupervisorService::exec(ExecContext call) {
  return answer([&] {
    auto params = call.getParams();
    return context_.vms
        .exec(caller_, textParam(params.getName()), params.getRequest(), params.getOutput())
        .then([call](rpc::Process::Client process) mutable {
          call.getResults().setProcess(kj::mv(process));
        });
  });
}

kj::Promise<void> SupervisorService::vmMemory(VmMemoryContext call) {
  return answer([&] {
    return context_.vms.memory(caller_, textParam(call.getParams().getName()))
        .then([call](capnp::Response<rpc::Worker::MemoryResults> reply) mutable {
          call.getResults().setMemory(reply.getMemory());
        });
  });
}

kj::Promise<void> SupervisorService::stopVm(StopVmContext call) {
  return answer([&] {
    auto params = call.getParams();
    return context_.vms.stop(caller_, textParam(params.getName()), params.getTimeoutMs())
        .then([call](ipc::VmRecord record) mutable { fill(call.getResults().initVm(), record); });
  });
}

kj::Promise<void> SupervisorService::logs(LogsContext call) {
  call.allowCancellation();  // a `logs -f` reader may go away at any time
  return answer([&] {
    auto params = call.getParams();
    return context_.vms.logs(caller_, textParam(params.getName()), params.getFollow(),
                             params.getOutput(), params.getSource());
  });
}

kj::Promise<void> SupervisorService::waitVm(WaitVmContext call) {
  call.allowCancellation();
  return answer([&] {
    auto params = call.getParams();
    return context_.vms.waitFor(caller_, textParam(params.getName()), params.getCondition())
        .then([call](ipc::VmRecord record) mutable { fill(call.getResults().initVm(), record); });
  });
}

kj::Promise<void> SupervisorService::shutdown(ShutdownContext) {
  return answer([&] {
    if (!caller_.isRoot() && caller_.uid != ::geteuid()) {
      throw Error(
          fmt::format("uid {} may not stop a supervisor run by uid {}", caller_.uid, ::geteuid()));
    }
    spdlog::info("shutdown requested by uid {} (pid {})", caller_.uid, caller_.pid);
    context_.shutdown->fulfill();
  });
}

kj::Promise<void> SupervisorService::createSnapshot(CreateSnapshotContext call) {
  return answer([&] {
    auto params = call.getParams();
    return context_.snapshots
        .create(caller_, textParam(params.getName()), params.getWorkerPid(),
                textParam(params.getTag()))
        .then([call](SnapshotView view) mutable { fill(call.getResults().initSnapshot(), view); });
  });
}

kj::Promise<void> SupervisorService::listSnapshots(ListSnapshotsContext call) {
  auto views = context_.snapshots.list(caller_);
  auto list = call.getResults().initSnapshots(static_cast<unsigned>(views.size()));
  for (unsigned i = 0; i < list.size(); ++i) fill(list[i], views[i]);
  return kj::READY_NOW;
}

kj::Promise<void> SupervisorService::removeSnapshot(RemoveSnapshotContext call) {
  return answer([&] {
    auto params = call.getParams();
    return context_.snapshots.remove(caller_, textParam(params.getTag()), params.getForce());
  });
}

kj::Promise<void> SupervisorService::serveSnapshot(ServeSnapshotContext call) {
  return answer([&] {
    auto params = call.getParams();
    auto tag = textParam(params.getTag());
    bool detach = params.getDetach();
    return context_.snapshots.serve(caller_, tag)
        .then([this, call, tag, detach](ServeView serve) mutable {
          auto results = call.getResults();
          fill(results.initServe(), serve, tag);
          if (!detach) {
            results.setLease(kj::heap<ServeLeaseImpl>(context_.snapshots, serve.snapshotId));
          }
        });
  });
}

kj::Promise<void> SupervisorService::stopServe(StopServeContext call) {
  return answer(
      [&] { return context_.snapshots.stopServe(caller_, textParam(call.getParams().getTag())); });
}

kj::Promise<void> SupervisorService::runClone(RunCloneContext call) {
  return answer([&] {
    auto params = call.getParams();
    kj::Maybe<rpc::OutputSink::Client> output;
    if (params.hasOutput()) output = params.getOutput();
    if (!params.getDetach() && output == nullptr) throw Error("a foreground run needs an output");
    CloneRequest request{textParam(params.getTag()),
                         params.getServePid(),
                         textParam(params.getSnapshotId()),
                         textParam(params.getName()),
                         ipc::decodePorts(params.getPorts()),
                         params.getDetach(),
                         params.getAutoRemove()};
    auto handles = params.getVolumeDirs();
    std::vector<std::string> what;
    for (unsigned i = 0; i < handles.size(); ++i) what.push_back(fmt::format("volume v{}", i));
    return receiveDirectories(handles, what)
        .then([this, request = std::move(request),
               output = kj::mv(output)](std::vector<UniqueFd> volumeDirs) mutable {
          return context_.snapshots.runClone(caller_, request, kj::mv(output),
                                             std::move(volumeDirs));
        })
        .then([this, call](RunResult result) mutable {
          auto results = call.getResults();
          fill(results.initVm(), result.record, context_);
          KJ_IF_MAYBE (lease, result.lease) {
            results.setLease(kj::mv(*lease));
          }
        });
  });
}

kj::Promise<void> SupervisorService::inspectSnapshot(InspectSnapshotContext call) {
  return answer([&] {
    auto params = call.getParams();
    fill(call.getResults().initSnapshot(),
         context_.snapshots.inspect(caller_, textParam(params.getTag()), params.getServePid()));
    return kj::Promise<void>(kj::READY_NOW);
  });
}

kj::Promise<void> SupervisorService::listServes(ListServesContext call) {
  auto serves = context_.snapshots.serves(caller_);
  auto list = call.getResults().initServes(static_cast<unsigned>(serves.size()));
  for (unsigned i = 0; i < list.size(); ++i) {
    fill(list[i], serves[i], context_.snapshots.tagOf(serves[i].snapshotId));
  }
  return kj::READY_NOW;
}

kj::Promise<void> SupervisorService::diskUsage(DiskUsageContext call) {
  return answer([&] {
    auto inventory = takeInventory(paths(), context_.registry.visibleTo(Caller{}));
    struct Row {
      uint32_t total = 0, active = 0;
      uint64_t bytes = 0, reclaimable = 0;
    };
    std::map<StorageKind, Row> rows;
    std::vector<const StorageItem*> shown;
    for (const auto& item : inventory.items) {
      if (!isShownTo(item, caller_)) continue;
      shown.push_back(&item);
      auto& row = rows[item.kind];
      ++row.total;
      row.bytes += item.bytes;
      if (item.inUse) {
        ++row.active;
      } else {
        row.reclaimable += item.bytes;
      }
    }
    auto list = call.getResults().initUsage(static_cast<unsigned>(std::size(kStorageKinds)));
    for (unsigned i = 0; i < list.size(); ++i) {
      const auto& row = rows[kStorageKinds[i]];
      list[i].setKind(nameOf(kStorageKinds[i]));
      list[i].setTotal(row.total);
      list[i].setActive(row.active);
      list[i].setBytes(row.bytes);
      list[i].setReclaimable(row.reclaimable);
    }
    auto items = call.getResults().initItems(static_cast<unsigned>(shown.size()));
    for (unsigned i = 0; i < items.size(); ++i) {
      items[i].setKind(nameOf(shown[i]->kind));
      items[i].setPath(shown[i]->path.string());
      items[i].setOwner(shown[i]->ownerId.value_or(""));
      items[i].setBytes(shown[i]->bytes);
      items[i].setInUse(shown[i]->inUse);
    }
  });
}

kj::Promise<void> SupervisorService::prune(PruneContext call) {
  return answer([&] {
    bool all = call.getParams().getAll();
    struct Pruned {
      std::vector<std::string> vms;
      uint32_t startupSnapshots = 0;
      uint64_t bytes = 0;
    };
    auto pruned = kj::heap<Pruned>();
    auto before = takeInventory(paths(), context_.registry.visibleTo(Caller{}));
    // The caller's ended VMs go as `rm` removes them (records, disk, logs), one after another.
    kj::Promise<void> removed = kj::READY_NOW;
    for (const auto& record : context_.registry.visibleTo(caller_)) {
      if (!hasEnded(record)) continue;
      std::string id(record.id.view()), name(record.name.view());
      for (const auto& item : before.items) {
        bool ofVm = item.kind == StorageKind::kVmDisks || item.kind == StorageKind::kLogs;
        if (ofVm && item.ownerId == id) pruned->bytes += item.bytes;
      }
      removed = removed.then([this, name, &vms = pruned->vms] {
        return context_.vms.remove(caller_, name, false).then([name, &vms] {
          vms.push_back(name);
        });
      });
    }
    // Start-up snapshots are a cache: those of the caller's (root: all) that no VM runs from go;
    // the next first run of their configuration makes its entry again.
    for (const auto& meta : context_.snapshots.startupSnapshots()) {
      if (!caller_.mayAccess(meta.ownerUid)) continue;
      uint64_t bytes = 0;
      for (const auto& item : before.items) {
        if (item.kind == StorageKind::kSnapshots && item.ownerId == meta.id) bytes += item.bytes;
      }
      removed = removed.then([this, id = meta.id, bytes, &pruned = *pruned] {
        return context_.snapshots.removeUnused(id).then([bytes, &pruned](bool gone) {
          if (!gone) return;
          ++pruned.startupSnapshots;
          pruned.bytes += bytes;
        });
      });
    }
    return removed.then([this, call, all, pruned = kj::mv(pruned)]() mutable {
      auto report = call.getResults().initReport();
      SharedPruneResult shared;
      if (ownsSharedStorage(caller_)) {
        shared = pruneShared(paths(), takeInventory(paths(), context_.registry.visibleTo(Caller{})),
                             all);
      } else {
        shared.skipped = "artifacts and image disks are shared: root prunes them";
      }
      auto vms = report.initVms(static_cast<unsigned>(pruned->vms.size()));
      for (unsigned i = 0; i < vms.size(); ++i) vms.set(i, pruned->vms[i]);
      report.setArtifacts(shared.artifacts);
      report.setImages(shared.images);
      report.setReclaimedBytes(pruned->bytes + shared.bytes);
      report.setSkipped(shared.skipped);
      report.setStartupSnapshots(pruned->startupSnapshots);
      spdlog::info(
          "uid {} pruned {} VMs, {} start-up snapshots, {} artifacts, {} image disks "
          "({} MiB){}",
          caller_.uid, vms.size(), pruned->startupSnapshots, shared.artifacts, shared.images,
          (pruned->bytes + shared.bytes) >> 20,
          shared.skipped.empty() ? "" : "; " + shared.skipped);
    });
  });
}

}  // namespace fcvm::supervisor
