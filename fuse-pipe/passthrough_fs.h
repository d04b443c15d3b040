// PassthroughFs: a Filesystem that performs each request on a host directory tree.
//
// Containment: every inode is an O_PATH fd; names are resolved one component at a time with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) relative to the parent's fd, so no request can
// name anything outside the root, and symlinks are never followed on the host (they are returned
// to the client, whose kernel resolves them in its own namespace). Ids are keys into tables.
// Permission checks are the host kernel's: each request runs under the caller's credentials
// (see ScopedCredentials) when the server runs as root. Device nodes can be neither created nor
// opened through it: the client must not reach the host's devices. Extended attributes are
// limited to the "user." namespace and POSIX ACLs: "trusted." and "security." (file
// capabilities!) would let a client grant privileges on the host.
#pragma once

#include <dirent.h>

#include <memory>
#include <mutex>
#include <string>

#include "base/unique_fd.h"
#include "fuse-pipe/filesystem.h"
#include "fuse-pipe/handle_table.h"
#include "fuse-pipe/inode_table.h"
#include "fuse-pipe/lock_table.h"

namespace fcvm::fusepipe {

struct PassthroughOptions {
  // Run each request as its caller (requires root); otherwise everything runs as the server.
  bool switchCredentials = false;
  size_t maxOpenFiles = 65536;
  size_t maxOpenDirs = 4096;
  size_t maxLockOwners = 4096;  // (file, lock owner) pairs holding POSIX locks
  // Never open anything for writing, not even the descriptors that only carry locks.
  bool readOnly = false;
};

class PassthroughFs final : public Filesystem {
 public:
  // Opens `rootPath` (a directory); throws SysError naming the path on failure.
  PassthroughFs(const std::string& rootPath, PassthroughOptions options);
  ~PassthroughFs() override;

  Errno lookup(const Credentials& caller, InodeId parent, std::string_view name,
               Entry& out) override;
  void forget(InodeId inode, uint64_t count) override;
  Errno getattr(const Credentials& caller, InodeId inode, std::optional<HandleId> handle,
                Attr& out) override;
  Errno setattr(const Credentials& caller, InodeId inode, const SetattrRequest& request,
                Attr& out) override;
  Errno readlink(const Credentials& caller, InodeId inode, std::string& target) override;
  Errno mknod(const Credentials& caller, InodeId parent, std::string_view name, uint32_t mode,
              uint64_t rdev, Entry& out) override;
  Errno mkdir(const Credentials& caller, InodeId parent, std::string_view name, uint32_t mode,
              Entry& out) override;
  Errno unlink(const Credentials& caller, InodeId parent, std::string_view name) override;
  Errno rmdir(const Credentials& caller, InodeId parent, std::string_view name) override;
  Errno symlink(const Credentials& caller, InodeId parent, std::string_view name,
                std::string_view target, Entry& out) override;
  Errno rename(const Credentials& caller, InodeId parent, std::string_view name, InodeId newParent,
               std::string_view newName, uint32_t flags) override;
  Errno link(const Credentials& caller, InodeId inode, InodeId newParent, std::string_view newName,
             Entry& out) override;
  Errno open(const Credentials& caller, InodeId inode, uint32_t flags, HandleId& out,
             bool& keepCache) override;
  Errno create(const Credentials& caller, InodeId parent, std::string_view name, uint32_t mode,
               uint32_t flags, Entry& entry, HandleId& handle) override;
  Errno read(const Credentials& caller, HandleId handle, uint64_t offset, uint32_t size,
             std::vector<uint8_t>& out) override;
  Errno write(const Credentials& caller, HandleId handle, uint64_t offset,
              std::span<const uint8_t> data, uint32_t& written) override;
  Errno flush(const Credentials& caller, HandleId handle, uint64_t lockOwner) override;
  Errno release(HandleId handle) override;
  Errno fsync(const Credentials& caller, HandleId handle, bool dataOnly) override;
  Errno opendir(const Credentials& caller, InodeId inode, HandleId& out, bool& keepCache) override;
  Errno readdir(const Credentials& caller, HandleId handle, uint64_t offset, uint32_t maxBytes,
                std::vector<DirEntry>& out) override;
  Errno releasedir(HandleId handle) override;
  Errno fsyncdir(const Credentials& caller, HandleId handle, bool dataOnly) override;
  Errno statfs(const Credentials& caller, InodeId inode, StatfsInfo& out) override;
  Errno access(const Credentials& caller, InodeId inode, uint32_t mask) override;
  Errno readdirplus(const Credentials& caller, HandleId handle, uint64_t offset, uint32_t maxBytes,
                    std::vector<DirEntryPlus>& out) override;
  Errno setxattr(const Credentials& caller, InodeId inode, std::string_view name,
                 std::span<const uint8_t> value, uint32_t flags) override;
  Errno getxattr(const Credentials& caller, InodeId inode, std::string_view name, uint32_t maxSize,
                 XattrValue& out) override;
  Errno listxattr(const Credentials& caller, InodeId inode, uint32_t maxSize,
                  XattrValue& out) override;
  Errno removexattr(const Credentials& caller, InodeId inode, std::string_view name) override;
  Errno fallocate(const Credentials& caller, HandleId handle, uint32_t mode, uint64_t offset,
                  uint64_t length) override;
  Errno lseek(const Credentials& caller, HandleId handle, uint64_t offset, uint32_t whence,
              uint64_t& result) override;
  Errno copyFileRange(const Credentials& caller, HandleId in, uint64_t inOffset, HandleId out,
                      uint64_t outOffset, uint64_t length, uint32_t flags,
                      uint64_t& copied) override;
  Errno getlk(const Credentials& caller, HandleId handle, uint64_t owner, LockRange& lock) override;
  Errno setlk(const Credentials& caller, HandleId handle, uint64_t owner, const LockRange& lock,
              bool wait, Cancellation* cancellation) override;
  Errno flock(const Credentials& caller, HandleId handle, uint32_t operation,
              Cancellation* cancellation) override;

  // For tests: how many inodes and handles the tables hold.
  size_t inodeCount() const { return inodes_->size(); }
  size_t openFileCount() const { return files_.size(); }
  size_t openDirCount() const { return dirs_.size(); }
  size_t lockOwnerCount() const { return locks_.size(); }

 private:
  struct OpenFile {
    UniqueFd fd;
  };
  struct OpenDir {
    explicit OpenDir(DIR* d) : dir(d) {}
    ~OpenDir() { ::closedir(dir); }
    std::mutex mutex;  // guards dir and position
    DIR* dir;
    uint64_t position = 0;  // the offset the stream is at, or kUnknownPosition
  };

  // The part of setattr done as `caller`; with `mustMayWrite`, only if the caller may write the
  // file (EPERM else).
  Errno setattrAs(const Credentials& caller, const Inode& node, OpenFile* file,
                  const SetattrRequest& request, bool mustMayWrite);
  // Reads entries of `dir` from `offset`, handing each to `take(const dirent&)`, which returns
  // false (and stops the listing) when the entry does not fit.
  template <typename Take>
  Errno readEntries(OpenDir& dir, uint64_t offset, Take take);
  // The inode for xattr calls: known, and a regular file or directory (ENOTSUP-like errors else).
  std::shared_ptr<const Inode> findXattrTarget(InodeId inode, Errno& error) const;

  // The lock table key of `owner` on the file open as `fd`.
  static Errno lockKey(int fd, uint64_t owner, LockTable::Key& key);
  // The owner's lock descriptor on the file open as `file`, opened on first use.
  std::shared_ptr<LockOwner> lockOwnerFor(int fileFd, const LockTable::Key& key, Errno& error);

  // Resolves `name` in the directory `parentFd` and records a lookup of what it names.
  Errno lookupIn(int parentFd, std::string_view name, Entry& out);
  // The directory inode `parent`, or null with `error` set (ESTALE unknown, ENOTDIR).
  std::shared_ptr<const Inode> findDirectory(InodeId parent, Errno& error) const;

  const PassthroughOptions options_;
  std::unique_ptr<InodeTable> inodes_;
  HandleTable<OpenFile> files_;
  HandleTable<OpenDir> dirs_;
  LockTable locks_;
};

}  // namespace fcvm::fusepipe
