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
  if (setThreadEffectiveUid(0) != 0 || setThreadEffectiveGid(0) != 0 || setThreadGroups({}) != 0) {
    spdlog::critical("fuse-pipe: cannot restore root credentials of a server thread: {}",
                     std::strerror(errno));
    std::abort();
  }
}

}  // namespace

ScopedCredentials::ScopedCredentials(const Credentials& caller, bool switchIds) {
  thread_local bool fsUnshared = false;
  if (!fsUnshared) {
    if (::unshare(CLONE_FS) != 0) {
      error_ = errno;
      return;
    }
    fsUnshared = true;
  }
  ::umask(caller.umask & 07777);
  if (!switchIds) return;
  switched_ = true;
  std::vector<gid_t> groups(caller.groups.begin(), caller.groups.end());
  if (setThreadGroups(groups) != 0 || setThreadEffectiveGid(caller.gid) != 0 ||
      setThreadEffectiveUid(caller.uid) != 0) {
    error_ = errno;
  }
}

ScopedCredentials::~ScopedCredentials() {
  if (switched_) restoreRootOrDie();
}

}  // namespace fcvm::fusepipe
