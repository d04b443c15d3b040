#include "supervisor/storage_pruner.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm::supervisor {
namespace {

// `path`'s lock file held without waiting; an empty fd if someone else holds it.
UniqueFd tryLock(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) throw SysError(errno, "open " + path.string());
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == -1) {
    if (errno == EWOULDBLOCK) return UniqueFd();
    throw SysError(errno, "lock " + path.string());
  }
  return fd;
}

// Renames `dir` aside (one step: a reader sees it whole or not at all), then removes it.
void removeItem(const std::filesystem::path& dir) {
  auto aside = dir.parent_path() / (".pruning-" + dir.filename().string());
  std::filesystem::rename(dir, aside);
  std::filesystem::remove_all(aside);
  spdlog::info("pruned {}", dir.string());
}

}  // namespace

SharedPruneResult pruneShared(const Paths& paths, const StorageInventory& inventory, bool all) {
  SharedPruneResult result;
  if (inventory.vmStarting) {
    result.skipped = "a VM is starting: artifacts and image disks are left this time";
    return result;
  }
  auto storeLock = paths.storageDir() / "artifacts.lock";
  UniqueFd store = std::filesystem::exists(paths.storageDir()) ? tryLock(storeLock) : UniqueFd();
  if (!store && std::filesystem::exists(paths.storageDir())) {
    result.skipped = "fcvm setup is running: artifacts and image disks are left this time";
    return result;
  }
  for (const auto& item : inventory.items) {
    if (item.inUse) continue;
    if (item.kind == StorageKind::kArtifacts) {
      removeItem(item.path);
      ++result.artifacts;
      result.bytes += item.bytes;
    } else if (item.kind == StorageKind::kImages && all) {
      // Held while a worker prepares the image (worker/image_cache.cc).
      UniqueFd entry = tryLock(item.path / "lock");
      if (!entry) continue;
      removeItem(item.path);
      ++result.images;
      result.bytes += item.bytes;
    }
  }
  return result;
}

}  // namespace fcvm::supervisor
