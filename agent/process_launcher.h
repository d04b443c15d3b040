// How the session starts the container and exec'd commands. The guest uses PodmanLauncher;
// host tests use DirectLauncher, which runs the same requests as plain host commands.
#pragma once

#include <kj/async-unix.h>

#include "agent/messages.h"
#include "agent/spawn.h"

namespace fcvm::agent {

class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;
  // Stream 0: the container's process; stdout and stderr as separate pipes, stdin /dev/null.
  virtual SpawnedProcess startContainer(const RunPlan& plan) = 0;
  // An exec stream, in the container or directly in the guest OS (request.inContainer).
  virtual SpawnedProcess startExec(const ExecRequest& request) = 0;
  // Resolves once the container started by startContainer() is really running (its process
  // exists), which may be well after the launcher program started. Never resolves if the
  // container fails to start; its exit tells that.
  virtual kj::Promise<void> containerRunning(kj::UnixEventPort& events) { return kj::READY_NOW; }
};

}  // namespace fcvm::agent
