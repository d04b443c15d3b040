// LockTable: the open file descriptions through which client lock owners hold POSIX locks.
//
// The host kernel attributes classic POSIX locks to processes, and every lock the server takes
// would belong to the server process: two client owners would never conflict. So each
// (host file, client lock owner) pair gets its own open file description and the server uses
// open-file-description locks (F_OFD_*) on it: owners then conflict with each other and with
// processes on the host exactly as processes do. Closing the description (when the owner closes
// any descriptor of the file: FUSE_FLUSH) releases the owner's locks, as close(2) does.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "base/unique_fd.h"

namespace fcvm::fusepipe {

struct LockOwner {
  explicit LockOwner(UniqueFd f) : fd(std::move(f)) {}
  const UniqueFd fd;              // the owner's open file description on the host file
  std::atomic<uint32_t> pid = 0;  // the client pid that last locked through it (for getlk)
};

class LockTable {
 public:
  explicit LockTable(size_t capacity) : capacity_(capacity) {}

  struct Key {
    dev_t dev;
    ino_t ino;
    uint64_t owner;
    auto operator<=>(const Key&) const = default;
  };

  std::shared_ptr<LockOwner> find(const Key& key) const {
    std::lock_guard lock(mutex_);
    auto it = owners_.find(key);
    return it == owners_.end() ? nullptr : it->second;
  }

  // Adds `fd` for `key` unless another thread did first; returns the entry in the table, or null
  // when the table is full.
  std::shared_ptr<LockOwner> insert(const Key& key, UniqueFd fd) {
    std::lock_guard lock(mutex_);
    auto it = owners_.find(key);
    if (it != owners_.end()) return it->second;
    if (owners_.size() >= capacity_) return nullptr;
    auto entry = std::make_shared<LockOwner>(std::move(fd));
    owners_.emplace(key, entry);
    return entry;
  }

  // Drops the owner's entry: its locks go when the last user lets go of the descriptor.
  void remove(const Key& key) {
    std::shared_ptr<LockOwner> dropped;
    std::lock_guard lock(mutex_);
    auto it = owners_.find(key);
    if (it == owners_.end()) return;
    dropped = std::move(it->second);
    owners_.erase(it);
  }

  // The other owners of locks on the same file.
  std::vector<std::shared_ptr<LockOwner>> othersOnFile(const Key& key) const {
    std::vector<std::shared_ptr<LockOwner>> out;
    std::lock_guard lock(mutex_);
    for (auto it = owners_.lower_bound(Key{key.dev, key.ino, 0});
         it != owners_.end() && it->first.dev == key.dev && it->first.ino == key.ino; ++it) {
      if (it->first.owner != key.owner) out.push_back(it->second);
    }
    return out;
  }

  size_t size() const {
    std::lock_guard lock(mutex_);
    return owners_.size();
  }

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;  // guards owners_
  std::map<Key, std::shared_ptr<LockOwner>> owners_;
};

}  // namespace fcvm::fusepipe
