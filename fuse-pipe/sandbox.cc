#include "fuse-pipe/sandbox.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/error.h"
#include "base/seccomp_filter.h"
#include "base/spawn.h"

namespace fcvm::fusepipe {
namespace {

constexpr char kStaging[] = "/tmp";  // a directory every host has; shadowed in our namespace only
constexpr char kVolume[] = "/volume";

void mountOrThrow(const char* source, const std::string& target, const char* type,
                  unsigned long flags, const char* data, const char* what) {
  if (::mount(source, target.c_str(), type, flags, data) != 0) {
    throw SysError(errno, fmt::format("sandbox: {} ({})", what, target));
  }
}

// What a root server keeps: acting as each caller on files (owner, mode and group rules, set-id
// clearing) and switching to that caller. No mounts, no devices, no network, no tracing.
constexpr int kRootServerCapabilities[] = {CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
                                           CAP_FOWNER, CAP_FSETID,       CAP_SETGID,
                                           CAP_SETUID};

void keepOnlyRootServerCapabilities() {
  uint64_t keep = 0;
  for (int cap : kRootServerCapabilities) keep |= uint64_t{1} << cap;
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if ((keep & (uint64_t{1} << cap)) == 0 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 &&
        errno != EINVAL) {
      throw SysError(errno, fmt::format("sandbox: drop capability {} from the bounding set", cap));
    }
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  for (int i = 0; i < 2; ++i) {
    data[i].effective = data[i].permitted = static_cast<uint32_t>(keep >> (32 * i));
  }
  if (::syscall(SYS_capset, &header, data) != 0) throw SysError(errno, "sandbox: capset");
}

void becomeUser(const fcvm::Credentials& user) {
  // The whole process, single-threaded here: raw calls are as good as glibc's broadcast ones.
  if (::syscall(SYS_setgroups, user.groups.size(), user.groups.data()) != 0) {
    throw SysError(errno, "sandbox: setgroups");
  }
  if (::syscall(SYS_setresgid, user.gid, user.gid, user.gid) != 0) {
    throw SysError(errno, fmt::format("sandbox: setresgid {}", user.gid));
  }
  if (::syscall(SYS_setresuid, user.uid, user.uid, user.uid) != 0) {
    throw SysError(errno, fmt::format("sandbox: setresuid {}", user.uid));
  }
  // A uid change makes the process non-dumpable, which hands /proc/self/fd to root; the server
  // reopens its inodes through it.
  if (::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) throw SysError(errno, "sandbox: dumpable");
}

// The directory `rootFd` names, reopened (O_PATH) through this mount namespace: an fd opened in
// another namespace (the spawner's, where the user opened it) holds a mount of that namespace,
// which cannot be bound here. The path it had there names this namespace's copy of the mount;
// the same device and inode prove it is the same directory, whatever happened to the path since.
UniqueFd reopenHere(int rootFd) {
  char buf[4096];
  ssize_t n = ::readlink(fmt::format("/proc/self/fd/{}", rootFd).c_str(), buf, sizeof buf - 1);
  if (n < 0) throw SysError(errno, "sandbox: the served directory's path");
  std::string path(buf, static_cast<size_t>(n));
  if (path.empty() || path[0] != '/' || path.ends_with(" (deleted)")) {
    throw Error(fmt::format("sandbox: the served directory is gone ({})", path));
  }
  UniqueFd here(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  struct stat want {
  }, found{};
  if (!here || ::fstat(here.get(), &found) != 0 || ::fstat(rootFd, &want) != 0 ||
      found.st_dev != want.st_dev || found.st_ino != want.st_ino) {
    throw Error(fmt::format("sandbox: {} is no longer the directory that was opened", path));
  }
  return here;
}

}  // namespace

std::string enterSandbox(int rootFd, const SandboxOptions& options) {
  if (::getpid() != 1) {
    throw Error("sandbox: the server must start as PID 1 of new PID and mount namespaces");
  }
  struct stat st;
  if (::fstat(rootFd, &st) != 0 || !S_ISDIR(st.st_mode)) {
    throw Error("sandbox: the directory to serve is not a directory");
  }
  // Nothing mounted from here on propagates back to the host.
  mountOrThrow(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr, "make mounts private");
  UniqueFd served = reopenHere(rootFd);  // before the staging tmpfs can hide its path
  std::string staging = kStaging;
  mountOrThrow("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=16k",
               "new root");
  for (const char* dir : {"/volume", "/proc"}) {
    if (::mkdir((staging + dir).c_str(), 0755) != 0) {
      throw SysError(errno, fmt::format("sandbox: mkdir {}", dir));
    }
  }
  mountOrThrow("proc", staging + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr,
               "proc of its own PID namespace");
  std::string source = fmt::format("/proc/self/fd/{}", served.get());
  mountOrThrow(source.c_str(), staging + kVolume, nullptr, MS_BIND | MS_REC, nullptr,
               "bind the served directory");
  unsigned long volumeFlags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV;
  if (options.readOnly) volumeFlags |= MS_RDONLY;
  mountOrThrow(nullptr, staging + kVolume, nullptr, volumeFlags, nullptr,
               "restrict the served directory's mount");
  if (pivotIntoReadOnlyRoot(staging.c_str()) != 0) {
    throw SysError(errno, "sandbox: pivot into the new root");
  }
  ::close(rootFd);  // the old root's view of it; /volume is the same directory
  served.reset();

  if (options.user) {
    becomeUser(*options.user);
  } else {
    keepOnlyRootServerCapabilities();
  }
  return kVolume;
}

void confineServer(bool switchesCredentials) {
  SeccompFilter filter;
  filter.allow(
      {// memory, threads and the C++ runtime
       "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "futex", "set_robust_list", "rseq",
       "sched_yield", "getrandom", "exit", "exit_group", "getpid", "gettid", "geteuid", "getuid",
       "getegid", "getgid",
       // signals: stop signals through a signalfd; cancellation of blocked calls by a signal sent
       // to the waiting thread, with a timer as the backstop
       "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
       "signalfd4", "tgkill", "timer_create", "timer_settime", "timer_delete", "clock_gettime",
       "clock_nanosleep", "nanosleep", "getrlimit", "prlimit64", "setrlimit",
       // the stream
       "read", "readv", "write", "writev", "recvfrom", "recvmsg", "sendto", "sendmsg", "poll",
       "ppoll", "shutdown", "getsockopt", "accept4", "eventfd2",
       // files below the served directory, by fd
       "openat", "openat2", "close", "dup", "dup3", "fcntl", "fstat", "newfstatat", "statx",
       "lseek", "getdents64", "pread64", "pwrite64", "preadv", "pwritev", "fsync", "fdatasync",
       "ftruncate", "truncate", "fallocate", "copy_file_range", "flock", "fstatfs", "statfs",
       "mkdirat", "mknodat", "unlinkat", "renameat2", "linkat", "symlinkat", "readlinkat", "fchmod",
       "fchmodat", "fchown", "fchownat", "utimensat", "faccessat", "faccessat2", "setxattr",
       "lsetxattr", "fsetxattr", "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr",
       "flistxattr", "removexattr", "lremovexattr", "fremovexattr", "umask"});
  // Threads only: a clone that is not a thread would be a new process in the jail.
  filter.failWith("clone3", ENOSYS);
  filter.allowIf("clone", {SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)});
  // Each thread's own umask (unshare(CLONE_FS)) for the caller's umask.
  filter.allowIf("unshare", {SCMP_A0(SCMP_CMP_EQ, CLONE_FS)});
  if (switchesCredentials) filter.allow({"setresuid", "setresgid", "setgroups"});
  filter.load();
}

}  // namespace fcvm::fusepipe
