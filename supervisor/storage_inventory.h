// What fcvm keeps on disk, item by item, and which items are in use: the answer to
// `fcvm system df` and the list `fcvm system prune` removes from.
//
// In use means named by something that may still read it:
//  - artifacts: the current set (new VMs boot it) and any file a running QEMU or a snapshot names;
//  - image disks: any a running QEMU (a VM or a clone) or a snapshot (its clones) names;
//  - a VM's disk and logs: the VM has not ended (an ended VM's go with `rm`/prune), or it has no
//    record here (not this supervisor's to judge);
//  - snapshots and the process logs: always (prune leaves them; `snapshot rm` removes snapshots).
// "Names" is read from the truth: each running QEMU's command line (/proc, through the pid its
// worker recorded) and each snapshot's restore.json.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/paths.h"
#include "ipc/records.h"

namespace fcvm::supervisor {

enum class StorageKind { kArtifacts, kImages, kVmDisks, kSnapshots, kLogs };
inline constexpr StorageKind kStorageKinds[] = {StorageKind::kArtifacts, StorageKind::kImages,
                                                StorageKind::kVmDisks, StorageKind::kSnapshots,
                                                StorageKind::kLogs};
const char* nameOf(StorageKind kind);

struct StorageItem {
  StorageKind kind;
  std::filesystem::path path;  // the directory that is the item
  // The VM (disks, a VM's logs) or snapshot it belongs to, and its owner; none for shared items
  // (artifacts, image disks, the process logs) and for a disk whose VM has no record.
  std::optional<std::string> ownerId;
  std::optional<uint32_t> ownerUid;
  uint64_t bytes = 0;  // allocated on disk (reflinked extents count in every file that has them)
  bool inUse = false;
};

struct StorageInventory {
  std::vector<StorageItem> items;
  // A VM is being set up (no QEMU to read yet): what it will name is not known, so nothing shared
  // may be pruned now.
  bool vmStarting = false;
};

// Walks the data dir of `paths`. `records`: every VM on record.
StorageInventory takeInventory(const Paths& paths, const std::vector<ipc::VmRecord>& records);

// Bytes allocated to `path` and everything below it (symlinks not followed).
uint64_t allocatedBytes(const std::filesystem::path& path);

}  // namespace fcvm::supervisor
