#include "fuse-pipe/request_handler.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>

#include <cerrno>

#include "fuse-pipe/protocol.h"

namespace fcvm::fusepipe {

bool isValidName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxNameLength && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

namespace {

using Reply = std::optional<std::vector<uint8_t>>;

Reply errorReply(Errno error) {
  WireWriter w;
  w.i32(error);
  return w.take();
}

// A successful reply: errno 0 then whatever `encode` writes.
template <typename F>
Reply okReply(F&& encode) {
  WireWriter w;
  w.i32(0);
  encode(w);
  return w.take();
}

Reply entryReply(Errno error, const Entry& entry) {
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { encodeEntry(w, entry); });
}

Reply statusReply(Errno error) { return errorReply(error); }

std::optional<HandleId> decodeOptionalHandle(WireReader& r) {
  uint8_t present = r.u8();
  uint64_t id = r.u64();
  if (present > 1) r.fail();
  return present ? std::optional<HandleId>(HandleId{id}) : std::nullopt;
}

// Everything a per-opcode handler gets: the filesystem, the caller and the undecoded body.
struct Call {
  Filesystem& fs;
  const Credentials& caller;
  WireReader& body;
  bool readOnly;
  Cancellation* cancellation;  // for requests that may block; null when run without one
};

// Decoding finished: the body must be exactly consumed and the names valid.
#define FP_REQUIRE_DECODED(call) \
  if (!(call).body.finish()) return errorReply(EPROTO)
// Names of up to a path's length are decoded, so that one over NAME_MAX gets the ENAMETOOLONG a
// local file system gives, not a protocol error.
#define FP_REQUIRE_NAME(name) \
  if (!isValidName(name)) return errorReply((name).size() > kMaxNameLength ? ENAMETOOLONG : EINVAL)

Reply doLookup(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  Entry entry;
  return entryReply(c.fs.lookup(c.caller, parent, name, entry), entry);
}

Reply doForget(Call c) {
  InodeId inode{c.body.u64()};
  uint64_t count = c.body.u64();
  if (c.body.finish()) c.fs.forget(inode, count);
  return std::nullopt;
}

Reply doGetattr(Call c) {
  InodeId inode{c.body.u64()};
  auto handle = decodeOptionalHandle(c.body);
  FP_REQUIRE_DECODED(c);
  Attr attr;
  Errno error = c.fs.getattr(c.caller, inode, handle, attr);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { encodeAttr(w, attr); });
}

Reply doSetattr(Call c) {
  InodeId inode{c.body.u64()};
  SetattrRequest request;
  request.fields = c.body.u32();
  request.handle = decodeOptionalHandle(c.body);
  request.mode = c.body.u32();
  request.uid = c.body.u32();
  request.gid = c.body.u32();
  request.size = c.body.u64();
  request.atimeSec = c.body.i64();
  request.atimeNsec = c.body.u32();
  request.mtimeSec = c.body.i64();
  request.mtimeNsec = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (request.fields & ~static_cast<uint32_t>(kSetAllFields)) return errorReply(EINVAL);
  Attr attr;
  Errno error = c.fs.setattr(c.caller, inode, request, attr);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { encodeAttr(w, attr); });
}

Reply doReadlink(Call c) {
  InodeId inode{c.body.u64()};
  FP_REQUIRE_DECODED(c);
  std::string target;
  Errno error = c.fs.readlink(c.caller, inode, target);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { w.string(target); });
}

Reply doMknod(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  uint32_t mode = c.body.u32();
  uint64_t rdev = c.body.u64();
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  Entry entry;
  return entryReply(c.fs.mknod(c.caller, parent, name, mode, rdev, entry), entry);
}

Reply doMkdir(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  uint32_t mode = c.body.u32();
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  Entry entry;
  return entryReply(c.fs.mkdir(c.caller, parent, name, mode, entry), entry);
}

Reply doUnlink(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  return statusReply(c.fs.unlink(c.caller, parent, name));
}

Reply doRmdir(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  return statusReply(c.fs.rmdir(c.caller, parent, name));
}

Reply doSymlink(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  auto target = c.body.string(kMaxPathLength);
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  if (target.empty() || target.find('\0') != std::string_view::npos) return errorReply(EINVAL);
  Entry entry;
  return entryReply(c.fs.symlink(c.caller, parent, name, target, entry), entry);
}

Reply doRename(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  InodeId newParent{c.body.u64()};
  auto newName = c.body.string(kMaxPathLength);
  uint32_t flags = c.body.u32();
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  FP_REQUIRE_NAME(newName);
  return statusReply(c.fs.rename(c.caller, parent, name, newParent, newName, flags));
}

Reply doLink(Call c) {
  InodeId inode{c.body.u64()};
  InodeId newParent{c.body.u64()};
  auto newName = c.body.string(kMaxPathLength);
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(newName);
  Entry entry;
  return entryReply(c.fs.link(c.caller, inode, newParent, newName, entry), entry);
}

// kOpen and kOpendir: the handle, then kOpen* flags.
Reply openReply(Errno error, HandleId handle, bool keepCache) {
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) {
    w.u64(handle.value);
    w.u32(keepCache ? kOpenKeepCache : 0);
  });
}

Reply doOpen(Call c) {
  InodeId inode{c.body.u64()};
  uint32_t flags = c.body.u32();
  FP_REQUIRE_DECODED(c);
  HandleId handle;
  bool keepCache = false;
  Errno error = c.fs.open(c.caller, inode, flags, handle, keepCache);
  return openReply(error, handle, keepCache);
}

Reply doCreate(Call c) {
  InodeId parent{c.body.u64()};
  auto name = c.body.string(kMaxPathLength);
  uint32_t mode = c.body.u32();
  uint32_t flags = c.body.u32();
  FP_REQUIRE_DECODED(c);
  FP_REQUIRE_NAME(name);
  Entry entry;
  HandleId handle;
  Errno error = c.fs.create(c.caller, parent, name, mode, flags, entry, handle);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) {
    encodeEntry(w, entry);
    w.u64(handle.value);
  });
}

Reply doRead(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t offset = c.body.u64();
  uint32_t size = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (size > kMaxIoSize) return errorReply(EINVAL);
  std::vector<uint8_t> data;
  Errno error = c.fs.read(c.caller, handle, offset, size, data);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { w.bytes(data); });
}

Reply doWrite(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t offset = c.body.u64();
  auto data = c.body.bytes(kMaxIoSize);
  FP_REQUIRE_DECODED(c);
  uint32_t written = 0;
  Errno error = c.fs.write(c.caller, handle, offset, data, written);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { w.u32(written); });
}

Reply doFlush(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t lockOwner = c.body.u64();
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.flush(c.caller, handle, lockOwner));
}

Reply doRelease(Call c) {
  HandleId handle{c.body.u64()};
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.release(handle));
}

Reply doFsync(Call c) {
  HandleId handle{c.body.u64()};
  uint8_t dataOnly = c.body.u8();
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.fsync(c.caller, handle, dataOnly != 0));
}

Reply doOpendir(Call c) {
  InodeId inode{c.body.u64()};
  FP_REQUIRE_DECODED(c);
  HandleId handle;
  bool keepCache = false;
  Errno error = c.fs.opendir(c.caller, inode, handle, keepCache);
  return openReply(error, handle, keepCache);
}

Reply doReaddir(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t offset = c.body.u64();
  uint32_t maxBytes = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (maxBytes > kMaxIoSize) return errorReply(EINVAL);
  std::vector<DirEntry> entries;
  Errno error = c.fs.readdir(c.caller, handle, offset, maxBytes, entries);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) {
    w.u32(static_cast<uint32_t>(entries.size()));
    for (const auto& e : entries) encodeDirEntry(w, e);
  });
}

Reply doReleasedir(Call c) {
  HandleId handle{c.body.u64()};
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.releasedir(handle));
}

Reply doFsyncdir(Call c) {
  HandleId handle{c.body.u64()};
  uint8_t dataOnly = c.body.u8();
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.fsyncdir(c.caller, handle, dataOnly != 0));
}

Reply doStatfs(Call c) {
  InodeId inode{c.body.u64()};
  FP_REQUIRE_DECODED(c);
  StatfsInfo info;
  Errno error = c.fs.statfs(c.caller, inode, info);
  if (error) return errorReply(error);
  if (c.readOnly) info.flags |= ST_RDONLY;
  return okReply([&](WireWriter& w) { encodeStatfs(w, info); });
}

Reply doAccess(Call c) {
  InodeId inode{c.body.u64()};
  uint32_t mask = c.body.u32();
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.access(c.caller, inode, mask));
}

Reply doReaddirplus(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t offset = c.body.u64();
  uint32_t maxBytes = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (maxBytes > kMaxIoSize) return errorReply(EINVAL);
  std::vector<DirEntryPlus> entries;
  Errno error = c.fs.readdirplus(c.caller, handle, offset, maxBytes, entries);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) {
    w.u32(static_cast<uint32_t>(entries.size()));
    for (const auto& e : entries) encodeDirEntryPlus(w, e);
  });
}

bool isValidXattrName(std::string_view name) {
  return !name.empty() && name.find('\0') == std::string_view::npos;
}

Reply xattrReply(Errno error, uint32_t maxSize, const XattrValue& value) {
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) {
    w.u32(value.size);
    w.bytes(maxSize == 0 ? std::span<const uint8_t>() : std::span<const uint8_t>(value.data));
  });
}

Reply doSetxattr(Call c) {
  InodeId inode{c.body.u64()};
  auto name = c.body.string(kMaxNameLength);
  auto value = c.body.bytes(kMaxXattrSize);
  uint32_t flags = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (!isValidXattrName(name)) return errorReply(EINVAL);
  return statusReply(c.fs.setxattr(c.caller, inode, name, value, flags));
}

Reply doGetxattr(Call c) {
  InodeId inode{c.body.u64()};
  auto name = c.body.string(kMaxNameLength);
  uint32_t maxSize = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (!isValidXattrName(name)) return errorReply(EINVAL);
  if (maxSize > kMaxXattrSize) maxSize = kMaxXattrSize;
  XattrValue value;
  return xattrReply(c.fs.getxattr(c.caller, inode, name, maxSize, value), maxSize, value);
}

Reply doListxattr(Call c) {
  InodeId inode{c.body.u64()};
  uint32_t maxSize = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (maxSize > kMaxXattrSize) maxSize = kMaxXattrSize;
  XattrValue value;
  return xattrReply(c.fs.listxattr(c.caller, inode, maxSize, value), maxSize, value);
}

Reply doRemovexattr(Call c) {
  InodeId inode{c.body.u64()};
  auto name = c.body.string(kMaxNameLength);
  FP_REQUIRE_DECODED(c);
  if (!isValidXattrName(name)) return errorReply(EINVAL);
  return statusReply(c.fs.removexattr(c.caller, inode, name));
}

Reply doFallocate(Call c) {
  HandleId handle{c.body.u64()};
  uint32_t mode = c.body.u32();
  uint64_t offset = c.body.u64();
  uint64_t length = c.body.u64();
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.fallocate(c.caller, handle, mode, offset, length));
}

Reply doLseek(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t offset = c.body.u64();
  uint32_t whence = c.body.u32();
  FP_REQUIRE_DECODED(c);
  uint64_t result = 0;
  Errno error = c.fs.lseek(c.caller, handle, offset, whence, result);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { w.u64(result); });
}

Reply doCopyFileRange(Call c) {
  HandleId in{c.body.u64()};
  uint64_t inOffset = c.body.u64();
  HandleId out{c.body.u64()};
  uint64_t outOffset = c.body.u64();
  uint64_t length = c.body.u64();
  uint32_t flags = c.body.u32();
  FP_REQUIRE_DECODED(c);
  uint64_t copied = 0;
  Errno error = c.fs.copyFileRange(c.caller, in, inOffset, out, outOffset, length, flags, copied);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { w.u64(copied); });
}

Reply doGetlk(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t owner = c.body.u64();
  LockRange lock = decodeLock(c.body);
  FP_REQUIRE_DECODED(c);
  Errno error = c.fs.getlk(c.caller, handle, owner, lock);
  if (error) return errorReply(error);
  return okReply([&](WireWriter& w) { encodeLock(w, lock); });
}

Reply doSetlk(Call c) {
  HandleId handle{c.body.u64()};
  uint64_t owner = c.body.u64();
  LockRange lock = decodeLock(c.body);
  uint32_t flags = c.body.u32();
  FP_REQUIRE_DECODED(c);
  if (flags & ~kLockWait) return errorReply(EINVAL);
  return statusReply(
      c.fs.setlk(c.caller, handle, owner, lock, (flags & kLockWait) != 0, c.cancellation));
}

Reply doFlock(Call c) {
  HandleId handle{c.body.u64()};
  uint32_t operation = c.body.u32();
  FP_REQUIRE_DECODED(c);
  return statusReply(c.fs.flock(c.caller, handle, operation, c.cancellation));
}

#undef FP_REQUIRE_DECODED
#undef FP_REQUIRE_NAME

// Whether a request may change the host filesystem, decided before it is decoded further.
enum class Effect { kReadsOnly, kMutates, kDependsOnFlags };

struct Operation {
  Opcode opcode;
  Reply (*perform)(Call);
  Effect effect;
};

// Every request the server answers. Anything not listed gets ENOSYS.
constexpr Operation kOperations[] = {
    {Opcode::kLookup, doLookup, Effect::kReadsOnly},
    {Opcode::kForget, doForget, Effect::kReadsOnly},
    {Opcode::kGetattr, doGetattr, Effect::kReadsOnly},
    {Opcode::kSetattr, doSetattr, Effect::kMutates},
    {Opcode::kReadlink, doReadlink, Effect::kReadsOnly},
    {Opcode::kMknod, doMknod, Effect::kMutates},
    {Opcode::kMkdir, doMkdir, Effect::kMutates},
    {Opcode::kUnlink, doUnlink, Effect::kMutates},
    {Opcode::kRmdir, doRmdir, Effect::kMutates},
    {Opcode::kSymlink, doSymlink, Effect::kMutates},
    {Opcode::kRename, doRename, Effect::kMutates},
    {Opcode::kLink, doLink, Effect::kMutates},
    {Opcode::kOpen, doOpen, Effect::kDependsOnFlags},
    {Opcode::kRead, doRead, Effect::kReadsOnly},
    {Opcode::kWrite, doWrite, Effect::kMutates},
    {Opcode::kFlush, doFlush, Effect::kReadsOnly},
    {Opcode::kRelease, doRelease, Effect::kReadsOnly},
    {Opcode::kFsync, doFsync, Effect::kReadsOnly},
    {Opcode::kOpendir, doOpendir, Effect::kReadsOnly},
    {Opcode::kReaddir, doReaddir, Effect::kReadsOnly},
    {Opcode::kReleasedir, doReleasedir, Effect::kReadsOnly},
    {Opcode::kFsyncdir, doFsyncdir, Effect::kReadsOnly},
    {Opcode::kStatfs, doStatfs, Effect::kReadsOnly},
    {Opcode::kCreate, doCreate, Effect::kMutates},
    {Opcode::kAccess, doAccess, Effect::kReadsOnly},
    {Opcode::kSetxattr, doSetxattr, Effect::kMutates},
    {Opcode::kGetxattr, doGetxattr, Effect::kReadsOnly},
    {Opcode::kListxattr, doListxattr, Effect::kReadsOnly},
    {Opcode::kRemovexattr, doRemovexattr, Effect::kMutates},
    {Opcode::kFallocate, doFallocate, Effect::kMutates},
    {Opcode::kLseek, doLseek, Effect::kReadsOnly},
    {Opcode::kCopyFileRange, doCopyFileRange, Effect::kMutates},
    {Opcode::kReaddirplus, doReaddirplus, Effect::kReadsOnly},
    // Locks change nothing on disk: a read-only server still arbitrates them.
    {Opcode::kGetlk, doGetlk, Effect::kReadsOnly},
    {Opcode::kSetlk, doSetlk, Effect::kReadsOnly},
    {Opcode::kFlock, doFlock, Effect::kReadsOnly},
};

const Operation* findOperation(uint16_t opcode) {
  for (const auto& op : kOperations) {
    if (static_cast<uint16_t>(op.opcode) == opcode) return &op;
  }
  return nullptr;
}

// For kDependsOnFlags (open): whether the open flags (after the inode id) ask to modify.
bool openFlagsMutate(WireReader body) {
  body.u64();
  uint32_t flags = body.u32();
  return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

}  // namespace

bool isBlockingRequest(const Frame& frame) {
  WireReader body(frame.payload);
  decodeCredentials(body);
  switch (static_cast<Opcode>(frame.header.opcode)) {
    case Opcode::kSetlk: {
      body.u64();  // handle
      body.u64();  // owner
      decodeLock(body);
      uint32_t flags = body.u32();
      return !body.failed() && (flags & kLockWait);
    }
    case Opcode::kFlock: {
      body.u64();  // handle
      uint32_t operation = body.u32();
      return !body.failed() && !(operation & LOCK_NB);
    }
    default:
      return false;
  }
}

bool isQuickRequest(const Frame& frame) {
  switch (static_cast<Opcode>(frame.header.opcode)) {
    case Opcode::kLookup:
    case Opcode::kGetattr:
    case Opcode::kReadlink:
    case Opcode::kOpendir:
    case Opcode::kStatfs:
    case Opcode::kAccess:
    case Opcode::kGetxattr:
    case Opcode::kListxattr:
    case Opcode::kLseek:
    case Opcode::kGetlk:
      return true;
    default:
      return false;
  }
}

std::optional<uint64_t> decodeInterrupt(const Frame& frame) {
  if (frame.header.opcode != static_cast<uint16_t>(Opcode::kInterrupt)) return std::nullopt;
  WireReader body(frame.payload);
  decodeCredentials(body);
  uint64_t target = body.u64();
  if (!body.finish()) return std::nullopt;
  return target;
}

std::optional<std::vector<uint8_t>> RequestHandler::handle(const Frame& frame,
                                                           Cancellation* cancellation) {
  const Operation* op = findOperation(frame.header.opcode);
  if (!op) return errorReply(ENOSYS);
  WireReader body(frame.payload);
  Credentials caller = decodeCredentials(body);
  if (body.failed()) return op->opcode == Opcode::kForget ? Reply() : errorReply(EPROTO);
  if (readOnly_) {
    bool mutates = op->effect == Effect::kMutates ||
                   (op->effect == Effect::kDependsOnFlags && openFlagsMutate(body));
    if (mutates) return errorReply(EROFS);
  }
  return op->perform(Call{fs_, caller, body, readOnly_, cancellation});
}

}  // namespace fcvm::fusepipe
