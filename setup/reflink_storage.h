// <data dir>/storage: where guest artifacts and VM disks live, on a file system that can reflink,
// so a VM's disk is a copy-on-write clone of the base rootfs made in milliseconds. If the data
// dir's own file system cannot (ext4, say), storage is a loopback btrfs image mounted there.
#pragma once

#include <filesystem>
#include <string>

namespace fcvm::setup {

struct ReflinkStorage {
  std::filesystem::path dir;
  bool loopback = false;  // a loop-mounted btrfs image
  bool created = false;   // made (or mounted) by this call
  std::string detail;     // one line for the user
};

std::filesystem::path storageDir(const std::filesystem::path& dataDir);

// Idempotent: an existing storage is used as it is; a loopback image that exists but is not
// mounted (after a reboot) is mounted again. Needs root for the loopback case.
ReflinkStorage ensureReflinkStorage(const std::filesystem::path& dataDir,
                                    const std::string& logFile);

// What a reboot takes away: mounts the loopback image `fcvm setup` made again if it exists and is
// not mounted. Never creates anything. Returns true if it mounted it now; throws fcvm::Error if
// that failed (the artifacts and disks are then out of reach).
bool remountReflinkStorage(const std::filesystem::path& dataDir, const std::string& logFile);

}  // namespace fcvm::setup
