// ScopedCredentials: the calling thread acts as a request's caller for one scope.
//
// On construction it sets this thread's umask and, if `switchIds`, its supplementary groups,
// effective gid and effective uid to the caller's, with raw syscalls so that only this thread
// changes (glibc's wrappers change every thread of the process). The real and saved ids stay
// root, so the destructor can switch back to euid and egid 0; it aborts the process if that
// fails, because a thread with unknown credentials must not serve further requests. The umask is
// made per-thread by unsharing the thread's fs_struct on first use. Settings that already match
// cost no system call: a root caller is served without any switch, and the thread keeps the last
// caller's groups and umask between scopes (harmless while it is root; see credentials.cc).
#pragma once

#include "fuse-pipe/error.h"
#include "fuse-pipe/fs_types.h"

namespace fcvm::fusepipe {

class ScopedCredentials {
 public:
  ScopedCredentials(const Credentials& caller, bool switchIds);
  ~ScopedCredentials();
  ScopedCredentials(const ScopedCredentials&) = delete;
  ScopedCredentials& operator=(const ScopedCredentials&) = delete;

  // 0 if the thread now acts as the caller; otherwise the errno that prevented it (the
  // request must then fail with it).
  Errno error() const { return error_; }

 private:
  bool switched_ = false;
  Errno error_ = 0;
};

}  // namespace fcvm::fusepipe
