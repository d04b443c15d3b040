#define FUSE_USE_VERSION 314
#include "fuse-pipe/fuse_client.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>

#include "fuse-pipe/flush_filter.h"

namespace fcvm::fusepipe {

namespace {

struct Client {
  ClientConnection& connection;
  double timeout;
  FlushFilter flushFilter;
};

Client& clientOf(fuse_req_t req) { return *static_cast<Client*>(fuse_req_userdata(req)); }

// The calling process's credentials; supplementary groups come from /proc in the client's
// namespace (libfuse reads them), so only ask for them where permission checks happen.
Credentials callerOf(fuse_req_t req, bool withGroups = true) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  Credentials c{.uid = ctx->uid,
                .gid = ctx->gid,
                .pid = static_cast<uint32_t>(ctx->pid),
                .umask = ctx->umask,
                .groups = {}};
  // Reading them costs a read of /proc/PID/task/TID/status per request. A root caller is served
  // with root's powers, for which groups make no difference, so it goes without.
  if (withGroups && ctx->uid != 0) {
    std::vector<gid_t> groups(32);
    int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
    if (n > static_cast<int>(groups.size()) && n <= static_cast<int>(kMaxGroups)) {
      groups.resize(static_cast<size_t>(n));
      n = fuse_req_getgroups(req, n, groups.data());
    }
    if (n > 0 && n <= static_cast<int>(groups.size())) {
      c.groups.assign(groups.begin(), groups.begin() + n);
    }
  }
  return c;
}

// A request payload: the caller's credentials, then the opcode's fields.
WireWriter requestFor(fuse_req_t req, bool withGroups = true) {
  WireWriter w;
  encodeCredentials(w, callerOf(req, withGroups));
  return w;
}

struct stat toStat(const Attr& a) {
  struct stat st {};
  st.st_ino = a.ino;
  st.st_size = static_cast<off_t>(a.size);
  st.st_blocks = static_cast<blkcnt_t>(a.blocks);
  st.st_atim = {static_cast<time_t>(a.atimeSec), static_cast<long>(a.atimeNsec)};
  st.st_mtim = {static_cast<time_t>(a.mtimeSec), static_cast<long>(a.mtimeNsec)};
  st.st_ctim = {static_cast<time_t>(a.ctimeSec), static_cast<long>(a.ctimeNsec)};
  st.st_mode = a.mode;
  st.st_nlink = a.nlink;
  st.st_uid = a.uid;
  st.st_gid = a.gid;
  st.st_rdev = a.rdev;
  st.st_blksize = a.blksize;
  return st;
}

std::vector<uint8_t> forgetPayload(InodeId inode, uint64_t count) {
  WireWriter w;
  encodeCredentials(w, Credentials{});
  w.u64(inode.value);
  w.u64(count);
  return w.take();
}

std::vector<uint8_t> releasePayload(HandleId handle) {
  WireWriter w;
  encodeCredentials(w, Credentials{});
  w.u64(handle.value);
  return w.take();
}

// Clean-up from completions (receiver thread): deferred, never written from there.
void deferForget(ClientConnection& connection, InodeId inode) {
  connection.defer(Opcode::kForget, forgetPayload(inode, 1));
}
void deferRelease(Client& client, Opcode opcode, HandleId handle) {
  // Directory handles are numbered apart from file handles.
  if (opcode == Opcode::kRelease) client.flushFilter.released(handle.value);
  client.connection.defer(opcode, releasePayload(handle));
}

// A handle the client may write through: its closes always reach the server (see FlushFilter).
bool opensForWriting(const fuse_file_info& info) { return (info.flags & O_ACCMODE) != O_RDONLY; }

// Sends the request; on success `onResult` decodes the result and answers the kernel; errors
// (from the server, or a malformed result) are answered with fuse_reply_err.
template <typename OnResult>
void forward(fuse_req_t req, Opcode opcode, const WireWriter& payload, OnResult onResult) {
  clientOf(req).connection.call(opcode, payload.buffer(),
                                [req, onResult](Errno error, WireReader& result) mutable {
                                  if (error) {
                                    fuse_reply_err(req, error);
                                  } else {
                                    onResult(result);
                                  }
                                });
}

// The completion of a request whose successful reply carries nothing: answers the kernel with the
// status, after `onDone` (optional) saw it.
ClientConnection::Completion statusCompletion(fuse_req_t req,
                                              std::function<void(Errno)> onDone = {}) {
  return [req, onDone = std::move(onDone)](Errno error, WireReader& result) {
    if (!error && !result.finish()) error = EIO;
    if (onDone) onDone(error);
    fuse_reply_err(req, error);
  };
}

void forwardStatus(fuse_req_t req, Opcode opcode, const WireWriter& payload,
                   std::function<void(Errno)> onDone = {}) {
  clientOf(req).connection.call(opcode, payload.buffer(), statusCompletion(req, std::move(onDone)));
}

// Requests answered with an Entry (lookup, mkdir, ...).
void forwardEntry(fuse_req_t req, Opcode opcode, const WireWriter& payload) {
  forward(req, opcode, payload, [req](WireReader& result) {
    Entry entry = decodeEntry(result);
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    Client& client = clientOf(req);
    fuse_entry_param e{};
    e.ino = entry.inode.value;
    e.generation = entry.generation;
    e.attr = toStat(entry.attr);
    e.attr_timeout = client.timeout;
    e.entry_timeout = client.timeout;
    if (fuse_reply_entry(req, &e) != 0) deferForget(client.connection, entry.inode);
  });
}

void forwardAttr(fuse_req_t req, Opcode opcode, const WireWriter& payload) {
  forward(req, opcode, payload, [req](WireReader& result) {
    Attr attr = decodeAttr(result);
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    struct stat st = toStat(attr);
    fuse_reply_attr(req, &st, clientOf(req).timeout);
  });
}

void putOptionalHandle(WireWriter& w, const fuse_file_info* fi) {
  w.u8(fi ? 1 : 0);
  w.u64(fi ? fi->fh : 0);
}

// ---- The low-level operations, in fuse_lowlevel_ops order. ----

void onInit(void* userdata, fuse_conn_info* conn) {
  // The server applies the caller's umask itself (per thread), so host default ACLs work.
  if (conn->capable & FUSE_CAP_DONT_MASK) conn->want |= FUSE_CAP_DONT_MASK;
  // Locks are the server's, so that they hold against processes on the host too.
  if (conn->capable & FUSE_CAP_POSIX_LOCKS) conn->want |= FUSE_CAP_POSIX_LOCKS;
  if (conn->capable & FUSE_CAP_FLOCK_LOCKS) conn->want |= FUSE_CAP_FLOCK_LOCKS;
}

void onLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  forwardEntry(req, Opcode::kLookup, w);
}

void onForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  clientOf(req).connection.send(Opcode::kForget, forgetPayload(InodeId{ino}, nlookup));
  fuse_reply_none(req);
}

void onForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) {
    clientOf(req).connection.send(Opcode::kForget,
                                  forgetPayload(InodeId{forgets[i].ino}, forgets[i].nlookup));
  }
  fuse_reply_none(req);
}

void onGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(ino);
  putOptionalHandle(w, fi);
  forwardAttr(req, Opcode::kGetattr, w);
}

void onSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int toSet, fuse_file_info* fi) {
  uint32_t fields = 0;
  if (toSet & FUSE_SET_ATTR_MODE) fields |= kSetMode;
  if (toSet & FUSE_SET_ATTR_UID) fields |= kSetUid;
  if (toSet & FUSE_SET_ATTR_GID) fields |= kSetGid;
  if (toSet & FUSE_SET_ATTR_SIZE) fields |= kSetSize;
  if (toSet & FUSE_SET_ATTR_ATIME) fields |= kSetAtime;
  if (toSet & FUSE_SET_ATTR_MTIME) fields |= kSetMtime;
  if (toSet & FUSE_SET_ATTR_ATIME_NOW) fields |= kSetAtimeNow;
  if (toSet & FUSE_SET_ATTR_MTIME_NOW) fields |= kSetMtimeNow;
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.u32(fields);
  putOptionalHandle(w, fi);
  w.u32(attr->st_mode);
  w.u32(attr->st_uid);
  w.u32(attr->st_gid);
  w.u64(static_cast<uint64_t>(attr->st_size));
  w.i64(attr->st_atim.tv_sec);
  w.u32(static_cast<uint32_t>(attr->st_atim.tv_nsec));
  w.i64(attr->st_mtim.tv_sec);
  w.u32(static_cast<uint32_t>(attr->st_mtim.tv_nsec));
  forwardAttr(req, Opcode::kSetattr, w);
}

void onReadlink(fuse_req_t req, fuse_ino_t ino) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(ino);
  forward(req, Opcode::kReadlink, w, [req](WireReader& result) {
    std::string target(result.string(kMaxPathLength));
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    fuse_reply_readlink(req, target.c_str());
  });
}

void onMknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  w.u32(mode);
  w.u64(rdev);
  forwardEntry(req, Opcode::kMknod, w);
}

void onMkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  w.u32(mode);
  forwardEntry(req, Opcode::kMkdir, w);
}

void onUnlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  forwardStatus(req, Opcode::kUnlink, w);
}

void onRmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  forwardStatus(req, Opcode::kRmdir, w);
}

void onSymlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  w.string(target);
  forwardEntry(req, Opcode::kSymlink, w);
}

void onRename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newParent,
              const char* newName, unsigned int flags) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  w.u64(newParent);
  w.string(newName);
  w.u32(flags);
  forwardStatus(req, Opcode::kRename, w);
}

void onLink(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newParent, const char* newName) {
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.u64(newParent);
  w.string(newName);
  forwardEntry(req, Opcode::kLink, w);
}

void onOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.u32(static_cast<uint32_t>(fi->flags));
  fuse_file_info info = *fi;
  forward(req, Opcode::kOpen, w, [req, info](WireReader& result) mutable {
    HandleId handle{result.u64()};
    uint32_t flags = result.u32();
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    info.fh = handle.value;
    // The server saw the file unchanged since its previous open: what the kernel cached from it
    // is still the file's data (see the README's Caching).
    info.keep_cache = (flags & kOpenKeepCache) ? 1 : 0;
    Client& client = clientOf(req);
    if (opensForWriting(info)) client.flushFilter.writerOpened(handle.value);
    if (fuse_reply_open(req, &info) != 0) deferRelease(client, Opcode::kRelease, handle);
  });
}

void onRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u64(static_cast<uint64_t>(off));
  w.u32(static_cast<uint32_t>(std::min<size_t>(size, kMaxIoSize)));
  forward(req, Opcode::kRead, w, [req](WireReader& result) {
    auto data = result.bytes(kMaxIoSize);
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    fuse_reply_buf(req, reinterpret_cast<const char*>(data.data()), data.size());
  });
}

void onWrite(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             fuse_file_info* fi) {
  if (size > kMaxIoSize) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u64(static_cast<uint64_t>(off));
  w.bytes({reinterpret_cast<const uint8_t*>(buf), size});
  forward(req, Opcode::kWrite, w, [req](WireReader& result) {
    uint32_t written = result.u32();
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    fuse_reply_write(req, written);
  });
}

void onFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Client& client = clientOf(req);
  const FlushFilter::Owner owner{ino, fi->lock_owner};
  const FlushFilter::Ticket ticket = client.flushFilter.flushStarting(fi->fh, owner);
  if (!ticket.send) {
    fuse_reply_err(req, 0);
    return;
  }
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u64(fi->lock_owner);  // whose POSIX locks on the file this close releases
  forwardStatus(req, Opcode::kFlush, w, [&client, owner, ticket](Errno error) {
    if (!error) client.flushFilter.flushDone(owner, ticket);
  });
}

// The kernel does not wait for a release (it sends it in the background), and nothing about it
// can fail that the closing process could learn: sent without a reply and answered at once.
void sendRelease(fuse_req_t req, Opcode opcode, fuse_file_info* fi) {
  Client& client = clientOf(req);
  // Directory handles are numbered apart from file handles.
  if (opcode == Opcode::kRelease) client.flushFilter.released(fi->fh);
  client.connection.send(opcode, releasePayload(HandleId{fi->fh}));
  fuse_reply_err(req, 0);
}

void onRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  sendRelease(req, Opcode::kRelease, fi);
}

void onFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u8(datasync ? 1 : 0);
  forwardStatus(req, Opcode::kFsync, w);
}

void onOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  WireWriter w = requestFor(req);
  w.u64(ino);
  fuse_file_info info = *fi;
  forward(req, Opcode::kOpendir, w, [req, info](WireReader& result) mutable {
    HandleId handle{result.u64()};
    uint32_t flags = result.u32();
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    info.fh = handle.value;
    // The kernel caches the listing; it keeps it across opendirs only while the server saw the
    // directory unchanged (and drops it itself when the client changes the directory).
    info.cache_readdir = 1;
    info.keep_cache = (flags & kOpenKeepCache) ? 1 : 0;
    if (fuse_reply_open(req, &info) != 0) deferRelease(clientOf(req), Opcode::kReleasedir, handle);
  });
}

void onReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  size = std::min<size_t>(size, kMaxIoSize);
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u64(static_cast<uint64_t>(off));
  w.u32(static_cast<uint32_t>(size));
  forward(req, Opcode::kReaddir, w, [req, size](WireReader& result) {
    uint32_t count = result.u32();
    std::vector<DirEntry> entries;
    for (uint32_t i = 0; i < count && !result.failed(); ++i) {
      entries.push_back(decodeDirEntry(result));
    }
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    std::vector<char> buffer(size);
    size_t used = 0;
    for (const auto& e : entries) {
      struct stat st {};
      st.st_ino = e.ino;
      st.st_mode = e.type << 12;
      size_t need = fuse_add_direntry(req, buffer.data() + used, size - used, e.name.c_str(), &st,
                                      static_cast<off_t>(e.offset));
      if (need > size - used) break;
      used += need;
    }
    fuse_reply_buf(req, buffer.data(), used);
  });
}

void onReleasedir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  sendRelease(req, Opcode::kReleasedir, fi);
}

void onFsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u8(datasync ? 1 : 0);
  forwardStatus(req, Opcode::kFsyncdir, w);
}

void onStatfs(fuse_req_t req, fuse_ino_t ino) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(ino);
  forward(req, Opcode::kStatfs, w, [req](WireReader& result) {
    StatfsInfo info = decodeStatfs(result);
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    struct statvfs st {};
    st.f_bsize = info.bsize;
    st.f_frsize = info.frsize;
    st.f_blocks = info.blocks;
    st.f_bfree = info.bfree;
    st.f_bavail = info.bavail;
    st.f_files = info.files;
    st.f_ffree = info.ffree;
    st.f_favail = info.favail;
    st.f_namemax = info.namemax;
    st.f_flag = info.flags;
    fuse_reply_statfs(req, &st);
  });
}

void onAccess(fuse_req_t req, fuse_ino_t ino, int mask) {
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.u32(static_cast<uint32_t>(mask));
  forwardStatus(req, Opcode::kAccess, w);
}

void onCreate(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              fuse_file_info* fi) {
  WireWriter w = requestFor(req);
  w.u64(parent);
  w.string(name);
  w.u32(mode);
  w.u32(static_cast<uint32_t>(fi->flags));
  fuse_file_info info = *fi;
  forward(req, Opcode::kCreate, w, [req, info](WireReader& result) mutable {
    Entry entry = decodeEntry(result);
    HandleId handle{result.u64()};
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    Client& client = clientOf(req);
    fuse_entry_param e{};
    e.ino = entry.inode.value;
    e.generation = entry.generation;
    e.attr = toStat(entry.attr);
    e.attr_timeout = client.timeout;
    e.entry_timeout = client.timeout;
    info.fh = handle.value;
    if (opensForWriting(info)) client.flushFilter.writerOpened(handle.value);
    if (fuse_reply_create(req, &e, &info) != 0) {
      deferRelease(client, Opcode::kRelease, handle);
      deferForget(client.connection, entry.inode);
    }
  });
}

void onReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  size = std::min<size_t>(size, kMaxIoSize);
  WireWriter w = requestFor(req);
  w.u64(fi->fh);
  w.u64(static_cast<uint64_t>(off));
  w.u32(static_cast<uint32_t>(size));
  forward(req, Opcode::kReaddirplus, w, [req, size](WireReader& result) {
    Client& client = clientOf(req);
    uint32_t count = result.u32();
    std::vector<DirEntryPlus> entries;
    for (uint32_t i = 0; i < count && !result.failed(); ++i) {
      entries.push_back(decodeDirEntryPlus(result));
    }
    if (!result.finish()) {
      // Whatever was decoded counted as lookups on the server: give them back.
      for (const auto& e : entries) {
        if (e.entry) deferForget(client.connection, e.entry->inode);
      }
      fuse_reply_err(req, EIO);
      return;
    }
    std::vector<char> buffer(size);
    size_t used = 0;
    size_t packed = 0;
    for (; packed < entries.size(); ++packed) {
      const DirEntryPlus& d = entries[packed];
      fuse_entry_param e{};
      if (d.entry) {
        e.ino = d.entry->inode.value;
        e.generation = d.entry->generation;
        e.attr = toStat(d.entry->attr);
        e.attr_timeout = client.timeout;
        e.entry_timeout = client.timeout;
      } else {
        e.attr.st_ino = d.dirent.ino;  // ino 0: the kernel records no lookup for it
        e.attr.st_mode = d.dirent.type << 12;
      }
      size_t need =
          fuse_add_direntry_plus(req, buffer.data() + used, size - used, d.dirent.name.c_str(), &e,
                                 static_cast<off_t>(d.dirent.offset));
      if (need > size - used) break;
      used += need;
    }
    for (size_t i = packed; i < entries.size(); ++i) {
      if (entries[i].entry) deferForget(client.connection, entries[i].entry->inode);
    }
    fuse_reply_buf(req, buffer.data(), used);
  });
}

void onSetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags) {
  if (size > kMaxXattrSize) {
    fuse_reply_err(req, E2BIG);
    return;
  }
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.string(name);
  w.bytes({reinterpret_cast<const uint8_t*>(value), size});
  w.u32(static_cast<uint32_t>(flags));
  forwardStatus(req, Opcode::kSetxattr, w);
}

// getxattr and listxattr: with size 0 the caller wants the size, else the bytes.
void forwardXattr(fuse_req_t req, Opcode opcode, const WireWriter& w, size_t size) {
  forward(req, opcode, w, [req, size](WireReader& result) {
    uint32_t needed = result.u32();
    auto data = result.bytes(kMaxXattrSize);
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    if (size == 0) {
      fuse_reply_xattr(req, needed);
    } else if (data.size() > size) {
      fuse_reply_err(req, ERANGE);
    } else {
      fuse_reply_buf(req, reinterpret_cast<const char*>(data.data()), data.size());
    }
  });
}

void onGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (!isServedXattrName(name)) {  // the server's answer too; spares a round trip per write
    fuse_reply_err(req, ENODATA);
    return;
  }
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.string(name);
  w.u32(static_cast<uint32_t>(std::min<size_t>(size, kMaxXattrSize)));
  forwardXattr(req, Opcode::kGetxattr, w, size);
}

void onListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.u32(static_cast<uint32_t>(std::min<size_t>(size, kMaxXattrSize)));
  forwardXattr(req, Opcode::kListxattr, w, size);
}

void onRemovexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  WireWriter w = requestFor(req);
  w.u64(ino);
  w.string(name);
  forwardStatus(req, Opcode::kRemovexattr, w);
}

void onFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                 fuse_file_info* fi) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u32(static_cast<uint32_t>(mode));
  w.u64(static_cast<uint64_t>(offset));
  w.u64(static_cast<uint64_t>(length));
  forwardStatus(req, Opcode::kFallocate, w);
}

void onLseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, fuse_file_info* fi) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u64(static_cast<uint64_t>(off));
  w.u32(static_cast<uint32_t>(whence));
  forward(req, Opcode::kLseek, w, [req](WireReader& result) {
    uint64_t offset = result.u64();
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    fuse_reply_lseek(req, static_cast<off_t>(offset));
  });
}

void onCopyFileRange(fuse_req_t req, fuse_ino_t inoIn, off_t offIn, fuse_file_info* fiIn,
                     fuse_ino_t inoOut, off_t offOut, fuse_file_info* fiOut, size_t len,
                     int flags) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fiIn->fh);
  w.u64(static_cast<uint64_t>(offIn));
  w.u64(fiOut->fh);
  w.u64(static_cast<uint64_t>(offOut));
  w.u64(len);
  w.u32(static_cast<uint32_t>(flags));
  forward(req, Opcode::kCopyFileRange, w, [req](WireReader& result) {
    uint64_t copied = result.u64();
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    fuse_reply_write(req, copied);
  });
}

// libfuse calls this (on a reader thread) when the kernel interrupts `req`, for example because
// the process waiting for a lock got a signal. `data` is the request's wire id, not a pointer:
// libfuse may call this while the request's reply is being sent, so nothing it points to
// could be known to be alive.
void onInterrupt(fuse_req_t req, void* data) {
  WireWriter w;
  encodeCredentials(w, Credentials{});
  w.u64(reinterpret_cast<uintptr_t>(data));
  clientOf(req).connection.send(Opcode::kInterrupt, w.buffer());
}

// Forwards a request that may wait on the server for as long as it takes (a lock wait) so that
// an interrupt of it in the client cancels it on the server. `onDone` as for forwardStatus.
void forwardInterruptible(fuse_req_t req, Opcode opcode, const WireWriter& payload,
                          std::function<void(Errno)> onDone = {}) {
  ClientConnection& connection = clientOf(req).connection;
  const uint64_t id = connection.reserveRequestId();
  // The id travels as libfuse's opaque pointer; it is never dereferenced.
  fuse_req_interrupt_func(
      req, onInterrupt,
      reinterpret_cast<void*>(static_cast<uintptr_t>(id)));  // NOLINT(performance-no-int-to-ptr)
  if (fuse_req_interrupted(req)) {  // before it was sent: the server never needs to know
    if (onDone) onDone(EINTR);
    fuse_reply_err(req, EINTR);
    return;
  }
  connection.call(opcode, payload.buffer(), statusCompletion(req, std::move(onDone)), id);
}

void putLock(WireWriter& w, fuse_file_info* fi, const struct flock* lock) {
  w.u64(fi->fh);
  w.u64(fi->lock_owner);
  encodeLock(w, LockRange{.type = static_cast<uint32_t>(lock->l_type),
                          .start = static_cast<uint64_t>(lock->l_start),
                          .length = static_cast<uint64_t>(lock->l_len),
                          .pid = static_cast<uint32_t>(lock->l_pid)});
}

void onGetlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  putLock(w, fi, lock);
  forward(req, Opcode::kGetlk, w, [req](WireReader& result) {
    LockRange conflict = decodeLock(result);
    if (!result.finish()) {
      fuse_reply_err(req, EIO);
      return;
    }
    struct flock out {};
    out.l_type = static_cast<short>(conflict.type);
    out.l_whence = SEEK_SET;
    out.l_start = static_cast<off_t>(conflict.start);
    out.l_len = static_cast<off_t>(conflict.length);
    out.l_pid = static_cast<pid_t>(conflict.pid);
    fuse_reply_lock(req, &out);
  });
}

void onSetlk(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, struct flock* lock, int sleep) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  putLock(w, fi, lock);
  w.u32(sleep ? kLockWait : 0);
  // Recorded before it is sent, so that this owner's closes reach the server from now on.
  std::function<void(Errno)> onDone;
  if (lock->l_type != F_UNLCK) {
    FlushFilter& filter = clientOf(req).flushFilter;
    const FlushFilter::Owner owner{ino, fi->lock_owner};
    filter.lockSent(owner);
    onDone = [&filter, owner](Errno) { filter.lockDone(owner); };
  }
  if (sleep) {
    forwardInterruptible(req, Opcode::kSetlk, w, std::move(onDone));
  } else {
    forwardStatus(req, Opcode::kSetlk, w, std::move(onDone));
  }
}

void onFlock(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi, int op) {
  WireWriter w = requestFor(req, /*withGroups=*/false);
  w.u64(fi->fh);
  w.u32(static_cast<uint32_t>(op));
  if (op & LOCK_NB) {
    forwardStatus(req, Opcode::kFlock, w);
  } else {
    forwardInterruptible(req, Opcode::kFlock, w);
  }
}

fuse_lowlevel_ops makeOperations() {
  fuse_lowlevel_ops ops{};
  ops.init = onInit;
  ops.lookup = onLookup;
  ops.forget = onForget;
  ops.forget_multi = onForgetMulti;
  ops.getattr = onGetattr;
  ops.setattr = onSetattr;
  ops.readlink = onReadlink;
  ops.mknod = onMknod;
  ops.mkdir = onMkdir;
  ops.unlink = onUnlink;
  ops.rmdir = onRmdir;
  ops.symlink = onSymlink;
  ops.rename = onRename;
  ops.link = onLink;
  ops.open = onOpen;
  ops.read = onRead;
  ops.write = onWrite;
  ops.flush = onFlush;
  ops.release = onRelease;
  ops.fsync = onFsync;
  ops.opendir = onOpendir;
  ops.readdir = onReaddir;
  ops.releasedir = onReleasedir;
  ops.fsyncdir = onFsyncdir;
  ops.statfs = onStatfs;
  ops.access = onAccess;
  ops.create = onCreate;
  ops.readdirplus = onReaddirplus;
  ops.setxattr = onSetxattr;
  ops.getxattr = onGetxattr;
  ops.listxattr = onListxattr;
  ops.removexattr = onRemovexattr;
  ops.fallocate = onFallocate;
  ops.lseek = onLseek;
  ops.copy_file_range = onCopyFileRange;
  ops.getlk = onGetlk;
  ops.setlk = onSetlk;
  ops.flock = onFlock;
  return ops;
}

// RAII owners of the libfuse objects, one cleanup action each.
class ArgsOwner {
 public:
  explicit ArgsOwner(fuse_args* args) : args_(args) {}
  ~ArgsOwner() { fuse_opt_free_args(args_); }
  ArgsOwner(const ArgsOwner&) = delete;
  ArgsOwner& operator=(const ArgsOwner&) = delete;

 private:
  fuse_args* args_;
};
struct SessionDeleter {
  void operator()(fuse_session* se) const { fuse_session_destroy(se); }
};
struct LoopConfigDeleter {
  void operator()(fuse_loop_config* c) const { fuse_loop_cfg_destroy(c); }
};
class Mounted {
 public:
  explicit Mounted(fuse_session* se) : se_(se) {}
  ~Mounted() { fuse_session_unmount(se_); }
  Mounted(const Mounted&) = delete;
  Mounted& operator=(const Mounted&) = delete;

 private:
  fuse_session* se_;
};
class SignalHandlers {
 public:
  explicit SignalHandlers(fuse_session* se) : se_(se) {
    if (fuse_set_signal_handlers(se_) != 0) throw std::runtime_error("fuse_set_signal_handlers");
  }
  ~SignalHandlers() { fuse_remove_signal_handlers(se_); }
  SignalHandlers(const SignalHandlers&) = delete;
  SignalHandlers& operator=(const SignalHandlers&) = delete;

 private:
  fuse_session* se_;
};

}  // namespace

void runMount(ClientConnection& connection, const MountOptions& options) {
  Client client{connection, options.cacheTimeoutSeconds, {}};
  std::string fuseOptions = "fsname=fuse-pipe,subtype=fuse-pipe";
  for (const auto& o : options.fuseOptions) fuseOptions += "," + o;
  std::vector<std::string> argvStrings = {"fuse-pipe", "-o", fuseOptions};
  std::vector<char*> argv;
  argv.reserve(argvStrings.size());
  for (auto& s : argvStrings) argv.push_back(s.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  ArgsOwner argsOwner(&args);  // libfuse may replace argv with copies it allocated

  fuse_lowlevel_ops ops = makeOperations();
  std::unique_ptr<fuse_session, SessionDeleter> se(
      fuse_session_new(&args, &ops, sizeof ops, &client));
  if (!se)
    throw std::runtime_error("fuse-pipe: cannot create a FUSE session with options " + fuseOptions);
  SignalHandlers signals(se.get());
  if (fuse_session_mount(se.get(), options.mountpoint.c_str()) != 0) {
    throw std::runtime_error("fuse-pipe: cannot mount on " + options.mountpoint);
  }
  Mounted mounted(se.get());
  spdlog::info("fuse-pipe: mounted on {}", options.mountpoint);
  if (options.readyFd >= 0) {
    (void)!::write(options.readyFd, "1", 1);
    ::close(options.readyFd);
  }

  std::unique_ptr<fuse_loop_config, LoopConfigDeleter> config(fuse_loop_cfg_create());
  fuse_loop_cfg_set_clone_fd(config.get(), 1);
  fuse_loop_cfg_set_max_threads(config.get(), std::max(1u, options.readers));
  fuse_loop_cfg_set_idle_threads(config.get(), std::max(1u, options.readers));
  int rc = fuse_session_loop_mt(se.get(), config.get());
  // libfuse returns the number of the signal that ended the loop, or a negative errno.
  if (rc < 0) spdlog::warn("fuse-pipe: FUSE loop failed: {}", std::strerror(-rc));
  // Answer what is still in flight while the session exists; afterwards nothing touches it.
  connection.close();
  spdlog::info("fuse-pipe: unmounting {}", options.mountpoint);
}

}  // namespace fcvm::fusepipe
