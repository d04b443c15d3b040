// Value types exchanged between the fuse-pipe client, the wire and the Filesystem interface.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fcvm::fusepipe {

// An inode as the server numbers it. Only ever a key into the server's inode table.
struct InodeId {
  uint64_t value = 0;
  auto operator<=>(const InodeId&) const = default;
};
// An open file or directory as the server numbers it. Only ever a key into a handle table.
struct HandleId {
  uint64_t value = 0;
  auto operator<=>(const HandleId&) const = default;
};

// FUSE's root node id: the server's root directory.
inline constexpr InodeId kRootInode{1};

// Who performs a request: the calling process in the guest.
struct Credentials {
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t pid = 0;
  uint32_t umask = 022;
  std::vector<uint32_t> groups;  // supplementary groups
};

// Attributes of a host inode (a subset of struct stat that FUSE needs).
struct Attr {
  uint64_t ino = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;
  int64_t atimeSec = 0;
  int64_t mtimeSec = 0;
  int64_t ctimeSec = 0;
  uint32_t atimeNsec = 0;
  uint32_t mtimeNsec = 0;
  uint32_t ctimeNsec = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t rdev = 0;
  uint32_t blksize = 0;
};

// The answer to lookup-like requests; the client's lookup count on `inode` grew by one.
struct Entry {
  InodeId inode;
  uint64_t generation = 0;
  Attr attr;
};

// Which fields of a SetattrRequest apply.
enum SetattrField : uint32_t {
  kSetMode = 1u << 0,
  kSetUid = 1u << 1,
  kSetGid = 1u << 2,
  kSetSize = 1u << 3,
  kSetAtime = 1u << 4,
  kSetMtime = 1u << 5,
  kSetAtimeNow = 1u << 6,
  kSetMtimeNow = 1u << 7,
  kSetAllFields = (1u << 8) - 1,
};

struct SetattrRequest {
  uint32_t fields = 0;  // SetattrField bits
  std::optional<HandleId> handle;
  uint32_t mode = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  int64_t atimeSec = 0;
  uint32_t atimeNsec = 0;
  int64_t mtimeSec = 0;
  uint32_t mtimeNsec = 0;
};

struct DirEntry {
  uint64_t ino = 0;     // host inode number (d_ino)
  uint64_t offset = 0;  // offset of the next entry (d_off)
  uint32_t type = 0;    // d_type
  std::string name;
};

// A directory entry with what a lookup of it returned (none for "." and "..", or if the entry
// vanished before it could be looked up). A present entry counts as one lookup.
struct DirEntryPlus {
  DirEntry dirent;
  std::optional<Entry> entry;
};

// The answer to getxattr/listxattr: with a size limit of 0 only `size` (what the value needs);
// otherwise the value itself.
struct XattrValue {
  uint32_t size = 0;
  std::vector<uint8_t> data;
};

// A POSIX record lock as fcntl(2) sees it, always relative to the start of the file.
struct LockRange {
  uint32_t type = 0;    // F_RDLCK, F_WRLCK or F_UNLCK
  uint64_t start = 0;   // l_start
  uint64_t length = 0;  // l_len; 0 = to the end of the file, whatever its size
  uint32_t pid = 0;     // the holder (getlk) or the requester (setlk), in the client's pid space
};

struct StatfsInfo {
  uint64_t blocks = 0;
  uint64_t bfree = 0;
  uint64_t bavail = 0;
  uint64_t files = 0;
  uint64_t ffree = 0;
  uint64_t favail = 0;
  uint32_t bsize = 0;
  uint32_t frsize = 0;
  uint32_t namemax = 0;
  uint32_t flags = 0;  // ST_RDONLY etc.
};

}  // namespace fcvm::fusepipe

template <>
struct std::hash<fcvm::fusepipe::InodeId> {
  size_t operator()(const fcvm::fusepipe::InodeId& id) const noexcept {
    return std::hash<uint64_t>()(id.value);
  }
};
template <>
struct std::hash<fcvm::fusepipe::HandleId> {
  size_t operator()(const fcvm::fusepipe::HandleId& id) const noexcept {
    return std::hash<uint64_t>()(id.value);
  }
};
