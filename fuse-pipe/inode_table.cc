#include "fuse-pipe/inode_table.h"

#include <sys/stat.h>

#include <limits>

namespace fcvm::fusepipe {

InodeTable::InodeTable(UniqueFd rootPathFd, dev_t dev, ino_t ino) {
  auto root = std::make_shared<Inode>();
  root->id = kRootInode;
  root->dev = dev;
  root->ino = ino;
  root->type = S_IFDIR;
  root->pathFd = std::move(rootPathFd);
  byId_[kRootInode] = Record{std::move(root), std::numeric_limits<uint64_t>::max()};
  byHostInode_[{dev, ino}] = kRootInode;
}

std::shared_ptr<const Inode> InodeTable::find(InodeId id) const {
  std::lock_guard lock(mutex_);
  auto it = byId_.find(id);
  if (it == byId_.end()) return nullptr;
  return it->second.inode;
}

InodeId InodeTable::addLookup(UniqueFd pathFd, dev_t dev, ino_t ino, uint32_t type) {
  std::lock_guard lock(mutex_);
  auto known = byHostInode_.find({dev, ino});
  if (known != byHostInode_.end()) {
    Record& record = byId_.at(known->second);
    if (record.lookups != std::numeric_limits<uint64_t>::max()) ++record.lookups;
    return known->second;  // pathFd closes on return
  }
  auto inode = std::make_shared<Inode>();
  inode->id = InodeId{nextId_++};
  inode->dev = dev;
  inode->ino = ino;
  inode->type = type;
  inode->pathFd = std::move(pathFd);
  InodeId id = inode->id;
  byId_[id] = Record{std::move(inode), 1};
  byHostInode_[{dev, ino}] = id;
  return id;
}

void InodeTable::forget(InodeId id, uint64_t count) {
  std::shared_ptr<Inode> dropped;  // closed after the lock is released
  std::lock_guard lock(mutex_);
  auto it = byId_.find(id);
  if (it == byId_.end() || id == kRootInode) return;
  Record& record = it->second;
  if (count < record.lookups) {
    record.lookups -= count;
    return;
  }
  dropped = std::move(record.inode);
  byHostInode_.erase({dropped->dev, dropped->ino});
  byId_.erase(it);
}

size_t InodeTable::size() const {
  std::lock_guard lock(mutex_);
  return byId_.size();
}

}  // namespace fcvm::fusepipe
