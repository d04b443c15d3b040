// Snapshots on disk, like VMs: the record in the data dir, the bulk in the storage dir (reflink-
// capable, so a clone's disk is a reflink of the snapshot's).
//   <data dir>/snapshots/<id>/      snapshot.json  who, what, when (SnapshotMeta), versioned
//                                   spec.bin       the source VM's spec, which clones repeat
//   <storage>/snapshots/<id>/       state.bin      QEMU's device state
//                                   memory.img     guest memory, sparse; never written again
//                                   rootfs.ext4    the disk, a reflink of the source's at the pause
//                                   restore.json   what a clone's worker needs: its QEMU machine
//                                                  and health check (from the source's worker)
// Both are built as .staging-<id>/ and renamed into place, the record last: that rename is the
// commit. A supervisor killed before it leaves the record's staging dir, from which the next one
// knows what to remove; so a snapshot is whole or absent, and a store never touches bulk it has no
// record of (test instances share one storage dir).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"
#include "ipc/vm_spec.h"

namespace fcvm::supervisor {

struct SnapshotMeta {
  std::string id;  // 16 hex digits
  std::string tag;
  uint32_t ownerUid = 0;
  int64_t createdAtNs = 0;
  std::string sourceVmId;
  std::string sourceVmName;
  std::string image;
  uint64_t pauseNs = 0;
  uint64_t memoryBytes = 0;  // data in the memory image
  std::string qemuVersion;   // a clone needs the same QEMU to load the device state
  // The source's --map volumes (from spec.bin, not snapshot.json): each clone's client reopens
  // every host directory with its own rights.
  std::vector<ipc::VolumeMapping> volumes;
  // A start-up snapshot (startup_cache.h): the key of the runs it serves (sha256, hex), and that of
  // their configuration without the image's digest. Both empty for `snapshot create`'s.
  std::string startupKey;
  std::string configKey;
  int64_t lastUsedNs = 0;  // not in snapshot.json: its modification time
};

// snapshot.json, and back. The parser checks every field (ids, the tag); throws NewerFormatError
// for a record of a newer fcvm, fcvm::Error or nlohmann::json::exception for one that does not
// check out. `file` names it in errors. The volumes are not in it (see SnapshotMeta).
std::string formatSnapshotMeta(const SnapshotMeta& meta);
SnapshotMeta parseSnapshotMeta(std::string_view text, const std::filesystem::path& file);

// A snapshot being written. Destroying it without commit() removes everything it wrote.
class SnapshotStaging {
 public:
  // `recordDir`/`bulkDir`: the store's two directories; `id` the new snapshot's.
  SnapshotStaging(const std::filesystem::path& recordDir, const std::filesystem::path& bulkDir,
                  const std::string& id);
  ~SnapshotStaging();
  SnapshotStaging(const SnapshotStaging&) = delete;
  SnapshotStaging& operator=(const SnapshotStaging&) = delete;

  // The empty files the worker fills, opened for writing.
  UniqueFd state, memory, disk;

  // Writes restore.json, the metadata and a copy of the spec file, fsyncs every file and
  // directory, and renames the bulk, then the record into place.
  void commit(const SnapshotMeta& meta, const std::string& restoreJson,
              const std::filesystem::path& specFile);

 private:
  std::filesystem::path recordStaging_, record_, bulkStaging_, bulk_;
  bool committed_ = false;
};

class SnapshotStore {
 public:
  SnapshotStore(std::filesystem::path recordDir, std::filesystem::path bulkDir);

  // Every complete snapshot. What a killed supervisor left half made (or half removed) is removed;
  // a snapshot whose metadata cannot be read is logged and skipped (left in place).
  std::vector<SnapshotMeta> load() const;
  std::unique_ptr<SnapshotStaging> begin(const std::string& id) const;
  // The snapshot's bulk directory: what a clone's worker restores from.
  std::filesystem::path bulkOf(const std::string& id) const { return bulkDir_ / id; }
  std::filesystem::path specOf(const std::string& id) const { return recordDir_ / id / "spec.bin"; }
  // Records that the snapshot was used now (its record's modification time).
  void markUsed(const std::string& id) const;
  // Un-commits the record first, so a removal cut short is finished by the next load().
  void remove(const std::string& id) const;

 private:
  std::filesystem::path recordDir_, bulkDir_;
};

}  // namespace fcvm::supervisor
