// How the session starts the container and exec'd commands. The guest uses PodmanLauncher;
// host tests use DirectLauncher, which runs the same requests as plain host commands.
#pragma once

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
};

}  // namespace fcvm::agent
