#include "supervisor/startup_cache.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/ids.h"
#include "base/json_field.h"
#include "base/sha256.h"
#include "base/small_file.h"
#include "ipc/file_handle.h"
#include "setup/artifact_store.h"

namespace fcvm::supervisor {

StartupKeys startupKeysOf(const ipc::VmSpec& spec, uint32_t ownerUid,
                          const ipc::PreparedImage& image, const std::string& artifacts,
                          const std::string& qemuVersion) {
  // What the guest is before its container starts, and the machine a clone must rebuild.
  nlohmann::json config = {{"layout", 1},
                           {"fcvm", FCVM_VERSION},
                           {"qemu", qemuVersion},
                           {"artifacts", artifacts},
                           {"owner", ownerUid},
                           {"image", spec.image},
                           {"cpus", spec.cpus},
                           {"memory_mib", spec.memoryMib},
                           {"accel", spec.accel},
                           {"network", spec.network},
                           {"rootfs_mib", spec.rootfsSizeMib},
                           {"volumes", spec.volumes.size()}};
  StartupKeys keys;
  keys.config = Sha256().update(config.dump()).hex();
  config["digest"] = image.digest;
  config["image_disk"] = image.disk.string();
  keys.startup = Sha256().update(config.dump()).hex();
  return keys;
}

// A first run's start-up snapshot while it is taken: its files, and what it will be.
struct StartupCache::Capture {
  StartupCache& cache;
  StartupKeys keys;
  std::string vmId;
  SnapshotMeta meta;
  std::unique_ptr<SnapshotStaging> staging;  // removed unless committed

  Capture(StartupCache& cache, StartupKeys keys, std::string vmId)
      : cache(cache), keys(std::move(keys)), vmId(std::move(vmId)) {
    cache.building_.insert(this->keys.startup);
  }
  ~Capture() { cache.building_.erase(keys.startup); }
  Capture(const Capture&) = delete;
  Capture& operator=(const Capture&) = delete;
};

StartupCache::StartupCache(kj::AsyncIoContext& io, Paths paths, VmController& vms,
                           SnapshotController& snapshots, uint32_t maxEntries)
    : io_(io),
      paths_(std::move(paths)),
      vms_(vms),
      snapshots_(snapshots),
      maxEntries_(maxEntries) {}

uint32_t StartupCache::maxEntriesFrom(const std::filesystem::path& configFile) {
  std::ifstream in(configFile);
  if (configFile.empty() || !in) return kDefaultMaxEntries;  // UserQuotas::load says if unreadable
  try {
    auto config = nlohmann::json::parse(in);
    if (!config.is_object() || !config.contains("startup_snapshots")) return kDefaultMaxEntries;
    const auto& cache = config.at("startup_snapshots");
    if (!cache.is_object()) throw Error("startup_snapshots: not an object");
    for (const auto& [key, value] : cache.items()) {
      if (key != "max_entries") {
        throw Error(fmt::format("startup_snapshots: unknown key '{}' (max_entries)", key));
      }
    }
    return optionalJsonField<uint32_t>(cache, "max_entries").value_or(kDefaultMaxEntries);
  } catch (const std::exception& e) {
    throw Error(fmt::format("{}: {}", configFile.string(), e.what()));
  }
}

void StartupCache::taskFailed(kj::Exception&& e) {
  spdlog::warn("start-up snapshots: {}", e.getDescription().cStr());
}

std::string StartupCache::artifactsKey() const {
  auto artifacts = setup::currentArtifacts(paths_.dataDir);
  if (!artifacts) return "";  // the worker refuses the run with what to do
  // With the accelerator probe's cached answer: a snapshot taken under KVM is not TCG's.
  std::string probe;
  try {
    probe = readSmallFile(paths_.accelProbeCache(), 64 << 10);
  } catch (const Error&) {
    // Not probed yet: the first run probes, and its entry has the answer in its key.
  }
  return fmt::format("{} {} {} {}", artifacts->kernel.string(), artifacts->initramfs.string(),
                     artifacts->rootfs.string(), probe);
}

kj::Promise<RunResult> StartupCache::run(const Caller& caller, ipc::VmSpec spec,
                                         kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                                         bool autoRemove, ImageInputs image, bool useCache) {
  if (!useCache || maxEntries_ == 0 || spec.restart.kind != ipc::RestartPolicy::Kind::kNo) {
    return vms_.run(caller, std::move(spec), kj::mv(output), detach, autoRemove, std::move(image));
  }
  auto id = vms_.begin(caller, spec, detach, autoRemove, image.podmanEnv);
  auto held = kj::heap<ImageInputs>(std::move(image));
  WorkerInputs inputs{
      Credentials{caller.uid, caller.gid, {}}, held->archive.get(), {}, -1, -1, {}, {}, false};
  for (const auto& dir : held->volumeDirs) inputs.volumeDirs.push_back(dir.get());
  return prepareImage(io_, paths_, id, inputs)
      .then(
          [this, caller, id, spec = std::move(spec), output = kj::mv(output), detach,
           inputs]() mutable {
            inputs.imageArchive = -1;  // read already
            inputs.imagePrepared = true;
            return start(caller, id, spec, kj::mv(output), detach, inputs);
          },
          [this, id](kj::Exception&& e) -> kj::Promise<RunResult> {
            vms_.discard(id);
            return kj::mv(e);
          })
      .attach(kj::mv(held));
}

kj::Promise<RunResult> StartupCache::start(const Caller& caller, const std::string& id,
                                           const ipc::VmSpec& spec,
                                           kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                                           const WorkerInputs& inputs) {
  std::shared_ptr<Capture> capture;
  try {
    auto image = ipc::readPreparedImage(paths_.vmDir(id) / "image.json");
    auto keys = startupKeysOf(spec, caller.uid, image, artifactsKey(), snapshots_.qemuVersion());
    if (const auto* meta = snapshots_.findStartup(caller.uid, keys.startup)) {
      spdlog::info("VM {} ({}) starts from start-up snapshot '{}' ({})", spec.name, id, meta->tag,
                   meta->id);
      vms_.markClone(id, meta->id);
      snapshots_.markUsed(meta->id);
      // Without its memory image (its serve failed to start) the run boots instead.
      auto bootOutput = std::make_shared<kj::Maybe<rpc::OutputSink::Client>>();
      KJ_IF_MAYBE (sink, output) {
        *bootOutput = *sink;
      }
      auto boot = [this, id, spec, inputs, bootOutput, detach](kj::Exception&& e) {
        spdlog::warn("VM {} ({}) boots: its start-up snapshot's serve failed: {}", spec.name, id,
                     e.getDescription().cStr());
        vms_.markClone(id, "");
        return vms_.launch(id, spec, inputs, kj::mv(*bootOutput), detach);
      };
      return snapshots_.launchClone(*meta, id, spec, inputs, kj::mv(output), detach, boot);
    }
    if (building_.count(keys.startup) != 0) {
      spdlog::info("VM {} ({}) boots: its start-up snapshot is being taken by another run",
                   spec.name, id);
      return vms_.launch(id, spec, inputs, kj::mv(output), detach);
    }
    capture = std::make_shared<Capture>(*this, keys, id);
    auto& meta = capture->meta;
    meta.id = randomHexId();
    meta.tag = kStartupTagPrefix + keys.startup.substr(0, 12);
    meta.ownerUid = caller.uid;
    meta.sourceVmId = id;
    meta.sourceVmName = spec.name;
    meta.image = spec.image;
    meta.qemuVersion = snapshots_.qemuVersion();
    meta.startupKey = keys.startup;
    meta.configKey = keys.config;
    capture->staging = snapshots_.stage(meta.id);
    spdlog::info("VM {} ({}) boots, and is snapshotted before its container starts as '{}' ({})",
                 spec.name, id, meta.tag, meta.id);
  } catch (...) {
    vms_.discard(id);
    throw;
  }
  return vms_.launch(
      id, spec, inputs, kj::mv(output), detach, [this, capture](rpc::Worker::Client& worker) {
        auto request = worker.snapshotBeforeContainerRequest();
        request.setState(ipc::fileHandleOf(capture->staging->state));
        request.setMemory(ipc::fileHandleOf(capture->staging->memory));
        request.setDisk(ipc::fileHandleOf(capture->staging->disk));
        tasks_.add(request.send().then([this, capture](auto reply) { captured(*capture, reply); },
                                       [capture](kj::Exception&& e) {
                                         spdlog::warn("VM {}: no start-up snapshot: {}",
                                                      capture->vmId, e.getDescription().cStr());
                                       }));
      });
}

void StartupCache::captured(const Capture& capture,
                            rpc::Worker::SnapshotBeforeContainerResults::Reader reply) {
  auto meta = capture.meta;
  meta.createdAtNs = realtimeNs();
  meta.pauseNs = reply.getPauseNs();
  meta.memoryBytes = reply.getMemoryBytes();
  std::string restore(reply.getRestore().cStr(), reply.getRestore().size());
  // The entry keeps what its clones' machine needs of the first run's spec, none of that run's
  // own: no command, env (its secrets), ports, checks or host paths.
  auto spec = vms_.specOf(capture.vmId);
  spec.command.clear();
  spec.env.clear();
  spec.user.clear();
  spec.workdir.clear();
  spec.ports.clear();
  spec.volumes.clear();
  spec.healthCmd.clear();
  spec.healthCheckUrl.clear();
  auto specFile = paths_.vmDir(capture.vmId) / "startup-spec.bin";
  ipc::writeVmSpecFile(spec, specFile.string());
  auto removeSpec = kj::defer([&specFile] {
    std::error_code ignored;
    std::filesystem::remove(specFile, ignored);
  });
  snapshots_.commit(meta, *capture.staging, restore, specFile);
  spdlog::info("start-up snapshot '{}' ({}) ready: paused {:.1f} ms, {} MiB of memory", meta.tag,
               meta.id, static_cast<double>(meta.pauseNs) / 1e6, meta.memoryBytes >> 20);
  tasks_.add(evict(meta));
}

kj::Promise<void> StartupCache::evict(const SnapshotMeta& added) {
  // Each owner's entries are bounded on their own: one user's many configurations do not push
  // out another's.
  std::vector<SnapshotMeta> others;
  std::vector<std::string> gone;
  for (auto& e : snapshots_.startupSnapshots()) {
    if (e.id == added.id || e.ownerUid != added.ownerUid) continue;
    // Superseded: the same configuration with another image digest.
    if (e.configKey == added.configKey) {
      gone.push_back(e.id);
    } else {
      others.push_back(std::move(e));
    }
  }
  // Then the least recently used, until `added` and the others fit the bound.
  std::sort(others.begin(), others.end(), [](const SnapshotMeta& a, const SnapshotMeta& b) {
    return a.lastUsedNs < b.lastUsedNs;
  });
  size_t keep = maxEntries_ > 0 ? maxEntries_ - 1 : 0;
  for (size_t i = 0; i + keep < others.size(); ++i) gone.push_back(others[i].id);
  // One a VM runs from stays (removeUnused), until a later entry evicts again.
  auto removals = kj::heapArrayBuilder<kj::Promise<void>>(gone.size());
  for (const auto& id : gone) removals.add(snapshots_.removeUnused(id).ignoreResult());
  return kj::joinPromises(removals.finish());
}

}  // namespace fcvm::supervisor
