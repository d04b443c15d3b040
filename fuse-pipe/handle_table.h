// HandleTable<T>: open files or directories keyed by HandleIds that are never reused in a session.
// Entries are shared so that a request using a handle keeps it alive while a concurrent release
// removes it from the table; the resource closes when the last user lets go.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "fuse-pipe/fs_types.h"

namespace fcvm::fusepipe {

template <typename T>
class HandleTable {
 public:
  explicit HandleTable(size_t capacity) : capacity_(capacity) {}

  // The new handle's id, or nullopt when the table is full.
  std::optional<HandleId> insert(std::shared_ptr<T> value) {
    std::lock_guard lock(mutex_);
    if (byId_.size() >= capacity_) return std::nullopt;
    HandleId id{nextId_++};
    byId_.emplace(id, std::move(value));
    return id;
  }

  // The entry, or null for an unknown id.
  std::shared_ptr<T> find(HandleId id) const {
    std::lock_guard lock(mutex_);
    auto it = byId_.find(id);
    return it == byId_.end() ? nullptr : it->second;
  }

  // Removes and returns the entry, or null for an unknown id.
  std::shared_ptr<T> remove(HandleId id) {
    std::lock_guard lock(mutex_);
    auto it = byId_.find(id);
    if (it == byId_.end()) return nullptr;
    auto value = std::move(it->second);
    byId_.erase(it);
    return value;
  }

  size_t size() const {
    std::lock_guard lock(mutex_);
    return byId_.size();
  }

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;  // guards everything below
  std::unordered_map<HandleId, std::shared_ptr<T>> byId_;
  uint64_t nextId_ = 1;
};

}  // namespace fcvm::fusepipe
