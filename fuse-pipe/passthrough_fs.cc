#include "fuse-pipe/passthrough_fs.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "fuse-pipe/credentials.h"
#include "fuse-pipe/protocol.h"

namespace fcvm::fusepipe {

namespace {

constexpr uint64_t kUnknownPosition = std::numeric_limits<uint64_t>::max();

// Open flags a client may ask for; anything else (O_PATH, O_TMPFILE, O_CREAT on open, ...) is
// dropped.
constexpr uint32_t kAllowedOpenFlags = O_ACCMODE | O_APPEND | O_TRUNC | O_DIRECT | O_DSYNC |
                                       O_SYNC | O_NONBLOCK | O_NOATIME | O_LARGEFILE;

// The path through which the process reaches what an fd refers to; used to reopen O_PATH fds.
std::string procPath(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

// openat2 beneath dirFd, never following symlinks; name is one path component.
int openBeneath(int dirFd, const std::string& name, uint64_t flags, uint32_t mode) {
  open_how how{};
  how.flags = flags | O_CLOEXEC | O_NOFOLLOW;
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd;
  do {
    fd = ::syscall(SYS_openat2, dirFd, name.c_str(), &how, sizeof how);
  } while (fd < 0 && errno == EINTR);
  return static_cast<int>(fd);
}

// Why a node of type `type` (S_IFMT bits) is not opened as a file, or 0. Device nodes in the tree
// are not a way into the host's devices. The client's kernel opens fifos and sockets itself, never
// through FUSE; opening a fifo here would block a server thread until the host opened its other
// end.
Errno refusedFileType(uint32_t type) {
  switch (type) {
    case S_IFLNK:
      return ELOOP;
    case S_IFDIR:
      return EISDIR;
    case S_IFCHR:
    case S_IFBLK:
      return EACCES;
    case S_IFIFO:
    case S_IFSOCK:
      return ENXIO;
    default:
      return 0;
  }
}

Attr toAttr(const struct stat& st) {
  return Attr{
      .ino = st.st_ino,
      .size = static_cast<uint64_t>(st.st_size),
      .blocks = static_cast<uint64_t>(st.st_blocks),
      .atimeSec = st.st_atim.tv_sec,
      .mtimeSec = st.st_mtim.tv_sec,
      .ctimeSec = st.st_ctim.tv_sec,
      .atimeNsec = static_cast<uint32_t>(st.st_atim.tv_nsec),
      .mtimeNsec = static_cast<uint32_t>(st.st_mtim.tv_nsec),
      .ctimeNsec = static_cast<uint32_t>(st.st_ctim.tv_nsec),
      .mode = st.st_mode,
      .nlink = static_cast<uint32_t>(st.st_nlink),
      .uid = st.st_uid,
      .gid = st.st_gid,
      .rdev = static_cast<uint32_t>(st.st_rdev),
      .blksize = static_cast<uint32_t>(st.st_blksize),
  };
}

// Device nodes a client makes are stored as placeholders: an empty regular file with the sticky
// bit (which means nothing on a file) and the node's type and number in a private xattr
// (kDeviceXattr, never shown to a client). No host process reaches a device through one, and the
// client's mount is nodev (libfuse's default), so the guest cannot open it either; stat, chmod,
// chown, rename, link and unlink treat it as the client's device node.
constexpr char kDeviceXattr[] = "user.fcvm.device";

bool mayBePlaceholder(const struct stat& st) {
  return S_ISREG(st.st_mode) && (st.st_mode & S_ISVTX) != 0 && st.st_size == 0;
}

// If `fd` (O_PATH or open) is a placeholder, `st` shows the device node it stands for.
void presentPlaceholder(int fd, struct stat& st) {
  if (!mayBePlaceholder(st)) return;
  char record[32] = {};
  ssize_t n = ::getxattr(procPath(fd).c_str(), kDeviceXattr, record, sizeof record - 1);
  char type = 0;
  unsigned major = 0, minor = 0;
  if (n <= 0 || std::sscanf(record, "%c %u %u", &type, &major, &minor) != 3 ||
      (type != 'c' && type != 'b')) {
    return;
  }
  st.st_mode = (type == 'c' ? S_IFCHR : S_IFBLK) | (st.st_mode & 07777 & ~S_ISVTX);
  st.st_rdev = makedev(major, minor);
}

// fstat of `fd` (O_PATH or open), placeholders shown as the device nodes they stand for.
int statNode(int fd, struct stat& st) {
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return -1;
  presentPlaceholder(fd, st);
  return 0;
}

// A placeholder is a regular file on the host, whatever the client is shown.
bool isPlaceholder(int fd) {
  struct stat raw {};
  return ::fstatat(fd, "", &raw, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
         mayBePlaceholder(raw) && ::getxattr(procPath(fd).c_str(), kDeviceXattr, nullptr, 0) > 0;
}

// Creates the placeholder for device node `name` (mode, rdev as mknod(2) takes them) in `dirFd`,
// as the calling thread's credentials; nothing is left if any step fails.
Errno makePlaceholder(int dirFd, const std::string& name, uint32_t mode, uint64_t rdev,
                      uint32_t umask) {
  UniqueFd fd(
      ::openat(dirFd, name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return errno;
  auto record = fmt::format("{} {} {}", S_ISCHR(mode) ? 'c' : 'b', major(rdev), minor(rdev));
  // The record first, while the owner may still write the file (user xattrs need that).
  if (::fchmod(fd.get(), 0600) != 0 ||
      ::fsetxattr(fd.get(), kDeviceXattr, record.data(), record.size(), XATTR_CREATE) != 0 ||
      ::fchmod(fd.get(), (mode & 06777 & ~umask) | S_ISVTX) != 0) {
    Errno error = errno == ENOTSUP ? EPERM : errno;  // a host file system without user xattrs
    ::unlinkat(dirFd, name.c_str(), 0);
    return error;
  }
  return 0;
}

Errno statPathFd(int pathFd, Attr& out) {
  struct stat st;
  if (statNode(pathFd, st) != 0) return errno;
  out = toAttr(st);
  return 0;
}

Errno statFd(int fd, Attr& out) {
  struct stat st;
  if (statNode(fd, st) != 0) return errno;
  out = toAttr(st);
  return 0;
}

// The size of one entry in FUSE's readdir buffer (struct fuse_dirent, 8-byte aligned).
uint32_t fuseDirentSize(size_t nameLength) {
  return static_cast<uint32_t>((24 + nameLength + 7) & ~size_t{7});
}

// The same for readdirplus (struct fuse_direntplus: a fuse_entry_out before the fuse_dirent).
uint32_t fuseDirentPlusSize(size_t nameLength) {
  return static_cast<uint32_t>((128 + 24 + nameLength + 7) & ~size_t{7});
}

// Keeps only the allowed names of a listxattr(2) result.
std::vector<uint8_t> filterXattrList(std::span<const uint8_t> list) {
  std::vector<uint8_t> out;
  size_t start = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i] != 0) continue;
    std::string_view name(reinterpret_cast<const char*>(list.data()) + start, i - start);
    if (isServedXattrName(name)) {
      auto nameWithNul = list.subspan(start, i + 1 - start);
      out.insert(out.end(), nameWithNul.begin(), nameWithNul.end());
    }
    start = i + 1;
  }
  return out;
}

bool sameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Whether the regular file or directory open as `fd` has the size, mtime and ctime it had when
// `node` was last opened; records them for the next open either way. ctime cannot be set by anyone,
// and any write, truncate or utimens on the host moves it, so data the client cached from an
// earlier open is still the file's data when this holds (close-to-open consistency, as NFS gives).
// File times advance in clock ticks, so a change within the tick of the recorded ctime would leave
// it as it was: a version whose ctime is less than a second old is not recorded.
bool unchangedSinceLastOpen(const Inode& node, int fd) {
  struct stat st;
  if ((node.type != S_IFREG && node.type != S_IFDIR) || ::fstat(fd, &st) != 0) return false;
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME, &now);
  Inode::Version current{.size = st.st_size, .mtime = st.st_mtim, .ctime = st.st_ctim};
  std::lock_guard lock(node.versionMutex);
  const Inode::Version& last = node.lastOpened;
  bool unchanged = node.opened && last.size == current.size &&
                   sameTime(last.mtime, current.mtime) && sameTime(last.ctime, current.ctime);
  node.lastOpened = current;
  node.opened = now.tv_sec - st.st_ctim.tv_sec >= 2;  // whole seconds apart: at least one second
  return unchanged;
}

}  // namespace

PassthroughFs::PassthroughFs(const std::string& rootPath, PassthroughOptions options)
    : options_(options),
      files_(options.maxOpenFiles),
      dirs_(options.maxOpenDirs),
      locks_(options.maxLockOwners) {
  UniqueFd root(::open(rootPath.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) throwErrno("open root directory", rootPath);
  struct stat st;
  if (::fstat(root.get(), &st) != 0) throwErrno("stat root directory", rootPath);
  inodes_ = std::make_unique<InodeTable>(std::move(root), st.st_dev, st.st_ino);
}

PassthroughFs::~PassthroughFs() = default;

std::shared_ptr<const Inode> PassthroughFs::findDirectory(InodeId parent, Errno& error) const {
  auto inode = inodes_->find(parent);
  if (!inode) {
    error = ESTALE;
    return nullptr;
  }
  if (inode->type != S_IFDIR) {
    error = ENOTDIR;
    return nullptr;
  }
  return inode;
}

Errno PassthroughFs::lookupIn(int parentFd, std::string_view name, Entry& out) {
  UniqueFd fd(openBeneath(parentFd, std::string(name), O_PATH, 0));
  if (!fd) return errno;
  struct stat st;
  if (statNode(fd.get(), st) != 0) return errno;
  out.inode = inodes_->addLookup(std::move(fd), st.st_dev, st.st_ino, st.st_mode & S_IFMT);
  out.generation = 0;
  out.attr = toAttr(st);
  return 0;
}

Errno PassthroughFs::lookup(const Credentials& caller, InodeId parent, std::string_view name,
                            Entry& out) {
  Errno error = 0;
  auto dir = findDirectory(parent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  return lookupIn(dir->pathFd.get(), name, out);
}

void PassthroughFs::forget(InodeId inode, uint64_t count) { inodes_->forget(inode, count); }

Errno PassthroughFs::getattr(const Credentials& caller, InodeId inode,
                             std::optional<HandleId> handle, Attr& out) {
  if (handle) {
    if (auto file = files_.find(*handle)) return statFd(file->fd.get(), out);
  }
  auto node = inodes_->find(inode);
  if (!node) return ESTALE;
  return statPathFd(node->pathFd.get(), out);
}

Errno PassthroughFs::setattr(const Credentials& caller, InodeId inode,
                             const SetattrRequest& request, Attr& out) {
  auto node = inodes_->find(inode);
  if (!node) return ESTALE;
  std::shared_ptr<OpenFile> file;
  if (request.handle) {
    file = files_.find(*request.handle);
    if (!file) return EBADF;
  }
  const int pathFd = node->pathFd.get();
  // The kernel clears set-id bits before a write, truncate or chown as a mode change in the
  // caller's name (libfuse 3.14 never negotiates FUSE_HANDLE_KILLPRIV, which would leave it to
  // us), and a caller who may write the file but does not own it may not chmod it. That change
  // alone is made with the server's own rights below, once the caller is known to be allowed to
  // write, as a local file system clears the bits whoever writes.
  SetattrRequest rest = request;
  std::optional<mode_t> killedMode;
  if ((request.fields & kSetMode) && node->type == S_IFREG) {
    struct stat st {};
    if (::fstat(file ? file->fd.get() : pathFd, &st) == 0) {
      mode_t now = st.st_mode & 07777, wanted = request.mode & 07777;
      mode_t cleared = now & ~wanted;
      if (now != wanted && (now ^ wanted) == cleared && (cleared & ~(S_ISUID | S_ISGID)) == 0) {
        killedMode = wanted;
        rest.fields &= ~kSetMode;
      }
    }
  }
  if (Errno e = setattrAs(caller, *node, file.get(), rest, killedMode.has_value())) return e;
  if (killedMode) {
    int rc = file ? ::fchmod(file->fd.get(), *killedMode)
                  : ::fchmodat(AT_FDCWD, procPath(pathFd).c_str(), *killedMode, 0);
    // A server serving as one user may not change another's file; the host's kernel then
    // clears the bits itself on the write or truncate that follows (that user lacks CAP_FSETID).
    if (rc != 0 && errno != EPERM) return errno;
  }
  return file ? statFd(file->fd.get(), out) : statPathFd(pathFd, out);
}

Errno PassthroughFs::setattrAs(const Credentials& caller, const Inode& node, OpenFile* file,
                               const SetattrRequest& request, bool mustMayWrite) {
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  const int pathFd = node.pathFd.get();
  if (mustMayWrite) {
    bool mayWrite =
        file ? (::fcntl(file->fd.get(), F_GETFL) & O_ACCMODE) != O_RDONLY
             : ::syscall(SYS_faccessat2, AT_FDCWD, procPath(pathFd).c_str(), W_OK, AT_EACCESS) == 0;
    if (!mayWrite) return EPERM;
  }

  if (request.fields & kSetMode) {
    mode_t mode = request.mode & 07777;
    // A device placeholder keeps the sticky bit that marks it.
    if ((node.type == S_IFCHR || node.type == S_IFBLK) && isPlaceholder(pathFd)) mode |= S_ISVTX;
    int rc = file                   ? ::fchmod(file->fd.get(), mode)
             : node.type == S_IFLNK ? (errno = EOPNOTSUPP, -1)
                                    : ::fchmodat(AT_FDCWD, procPath(pathFd).c_str(), mode, 0);
    if (rc != 0) return errno;
  }
  if (request.fields & (kSetUid | kSetGid)) {
    uid_t uid = (request.fields & kSetUid) ? request.uid : static_cast<uid_t>(-1);
    gid_t gid = (request.fields & kSetGid) ? request.gid : static_cast<gid_t>(-1);
    int rc = file ? ::fchown(file->fd.get(), uid, gid)
                  : ::fchownat(pathFd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return errno;
  }
  if (request.fields & kSetSize) {
    if (request.size > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) return EFBIG;
    auto size = static_cast<off_t>(request.size);
    // Only regular files are truncated by path (through /proc, which must not meet a symlink).
    int rc = file                   ? ::ftruncate(file->fd.get(), size)
             : node.type == S_IFDIR ? (errno = EISDIR, -1)
             : node.type != S_IFREG ? (errno = EINVAL, -1)
                                    : ::truncate(procPath(pathFd).c_str(), size);
    if (rc != 0) return errno;
  }
  if (request.fields & (kSetAtime | kSetMtime | kSetAtimeNow | kSetMtimeNow)) {
    auto pick = [](bool set, bool now, int64_t sec, uint32_t nsec) {
      if (now) return timespec{0, UTIME_NOW};
      if (set) return timespec{static_cast<time_t>(sec), static_cast<long>(nsec)};
      return timespec{0, UTIME_OMIT};
    };
    timespec times[2] = {
        pick(request.fields & kSetAtime, request.fields & kSetAtimeNow, request.atimeSec,
             request.atimeNsec),
        pick(request.fields & kSetMtime, request.fields & kSetMtimeNow, request.mtimeSec,
             request.mtimeNsec),
    };
    int rc = file ? ::futimens(file->fd.get(), times)
                  : ::utimensat(pathFd, "", times, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    if (rc != 0) return errno;
  }
  return 0;
}

Errno PassthroughFs::readlink(const Credentials& caller, InodeId inode, std::string& target) {
  auto node = inodes_->find(inode);
  if (!node) return ESTALE;
  if (node->type != S_IFLNK) return EINVAL;
  std::string buffer(kMaxPathLength + 1, '\0');
  ssize_t n = ::readlinkat(node->pathFd.get(), "", buffer.data(), buffer.size());
  if (n < 0) return errno;
  if (static_cast<size_t>(n) > kMaxPathLength) return ENAMETOOLONG;
  buffer.resize(static_cast<size_t>(n));
  target = std::move(buffer);
  return 0;
}

Errno PassthroughFs::mknod(const Credentials& caller, InodeId parent, std::string_view name,
                           uint32_t mode, uint64_t rdev, Entry& out) {
  Errno error = 0;
  auto dir = findDirectory(parent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (S_ISCHR(mode) || S_ISBLK(mode)) {
    // As the kernel would: only a privileged caller makes device nodes.
    if (caller.uid != 0) return EPERM;
    if (Errno e = makePlaceholder(dir->pathFd.get(), std::string(name), mode, rdev, caller.umask)) {
      return e;
    }
  } else if (::mknodat(dir->pathFd.get(), std::string(name).c_str(), mode, rdev) != 0) {
    return errno;
  }
  return lookupIn(dir->pathFd.get(), name, out);
}

Errno PassthroughFs::mkdir(const Credentials& caller, InodeId parent, std::string_view name,
                           uint32_t mode, Entry& out) {
  Errno error = 0;
  auto dir = findDirectory(parent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::mkdirat(dir->pathFd.get(), std::string(name).c_str(), mode & 07777) != 0) return errno;
  return lookupIn(dir->pathFd.get(), name, out);
}

Errno PassthroughFs::unlink(const Credentials& caller, InodeId parent, std::string_view name) {
  Errno error = 0;
  auto dir = findDirectory(parent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::unlinkat(dir->pathFd.get(), std::string(name).c_str(), 0) != 0) return errno;
  return 0;
}

Errno PassthroughFs::rmdir(const Credentials& caller, InodeId parent, std::string_view name) {
  Errno error = 0;
  auto dir = findDirectory(parent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::unlinkat(dir->pathFd.get(), std::string(name).c_str(), AT_REMOVEDIR) != 0) return errno;
  return 0;
}

Errno PassthroughFs::symlink(const Credentials& caller, InodeId parent, std::string_view name,
                             std::string_view target, Entry& out) {
  Errno error = 0;
  auto dir = findDirectory(parent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::symlinkat(std::string(target).c_str(), dir->pathFd.get(), std::string(name).c_str()) != 0) {
    return errno;
  }
  return lookupIn(dir->pathFd.get(), name, out);
}

Errno PassthroughFs::rename(const Credentials& caller, InodeId parent, std::string_view name,
                            InodeId newParent, std::string_view newName, uint32_t flags) {
  if (flags & ~static_cast<uint32_t>(RENAME_NOREPLACE | RENAME_EXCHANGE)) return EINVAL;
  Errno error = 0;
  auto from = findDirectory(parent, error);
  if (!from) return error;
  auto to = findDirectory(newParent, error);
  if (!to) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::renameat2(from->pathFd.get(), std::string(name).c_str(), to->pathFd.get(),
                  std::string(newName).c_str(), flags) != 0) {
    return errno;
  }
  return 0;
}

Errno PassthroughFs::link(const Credentials& caller, InodeId inode, InodeId newParent,
                          std::string_view newName, Entry& out) {
  auto node = inodes_->find(inode);
  if (!node) return ESTALE;
  if (node->type == S_IFDIR) return EPERM;
  Errno error = 0;
  auto dir = findDirectory(newParent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  // Through /proc, because linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH.
  if (::linkat(AT_FDCWD, procPath(node->pathFd.get()).c_str(), dir->pathFd.get(),
               std::string(newName).c_str(), AT_SYMLINK_FOLLOW) != 0) {
    return errno;
  }
  return lookupIn(dir->pathFd.get(), newName, out);
}

Errno PassthroughFs::open(const Credentials& caller, InodeId inode, uint32_t flags, HandleId& out,
                          bool& keepCache) {
  auto node = inodes_->find(inode);
  if (!node) return ESTALE;
  if (node->type != S_IFDIR) {  // directories: the kernel uses opendir; open one for O_RDONLY
    if (Errno refused = refusedFileType(node->type)) return refused;
  }
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  UniqueFd fd(::open(procPath(node->pathFd.get()).c_str(),
                     static_cast<int>(flags & kAllowedOpenFlags) | O_CLOEXEC));
  if (!fd) return errno;
  keepCache = unchangedSinceLastOpen(*node, fd.get());
  auto id = files_.insert(std::make_shared<OpenFile>(OpenFile{std::move(fd)}));
  if (!id) return EMFILE;
  out = *id;
  return 0;
}

namespace {

// create(2) of `name` in `dirFd`: a new regular file, or (without O_EXCL) the existing one, which
// is first looked at through an O_PATH fd, so that an existing fifo or device node is refused
// before anything opens it.
UniqueFd createOrOpen(int dirFd, const std::string& name, uint32_t flags, uint32_t mode,
                      Errno& error) {
  const int openFlags = static_cast<int>(flags & kAllowedOpenFlags);
  for (int attempt = 0; attempt < 3; ++attempt) {  // the name may come and go meanwhile
    UniqueFd fd(openBeneath(dirFd, name, openFlags | O_CREAT | O_EXCL, mode & 07777));
    if (fd || errno != EEXIST || (flags & O_EXCL)) {
      error = fd ? 0 : errno;
      return fd;
    }
    UniqueFd existing(openBeneath(dirFd, name, O_PATH, 0));
    if (!existing) {
      if (errno == ENOENT) continue;
      error = errno;
      return {};
    }
    struct stat st;
    if (statNode(existing.get(), st) != 0) {
      error = errno;
      return {};
    }
    if ((error = refusedFileType(st.st_mode & S_IFMT))) return {};
    fd.reset(::open(procPath(existing.get()).c_str(), openFlags | O_CLOEXEC));
    error = fd ? 0 : errno;
    return fd;
  }
  error = EAGAIN;
  return {};
}

}  // namespace

Errno PassthroughFs::create(const Credentials& caller, InodeId parent, std::string_view name,
                            uint32_t mode, uint32_t flags, Entry& entry, HandleId& handle) {
  Errno error = 0;
  auto dir = findDirectory(parent, error);
  if (!dir) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  UniqueFd fd = createOrOpen(dir->pathFd.get(), std::string(name), flags, mode, error);
  if (!fd) return error;
  // The inode is the file just created, reached through its open fd rather than by name again.
  UniqueFd pathFd(::open(procPath(fd.get()).c_str(), O_PATH | O_CLOEXEC));
  if (!pathFd) return errno;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno;
  auto id = files_.insert(std::make_shared<OpenFile>(OpenFile{std::move(fd)}));
  if (!id) return EMFILE;
  entry.inode = inodes_->addLookup(std::move(pathFd), st.st_dev, st.st_ino, st.st_mode & S_IFMT);
  entry.generation = 0;
  entry.attr = toAttr(st);
  handle = *id;
  return 0;
}

Errno PassthroughFs::read(const Credentials& caller, HandleId handle, uint64_t offset,
                          uint32_t size, std::vector<uint8_t>& out) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  if (offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) return EINVAL;
  out.resize(std::min(size, kMaxIoSize));
  ssize_t n;
  do {
    n = ::pread(file->fd.get(), out.data(), out.size(), static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  out.resize(static_cast<size_t>(n));
  return 0;
}

Errno PassthroughFs::write(const Credentials& caller, HandleId handle, uint64_t offset,
                           std::span<const uint8_t> data, uint32_t& written) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  if (offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) return EINVAL;
  // Credentials matter for writes too: the kernel clears set-id bits depending on who writes.
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  ssize_t n;
  do {
    n = ::pwrite(file->fd.get(), data.data(), data.size(), static_cast<off_t>(offset));
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  written = static_cast<uint32_t>(n);
  return 0;
}

Errno PassthroughFs::flush(const Credentials& caller, HandleId handle, uint64_t lockOwner) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  // close(2) releases all the closing process's POSIX locks on the file: drop the owner's lock
  // descriptor (its OFD locks go with it).
  LockTable::Key key{};
  if (lockKey(file->fd.get(), lockOwner, key) == 0) locks_.remove(key);
  // Closing a duplicate reports delayed write errors (NFS and the like), as close(2) would.
  int dup = ::fcntl(file->fd.get(), F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return errno;
  if (::close(dup) != 0 && errno != EINTR) return errno;
  return 0;
}

Errno PassthroughFs::release(HandleId handle) { return files_.remove(handle) ? 0 : EBADF; }

Errno PassthroughFs::fsync(const Credentials& caller, HandleId handle, bool dataOnly) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  int rc = dataOnly ? ::fdatasync(file->fd.get()) : ::fsync(file->fd.get());
  return rc == 0 ? 0 : errno;
}

Errno PassthroughFs::opendir(const Credentials& caller, InodeId inode, HandleId& out,
                             bool& keepCache) {
  Errno error = 0;
  auto node = findDirectory(inode, error);
  if (!node) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  UniqueFd fd(::open(procPath(node->pathFd.get()).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return errno;
  keepCache = unchangedSinceLastOpen(*node, fd.get());
  DIR* dir = ::fdopendir(fd.get());
  if (!dir) return errno;
  fd.release();  // owned by dir now
  auto id = dirs_.insert(std::make_shared<OpenDir>(dir));
  if (!id) return EMFILE;
  out = *id;
  return 0;
}

template <typename Take>
Errno PassthroughFs::readEntries(OpenDir& dir, uint64_t offset, Take take) {
  std::lock_guard lock(dir.mutex);
  if (offset != dir.position) {
    if (offset == 0) {
      ::rewinddir(dir.dir);
    } else {
      ::seekdir(dir.dir, static_cast<long>(offset));
    }
    dir.position = offset;
  }
  while (true) {
    errno = 0;
    dirent* d = ::readdir(dir.dir);
    if (!d) {
      if (errno != 0) {
        dir.position = kUnknownPosition;
        return errno;
      }
      return 0;
    }
    if (!take(*d)) {
      dir.position = kUnknownPosition;  // this entry was consumed but not returned
      return 0;
    }
    dir.position = static_cast<uint64_t>(d->d_off);
  }
}

namespace {

DirEntry toDirEntry(const dirent& d) {
  return DirEntry{.ino = d.d_ino,
                  .offset = static_cast<uint64_t>(d.d_off),
                  .type = d.d_type,
                  .name = std::string(d.d_name, ::strnlen(d.d_name, sizeof d.d_name))};
}

bool isDotOrDotDot(const char* name) {
  return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

}  // namespace

Errno PassthroughFs::readdir(const Credentials& caller, HandleId handle, uint64_t offset,
                             uint32_t maxBytes, std::vector<DirEntry>& out) {
  auto dir = dirs_.find(handle);
  if (!dir) return EBADF;
  uint32_t used = 0;
  return readEntries(*dir, offset, [&](const dirent& d) {
    uint32_t size = fuseDirentSize(::strnlen(d.d_name, sizeof d.d_name));
    if (used + size > maxBytes) return false;
    used += size;
    out.push_back(toDirEntry(d));
    return true;
  });
}

Errno PassthroughFs::readdirplus(const Credentials& caller, HandleId handle, uint64_t offset,
                                 uint32_t maxBytes, std::vector<DirEntryPlus>& out) {
  auto dir = dirs_.find(handle);
  if (!dir) return EBADF;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  const int dirFd = ::dirfd(dir->dir);
  uint32_t used = 0;
  return readEntries(*dir, offset, [&](const dirent& d) {
    uint32_t size = fuseDirentPlusSize(::strnlen(d.d_name, sizeof d.d_name));
    if (used + size > maxBytes) return false;
    used += size;
    DirEntryPlus plus{.dirent = toDirEntry(d), .entry = std::nullopt};
    Entry entry;
    if (!isDotOrDotDot(d.d_name) && lookupIn(dirFd, plus.dirent.name, entry) == 0) {
      plus.entry = entry;
    }
    out.push_back(std::move(plus));
    return true;
  });
}

Errno PassthroughFs::releasedir(HandleId handle) { return dirs_.remove(handle) ? 0 : EBADF; }

Errno PassthroughFs::fsyncdir(const Credentials& caller, HandleId handle, bool dataOnly) {
  auto dir = dirs_.find(handle);
  if (!dir) return EBADF;
  int fd = ::dirfd(dir->dir);
  int rc = dataOnly ? ::fdatasync(fd) : ::fsync(fd);
  return rc == 0 ? 0 : errno;
}

Errno PassthroughFs::statfs(const Credentials& caller, InodeId inode, StatfsInfo& out) {
  auto node = inodes_->find(inode);
  if (!node) return ESTALE;
  struct statvfs st;
  if (::fstatvfs(node->pathFd.get(), &st) != 0) return errno;
  out = StatfsInfo{
      .blocks = st.f_blocks,
      .bfree = st.f_bfree,
      .bavail = st.f_bavail,
      .files = st.f_files,
      .ffree = st.f_ffree,
      .favail = st.f_favail,
      .bsize = static_cast<uint32_t>(st.f_bsize),
      .frsize = static_cast<uint32_t>(st.f_frsize),
      .namemax = static_cast<uint32_t>(st.f_namemax),
      .flags = static_cast<uint32_t>(st.f_flag),
  };
  return 0;
}

Errno PassthroughFs::access(const Credentials& caller, InodeId inode, uint32_t mask) {
  auto node = inodes_->find(inode);
  if (!node) return ESTALE;
  if (mask & ~static_cast<uint32_t>(R_OK | W_OK | X_OK)) return EINVAL;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  // AT_EACCESS: check the effective ids, which are the caller's; the real ids stay the server's.
  if (::syscall(SYS_faccessat2, node->pathFd.get(), "", mask, AT_EMPTY_PATH | AT_EACCESS) != 0) {
    return errno;
  }
  return 0;
}

std::shared_ptr<const Inode> PassthroughFs::findXattrTarget(InodeId inode, Errno& error) const {
  auto node = inodes_->find(inode);
  if (!node) {
    error = ESTALE;
    return nullptr;
  }
  // Other types reach xattrs only through /proc paths that would name the wrong object
  // (symlinks), and the host refuses user xattrs on them anyway.
  if (node->type != S_IFREG && node->type != S_IFDIR) {
    error = EPERM;
    return nullptr;
  }
  return node;
}

Errno PassthroughFs::setxattr(const Credentials& caller, InodeId inode, std::string_view name,
                              std::span<const uint8_t> value, uint32_t flags) {
  if (!isServedXattrName(name)) return EPERM;
  if (flags & ~static_cast<uint32_t>(XATTR_CREATE | XATTR_REPLACE)) return EINVAL;
  Errno error = 0;
  auto node = findXattrTarget(inode, error);
  if (!node) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::setxattr(procPath(node->pathFd.get()).c_str(), std::string(name).c_str(), value.data(),
                 value.size(), static_cast<int>(flags)) != 0) {
    return errno;
  }
  return 0;
}

Errno PassthroughFs::getxattr(const Credentials& caller, InodeId inode, std::string_view name,
                              uint32_t maxSize, XattrValue& out) {
  if (!isServedXattrName(name)) return ENODATA;
  Errno error = 0;
  auto node = findXattrTarget(inode, error);
  if (!node) return error == EPERM ? ENODATA : error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  out.data.resize(std::min(maxSize, kMaxXattrSize));
  ssize_t n = ::getxattr(procPath(node->pathFd.get()).c_str(), std::string(name).c_str(),
                         out.data.empty() ? nullptr : out.data.data(), out.data.size());
  if (n < 0) return errno;
  out.size = static_cast<uint32_t>(n);
  out.data.resize(maxSize == 0 ? 0 : static_cast<size_t>(n));
  return 0;
}

Errno PassthroughFs::listxattr(const Credentials& caller, InodeId inode, uint32_t maxSize,
                               XattrValue& out) {
  Errno error = 0;
  auto node = findXattrTarget(inode, error);
  if (!node) return error == EPERM ? 0 : error;  // no attributes
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  // The full list is needed to filter it, whatever the caller's limit.
  std::string path = procPath(node->pathFd.get());
  std::vector<uint8_t> list(kMaxXattrSize);
  ssize_t n = ::listxattr(path.c_str(), reinterpret_cast<char*>(list.data()), list.size());
  if (n < 0) return errno;
  list.resize(static_cast<size_t>(n));
  std::vector<uint8_t> allowed = filterXattrList(list);
  out.size = static_cast<uint32_t>(allowed.size());
  if (maxSize == 0) return 0;
  if (allowed.size() > maxSize) return ERANGE;
  out.data = std::move(allowed);
  return 0;
}

Errno PassthroughFs::removexattr(const Credentials& caller, InodeId inode, std::string_view name) {
  if (!isServedXattrName(name)) return EPERM;
  Errno error = 0;
  auto node = findXattrTarget(inode, error);
  if (!node) return error;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::removexattr(procPath(node->pathFd.get()).c_str(), std::string(name).c_str()) != 0) {
    return errno;
  }
  return 0;
}

Errno PassthroughFs::fallocate(const Credentials& caller, HandleId handle, uint32_t mode,
                               uint64_t offset, uint64_t length) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  constexpr uint64_t kMaxOff = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
  if (offset > kMaxOff || length > kMaxOff) return EINVAL;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  if (::fallocate(file->fd.get(), static_cast<int>(mode), static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0) {
    return errno;
  }
  return 0;
}

Errno PassthroughFs::lseek(const Credentials& caller, HandleId handle, uint64_t offset,
                           uint32_t whence, uint64_t& result) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return EINVAL;
  auto file = files_.find(handle);
  if (!file) return EBADF;
  if (offset > static_cast<uint64_t>(std::numeric_limits<off_t>::max())) return ENXIO;
  // Only the result matters; the fd's own position is never used (reads and writes are pread
  // and pwrite), so concurrent calls do not disturb each other.
  off_t r = ::lseek(file->fd.get(), static_cast<off_t>(offset), static_cast<int>(whence));
  if (r < 0) return errno;
  result = static_cast<uint64_t>(r);
  return 0;
}

Errno PassthroughFs::copyFileRange(const Credentials& caller, HandleId in, uint64_t inOffset,
                                   HandleId out, uint64_t outOffset, uint64_t length,
                                   uint32_t flags, uint64_t& copied) {
  auto source = files_.find(in);
  auto target = files_.find(out);
  if (!source || !target) return EBADF;
  constexpr uint64_t kMaxOff = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
  if (inOffset > kMaxOff || outOffset > kMaxOff) return EINVAL;
  // Bounded so that one request cannot hold a worker for long; callers loop on short copies.
  constexpr uint64_t kMaxCopy = 64ull << 20;
  ScopedCredentials as(caller, options_.switchCredentials);
  if (as.error()) return as.error();
  auto inPos = static_cast<off_t>(inOffset);
  auto outPos = static_cast<off_t>(outOffset);
  ssize_t n = ::copy_file_range(source->fd.get(), &inPos, target->fd.get(), &outPos,
                                std::min(length, kMaxCopy), flags);
  if (n < 0) return errno;
  copied = static_cast<uint64_t>(n);
  return 0;
}

Errno PassthroughFs::lockKey(int fd, uint64_t owner, LockTable::Key& key) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno;
  key = LockTable::Key{.dev = st.st_dev, .ino = st.st_ino, .owner = owner};
  return 0;
}

std::shared_ptr<LockOwner> PassthroughFs::lockOwnerFor(int fileFd, const LockTable::Key& key,
                                                       Errno& error) {
  if (auto existing = locks_.find(key)) return existing;
  // A new open file description of the same file. Opened by the server itself, read-write when it
  // can, so that the owner can later take write locks through it whichever of its descriptors it
  // locks through: the client's kernel has already checked that the descriptor the caller locks
  // through is open for writing (F_WRLCK) or reading (F_RDLCK). It is never read or written.
  UniqueFd fd;
  const std::string path = procPath(fileFd);
  for (int mode : {O_RDWR, O_RDONLY, O_WRONLY}) {
    if (options_.readOnly && mode != O_RDONLY) continue;
    fd.reset(::open(path.c_str(), mode | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (fd) break;
  }
  if (!fd) {
    error = errno;
    return nullptr;
  }
  auto entry = locks_.insert(key, std::move(fd));
  if (!entry) error = ENOLCK;
  return entry;
}

namespace {

// flock(2); the name is taken by the member function in PassthroughFs's scope.
int lockFile(int fd, int operation) { return ::flock(fd, operation); }

// F_OFD_* locks require l_pid 0; a range that does not fit off_t is EINVAL.
bool toFlock(const LockRange& lock, struct flock& out) {
  constexpr uint64_t kMaxOff = static_cast<uint64_t>(std::numeric_limits<off_t>::max());
  if (lock.start > kMaxOff || lock.length > kMaxOff) return false;
  if (lock.type != F_RDLCK && lock.type != F_WRLCK && lock.type != F_UNLCK) return false;
  out = {};
  out.l_type = static_cast<short>(lock.type);
  out.l_whence = SEEK_SET;
  out.l_start = static_cast<off_t>(lock.start);
  out.l_len = static_cast<off_t>(lock.length);
  out.l_pid = 0;
  return true;
}

}  // namespace

Errno PassthroughFs::getlk(const Credentials& caller, HandleId handle, uint64_t owner,
                           LockRange& lock) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  struct flock query;
  if (!toFlock(lock, query) || lock.type == F_UNLCK) return EINVAL;
  LockTable::Key key{};
  if (Errno e = lockKey(file->fd.get(), owner, key)) return e;
  // Ask through the owner's own description, so that its own locks do not count as conflicts;
  // an owner without one holds no locks, and a fresh description stands in for it.
  std::shared_ptr<LockOwner> self = locks_.find(key);
  UniqueFd probe;
  if (!self) {
    probe.reset(
        ::open(procPath(file->fd.get()).c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!probe) return errno;
  }
  const int fd = self ? self->fd.get() : probe.get();
  if (::fcntl(fd, F_OFD_GETLK, &query) != 0) return errno;
  lock.type = static_cast<uint32_t>(query.l_type);
  lock.start = static_cast<uint64_t>(query.l_start);
  lock.length = static_cast<uint64_t>(query.l_len);
  lock.pid = 0;  // a lock of a host process: its pid means nothing in the client
  if (query.l_type != F_UNLCK && query.l_pid == -1) {
    // An OFD lock: another client owner's if one of theirs holds it. An owner does not see its
    // own locks as conflicts, so the owner that no longer sees this one holds it.
    for (const auto& other : locks_.othersOnFile(key)) {
      struct flock again = query;
      again.l_pid = 0;
      if (::fcntl(other->fd.get(), F_OFD_GETLK, &again) != 0) continue;
      if (again.l_type == F_UNLCK || again.l_start != query.l_start || again.l_len != query.l_len ||
          again.l_type != query.l_type) {
        lock.pid = other->pid;
        break;
      }
    }
  }
  return 0;
}

Errno PassthroughFs::setlk(const Credentials& caller, HandleId handle, uint64_t owner,
                           const LockRange& lock, bool wait, Cancellation* cancellation) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  struct flock request;
  if (!toFlock(lock, request)) return EINVAL;
  LockTable::Key key{};
  if (Errno e = lockKey(file->fd.get(), owner, key)) return e;
  std::shared_ptr<LockOwner> entry;
  if (lock.type == F_UNLCK) {
    entry = locks_.find(key);
    if (!entry) return 0;  // holds nothing
  } else {
    Errno error = 0;
    entry = lockOwnerFor(file->fd.get(), key, error);
    if (!entry) return error;
  }
  const int fd = entry->fd.get();
  Errno error = 0;
  if (wait) {
    error = runInterruptibly(cancellation, [&] { return ::fcntl(fd, F_OFD_SETLKW, &request); });
  } else if (::fcntl(fd, F_OFD_SETLK, &request) != 0) {
    error = errno == EACCES ? EAGAIN : errno;
  }
  if (error == 0 && lock.type != F_UNLCK) entry->pid = lock.pid;
  return error;
}

Errno PassthroughFs::flock(const Credentials& caller, HandleId handle, uint32_t operation,
                           Cancellation* cancellation) {
  auto file = files_.find(handle);
  if (!file) return EBADF;
  const uint32_t kind = operation & ~static_cast<uint32_t>(LOCK_NB);
  if (kind != LOCK_SH && kind != LOCK_EX && kind != LOCK_UN) return EINVAL;
  // The handle is one open file description per client open, which is what flock locks belong
  // to; releasing the handle closes it and so releases the lock.
  const int fd = file->fd.get();
  if (operation & LOCK_NB) {
    return lockFile(fd, static_cast<int>(operation)) == 0 ? 0 : errno;  // NOLINT
  }
  return runInterruptibly(cancellation, [&] { return lockFile(fd, static_cast<int>(operation)); });
}

}  // namespace fcvm::fusepipe
