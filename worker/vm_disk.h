// A VM's own root disk: a copy-on-write clone (reflink) of the base rootfs from `fcvm setup`, so
// creating one costs milliseconds and no space until the guest writes.
#pragma once

#include <cstdint>
#include <filesystem>

namespace fcvm::worker {

struct VmDiskInfo {
  std::filesystem::path path;
  uint64_t sizeBytes = 0;
  bool reflinked = false;  // false: the file system could not clone, so the base was copied
};

// Clones `base` to `path` (created exclusively) and grows the ext4 file system to `sizeMib` when
// that is larger than the base (0 keeps the base's size). Removes `path` again on any failure.
VmDiskInfo createVmDisk(const std::filesystem::path& base, const std::filesystem::path& path,
                        uint32_t sizeMib);

}  // namespace fcvm::worker
