// Snapshots on disk, under <storage>/snapshots/<id>/ (reflink-capable storage, so a clone's disk
// is a reflink of the snapshot's):
//   snapshot.json  who, what, when (SnapshotMeta), versioned
//   restore.json   what a clone needs to start: its QEMU machine and health check (from the worker)
//   spec.bin       the source VM's spec (image, command, env, resources), which clones repeat
//   state.bin      QEMU's device state
//   memory.img     guest memory, sparse; written once, never again
//   rootfs.ext4    the disk, a reflink of the source's at the pause
// A snapshot is built in .staging-<id>/ and renamed into place complete, so a supervisor killed
// meanwhile leaves only a staging dir, which the next one removes: a snapshot is whole or absent.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"

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
};

// A snapshot being written. Destroying it without commit() removes everything it wrote.
class SnapshotStaging {
 public:
  SnapshotStaging(std::filesystem::path dir, std::filesystem::path final);
  ~SnapshotStaging();
  SnapshotStaging(const SnapshotStaging&) = delete;
  SnapshotStaging& operator=(const SnapshotStaging&) = delete;

  // The empty files the worker fills, opened for writing.
  UniqueFd state, memory, disk;
  const std::filesystem::path& dir() const { return dir_; }

  // Writes the metadata, restore.json and a copy of the spec file, fsyncs every file and the
  // directory, and renames the directory into place.
  void commit(const SnapshotMeta& meta, const std::string& restoreJson,
              const std::filesystem::path& specFile);

 private:
  std::filesystem::path dir_, final_;
  bool committed_ = false;
};

class SnapshotStore {
 public:
  explicit SnapshotStore(std::filesystem::path dir);  // <storage>/snapshots

  // Every complete snapshot; staging dirs of a killed supervisor are removed, a snapshot whose
  // metadata cannot be read is logged and skipped (left in place).
  std::vector<SnapshotMeta> load() const;
  std::unique_ptr<SnapshotStaging> begin(const std::string& id) const;
  std::filesystem::path dirOf(const std::string& id) const { return dir_ / id; }
  void remove(const std::string& id) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace fcvm::supervisor
