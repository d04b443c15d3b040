// InodeTable: the server's inodes, each an O_PATH fd on a host inode under the root, keyed by an
// InodeId that is never reused within a session and by the host (st_dev, st_ino).
#pragma once

#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "base/unique_fd.h"
#include "fuse-pipe/fs_types.h"

namespace fcvm::fusepipe {

struct Inode {
  InodeId id;
  dev_t dev = 0;
  ino_t ino = 0;
  uint32_t type = 0;  // S_IFMT bits
  UniqueFd pathFd;    // O_PATH | O_NOFOLLOW

  // What a regular file's or directory's size, mtime and ctime were when it was last opened in
  // this session: an open that finds them unchanged tells the client to keep its page cache (or
  // its cached listing).
  struct Version {
    off_t size = 0;
    timespec mtime{};
    timespec ctime{};
  };
  mutable std::mutex versionMutex;
  mutable Version lastOpened;
  mutable bool opened = false;  // lastOpened is set
};

class InodeTable {
 public:
  // Registers the root directory as kRootInode; it is never forgotten.
  InodeTable(UniqueFd rootPathFd, dev_t dev, ino_t ino);

  // The inode, or null for an unknown id.
  std::shared_ptr<const Inode> find(InodeId id) const;

  // Records one lookup of the host inode (dev, ino) that `pathFd` refers to and returns its id:
  // the existing id if it is known (pathFd is then closed), else a new one that owns pathFd.
  InodeId addLookup(UniqueFd pathFd, dev_t dev, ino_t ino, uint32_t type);

  // Drops `count` lookups; the inode is removed when none remain. Unknown ids are ignored.
  void forget(InodeId id, uint64_t count);

  size_t size() const;

 private:
  struct Record {
    std::shared_ptr<Inode> inode;
    uint64_t lookups = 0;
  };

  mutable std::mutex mutex_;  // guards everything below; never held while calling out
  std::unordered_map<InodeId, Record> byId_;
  std::map<std::pair<dev_t, ino_t>, InodeId> byHostInode_;
  uint64_t nextId_ = kRootInode.value + 1;
};

}  // namespace fcvm::fusepipe
