// Start-up snapshots: `podman run` of a configuration seen before restores a VM snapshotted just
// before its container started, instead of booting one.
//
// - The first run of a configuration boots cold. Once its guest is ready for the container
//   (modules loaded, root switched, image store attached) and before it gets the container's
//   plan, its worker snapshots it (Worker.snapshotBeforeContainer) into a snapshot of the store,
//   tagged startup-<key>. Nothing of the run (command, env, name, volumes' paths) is in it yet.
// - Later runs with the same key start as a clone of that snapshot; the clone's worker then sends
//   that run's own plan, and the container starts fresh.
// - The key: the guest artifacts, QEMU's and fcvm's versions, the image's digest (resolved first,
//   by the owner's rights: prepareImage), the owner, cpus, memory, accelerator, network mode,
//   root disk size and the number of --map volumes (each is a port of the machine).
// - A run that finds the entry being built by another boots cold and builds nothing; a new image
//   digest under the same configuration supersedes the entry; each owner's entries are bounded
//   (least recently used go first). An entry is served (its memory image held by its serve
//   process) only while runs use it, and only `podman run` clones it.
//
// `--no-snapshot-cache` boots cold and builds nothing, as do --restart VMs. The bound per owner
// comes from the configuration file: {"startup_snapshots": {"max_entries": 8}}; 0 turns the cache
// off. The entry keeps none of its first run's own settings (command, env, ports, host paths).
#pragma once

#include <kj/async-io.h>

#include <filesystem>
#include <set>
#include <string>

#include "base/paths.h"
#include "ipc/prepared_image.h"
#include "supervisor/caller.h"
#include "supervisor/snapshot_controller.h"
#include "supervisor/vm_controller.h"

namespace fcvm::supervisor {

struct StartupKeys {
  std::string startup;  // everything a start-up snapshot depends on
  std::string config;   // the same without the image's digest: what a new digest supersedes
};

// The keys of a run of `spec` (its network resolved) by `ownerUid`, with `image` prepared.
StartupKeys startupKeysOf(const ipc::VmSpec& spec, uint32_t ownerUid,
                          const ipc::PreparedImage& image, const std::string& artifacts,
                          const std::string& qemuVersion);

class StartupCache : private kj::TaskSet::ErrorHandler {
 public:
  static constexpr uint32_t kDefaultMaxEntries = 8;

  StartupCache(kj::AsyncIoContext& io, Paths paths, VmController& vms,
               SnapshotController& snapshots, uint32_t maxEntries);

  // The "max_entries" of the configuration file's "startup_snapshots"; the default without.
  // Throws fcvm::Error naming the file for a value that is not a count.
  static uint32_t maxEntriesFrom(const std::filesystem::path& configFile);

  // `podman run`: from a start-up snapshot when one fits, else cold (and building one).
  kj::Promise<RunResult> run(const Caller& caller, ipc::VmSpec spec,
                             kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                             bool autoRemove, ImageInputs image, bool useCache);

 private:
  struct Capture;

  kj::Promise<RunResult> start(const Caller& caller, const std::string& id, const ipc::VmSpec& spec,
                               kj::Maybe<rpc::OutputSink::Client> output, bool detach,
                               const WorkerInputs& inputs);
  void captured(const Capture& capture, rpc::Worker::SnapshotBeforeContainerResults::Reader reply);
  kj::Promise<void> evict(const SnapshotMeta& added);
  std::string artifactsKey() const;
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  const Paths paths_;
  VmController& vms_;
  SnapshotController& snapshots_;
  const uint32_t maxEntries_;
  std::set<std::string> building_;  // start-up keys whose first run is being snapshotted
  kj::TaskSet tasks_{*this};
};

}  // namespace fcvm::supervisor
