#include "fuse-pipe/credentials.h"

#include <sched.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace fcvm::fusepipe {

namespace {

// Raw syscalls: per-thread on Linux, unlike the glibc wrappers.
long setThreadGroups(const std::vector<gid_t>& groups) {
  return ::syscall(SYS_setgroups, groups.size(), groups.empty() ? nullptr : groups.data());
}
long setThreadEffectiveGid(gid_t gid) { return ::syscall(SYS_setresgid, -1, gid, -1); }
long setThreadEffectiveUid(uid_t uid) { return ::syscall(SYS_setresuid, -1, uid, -1); }

void restoreRootOrDie() {
  if (setThreadEffectiveUid(0) != 0 || setThreadEffectiveGid(0) != 0) {
    spdlog::critical("fuse-pipe: cannot restore root credentials of a server thread: {}",
                     std::strerror(errno));
    std::abort();
  }
}

}  // namespace

ScopedCredentials::ScopedCredentials(const Credentials& caller, bool switchIds) {
  // What this thread is set to, so that unchanged settings cost no system call: between scopes a
  // thread is always euid 0 and egid 0 (restored below); its umask and supplementary groups stay
  // as the last caller's, which is harmless while it acts as root (groups do not widen what root
  // may do) and saves a setgroups, the costliest of the switches, for a caller who comes again.
  thread_local bool fsUnshared = false;
  thread_local uint32_t umask = 0;
  thread_local bool groupsKnown = false;
  thread_local std::vector<gid_t> groups;
  if (!fsUnshared) {
    if (::unshare(CLONE_FS) != 0) {
      error_ = errno;
      return;
    }
    fsUnshared = true;
    umask = ::umask(022);
    ::umask(umask);
  }
  if ((caller.umask & 07777) != umask) {
    umask = caller.umask & 07777;
    ::umask(umask);
  }
  // A root caller is served as root, with root's powers, for which its groups make no difference.
  if (!switchIds || (caller.uid == 0 && caller.gid == 0)) return;
  switched_ = true;
  std::vector<gid_t> wanted(caller.groups.begin(), caller.groups.end());
  if (!groupsKnown || wanted != groups) {
    groupsKnown = false;
    if (setThreadGroups(wanted) != 0) {
      error_ = errno;
      return;
    }
    groups = std::move(wanted);
    groupsKnown = true;
  }
  if (setThreadEffectiveGid(caller.gid) != 0 || setThreadEffectiveUid(caller.uid) != 0) {
    error_ = errno;
  }
}

ScopedCredentials::~ScopedCredentials() {
  if (switched_) restoreRootOrDie();
}

}  // namespace fcvm::fusepipe
