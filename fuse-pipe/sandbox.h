// The server's jail, after virtiofsd's: what a compromised server process could still reach is
// the served directory and nothing else.
//
// It runs as PID 1 of fresh PID, mount, network, IPC and UTS namespaces (the spawner creates them:
// base/spawn's newNamespaces). enterSandbox() then builds a root of its own: a small read-only
// tmpfs holding only `/volume` (a bind mount of the served directory: nodev, nosuid, read-only
// for a read-only server) and `/proc` (of its own PID namespace, for the /proc/self/fd paths the
// server reopens inodes through), pivots into it and drops the old root. Then it becomes the
// volume's user (a non-root VM's owner), or keeps root with only the capabilities that serving
// as each caller needs; confineServer() finally applies the syscall allowlist.
#pragma once

#include <optional>
#include <string>

#include "base/spawn.h"

namespace fcvm::fusepipe {

struct SandboxOptions {
  bool readOnly = false;
  // Serve as this user instead of root (no per-request credential switch then).
  std::optional<fcvm::Credentials> user;
};

// Confines the calling process, which must be single-threaded; `rootFd` is the directory to
// serve. Returns the path that names the served directory inside the sandbox. Throws
// fcvm::SysError naming the step that failed.
std::string enterSandbox(int rootFd, const SandboxOptions& options);

// The syscall allowlist of a serving process; `switchesCredentials`: it runs each request as its
// caller (root), which needs the per-thread setres[ug]id/setgroups calls. Call before any thread
// starts (the filter binds the calling thread and those it creates later).
void confineServer(bool switchesCredentials);

}  // namespace fcvm::fusepipe
