// fcvm-netd's life: records under <data dir>/netd, its socket <runtime dir>/netd.sock (root's,
// mode 0600; a peer of another uid is refused), the Netd capability (ipc/netd.capnp) until
// SIGTERM. The supervisor starts it and starts it again if it dies; its records make that safe.
#pragma once

#include <optional>

#include "base/paths.h"

namespace fcvm::netd {

struct NetdOptions {
  Paths paths;
  std::optional<int> readyFd;  // "ready\n" once it serves, or "error: <why>\n"
};

int runNetd(const NetdOptions& options);
// Removes every network on record (an operator's cleanup; no netd may run for this data dir).
int removeAllNetworks(const NetdOptions& options);

}  // namespace fcvm::netd
