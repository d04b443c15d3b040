// fcvm-supervisor's life: take the instance lock, become the state table's writer, re-adopt
// durable records, listen on the socket, serve connections until shutdown or SIGTERM/SIGINT.
#pragma once

#include <optional>

#include "base/paths.h"

namespace fcvm::supervisor {

struct DaemonOptions {
  Paths paths;
  // Written with "ready\n" and closed once the socket accepts connections (the CLI waits on it).
  std::optional<int> readyFd;
};

// Returns the process exit code. Throws fcvm::Error when it cannot start.
int runSupervisor(const DaemonOptions& options);

}  // namespace fcvm::supervisor
