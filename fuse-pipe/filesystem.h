// Filesystem: the operations the fuse-pipe server dispatches to, one per request kind.
//
// Every method returns 0 or a positive errno. Ids come from the wire and may be anything: an
// implementation looks them up in its own tables and answers ESTALE (inode) or EBADF (handle) for
// ids it does not know. Names are single path components that the server has already checked
// (not empty, not "." or "..", no '/' or NUL, at most kMaxNameLength bytes). Methods may be called
// concurrently from several threads.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuse-pipe/cancellation.h"
#include "fuse-pipe/error.h"
#include "fuse-pipe/fs_types.h"

namespace fcvm::fusepipe {

class Filesystem {
 public:
  virtual ~Filesystem() = default;

  virtual Errno lookup(const Credentials& caller, InodeId parent, std::string_view name,
                       Entry& out) = 0;
  // Drops `count` lookups of `inode`; unknown ids are ignored.
  virtual void forget(InodeId inode, uint64_t count) = 0;
  virtual Errno getattr(const Credentials& caller, InodeId inode, std::optional<HandleId> handle,
                        Attr& out) = 0;
  virtual Errno setattr(const Credentials& caller, InodeId inode, const SetattrRequest& request,
                        Attr& out) = 0;
  virtual Errno readlink(const Credentials& caller, InodeId inode, std::string& target) = 0;
  virtual Errno mknod(const Credentials& caller, InodeId parent, std::string_view name,
                      uint32_t mode, uint64_t rdev, Entry& out) = 0;
  virtual Errno mkdir(const Credentials& caller, InodeId parent, std::string_view name,
                      uint32_t mode, Entry& out) = 0;
  virtual Errno unlink(const Credentials& caller, InodeId parent, std::string_view name) = 0;
  virtual Errno rmdir(const Credentials& caller, InodeId parent, std::string_view name) = 0;
  virtual Errno symlink(const Credentials& caller, InodeId parent, std::string_view name,
                        std::string_view target, Entry& out) = 0;
  // flags: 0, RENAME_NOREPLACE or RENAME_EXCHANGE.
  virtual Errno rename(const Credentials& caller, InodeId parent, std::string_view name,
                       InodeId newParent, std::string_view newName, uint32_t flags) = 0;
  virtual Errno link(const Credentials& caller, InodeId inode, InodeId newParent,
                     std::string_view newName, Entry& out) = 0;
  // `keepCache`: the file is unchanged (size, mtime, ctime) since the previous open of it in this
  // session, so the client may keep the data it has cached from it.
  virtual Errno open(const Credentials& caller, InodeId inode, uint32_t flags, HandleId& out,
                     bool& keepCache) = 0;
  virtual Errno create(const Credentials& caller, InodeId parent, std::string_view name,
                       uint32_t mode, uint32_t flags, Entry& entry, HandleId& handle) = 0;
  // Reads at most `size` bytes into `out` (resized to what was read).
  virtual Errno read(const Credentials& caller, HandleId handle, uint64_t offset, uint32_t size,
                     std::vector<uint8_t>& out) = 0;
  virtual Errno write(const Credentials& caller, HandleId handle, uint64_t offset,
                      std::span<const uint8_t> data, uint32_t& written) = 0;
  // A close(2) of one of the client's descriptors of the file: reports delayed errors and
  // releases the POSIX locks `lockOwner` holds on the file.
  virtual Errno flush(const Credentials& caller, HandleId handle, uint64_t lockOwner) = 0;
  virtual Errno release(HandleId handle) = 0;
  virtual Errno fsync(const Credentials& caller, HandleId handle, bool dataOnly) = 0;
  // `keepCache`: the directory is unchanged since its previous opendir (as for open).
  virtual Errno opendir(const Credentials& caller, InodeId inode, HandleId& out,
                        bool& keepCache) = 0;
  // Entries starting at `offset` (0 = start, else a DirEntry::offset returned earlier), stopping
  // before their FUSE encoding would exceed `maxBytes`.
  virtual Errno readdir(const Credentials& caller, HandleId handle, uint64_t offset,
                        uint32_t maxBytes, std::vector<DirEntry>& out) = 0;
  virtual Errno releasedir(HandleId handle) = 0;
  virtual Errno fsyncdir(const Credentials& caller, HandleId handle, bool dataOnly) = 0;
  virtual Errno statfs(const Credentials& caller, InodeId inode, StatfsInfo& out) = 0;
  virtual Errno access(const Credentials& caller, InodeId inode, uint32_t mask) = 0;
  // Like readdir, with a lookup of each entry (see DirEntryPlus).
  virtual Errno readdirplus(const Credentials& caller, HandleId handle, uint64_t offset,
                            uint32_t maxBytes, std::vector<DirEntryPlus>& out) = 0;

  // Extended attributes. For get and list, maxSize 0 asks only for the size (see XattrValue).
  virtual Errno setxattr(const Credentials& caller, InodeId inode, std::string_view name,
                         std::span<const uint8_t> value, uint32_t flags) = 0;
  virtual Errno getxattr(const Credentials& caller, InodeId inode, std::string_view name,
                         uint32_t maxSize, XattrValue& out) = 0;
  // The names, each NUL-terminated, as listxattr(2) returns them.
  virtual Errno listxattr(const Credentials& caller, InodeId inode, uint32_t maxSize,
                          XattrValue& out) = 0;
  virtual Errno removexattr(const Credentials& caller, InodeId inode, std::string_view name) = 0;

  virtual Errno fallocate(const Credentials& caller, HandleId handle, uint32_t mode,
                          uint64_t offset, uint64_t length) = 0;
  // whence is SEEK_DATA or SEEK_HOLE (the client's kernel handles the others).
  virtual Errno lseek(const Credentials& caller, HandleId handle, uint64_t offset, uint32_t whence,
                      uint64_t& result) = 0;
  virtual Errno copyFileRange(const Credentials& caller, HandleId in, uint64_t inOffset,
                              HandleId out, uint64_t outOffset, uint64_t length, uint32_t flags,
                              uint64_t& copied) = 0;

  // POSIX record locks of `owner` (the client's lock owner id), through the open file `handle`.
  // getlk: the first lock that would conflict with `lock` (type F_UNLCK if none).
  virtual Errno getlk(const Credentials& caller, HandleId handle, uint64_t owner,
                      LockRange& lock) = 0;
  // With `wait`, blocks until the lock is granted or `cancellation` (may be null) is cancelled
  // (EINTR); otherwise a conflict is EAGAIN.
  virtual Errno setlk(const Credentials& caller, HandleId handle, uint64_t owner,
                      const LockRange& lock, bool wait, Cancellation* cancellation) = 0;
  // flock(2) on the open file: LOCK_SH, LOCK_EX or LOCK_UN, maybe with LOCK_NB; without LOCK_NB
  // it waits like setlk.
  virtual Errno flock(const Credentials& caller, HandleId handle, uint32_t operation,
                      Cancellation* cancellation) = 0;
};

}  // namespace fcvm::fusepipe
