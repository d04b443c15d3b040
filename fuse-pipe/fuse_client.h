// The client: a libfuse low-level filesystem that forwards every request to a fuse-pipe server
// through a ClientConnection and answers the kernel when the reply arrives. Several reader
// threads, each on its own cloned /dev/fuse fd, take requests from the kernel; none of them waits
// for the server, so many requests are in flight at once and complete in any order.
#pragma once

#include <string>
#include <vector>

#include "fuse-pipe/client_connection.h"

namespace fcvm::fusepipe {

struct MountOptions {
  std::string mountpoint;
  unsigned readers = 2;                  // /dev/fuse reader threads
  std::vector<std::string> fuseOptions;  // passed to libfuse as "-o" options, e.g. allow_other
  double cacheTimeoutSeconds = 1.0;      // attribute and entry cache lifetime in the kernel
  int readyFd = -1;  // if >= 0: written to ("1") and closed once the mount exists
};

// Mounts the filesystem, serves the kernel in the foreground until SIGINT, SIGTERM or SIGHUP (or
// an external unmount), then closes `connection` (answering what is in flight) and unmounts. Throws
// std::runtime_error with context if it cannot mount.
void runMount(ClientConnection& connection, const MountOptions& options);

}  // namespace fcvm::fusepipe
