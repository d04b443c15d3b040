// Runs commands as given, without a container: exec requests for the guest OS itself, and in
// host tests the "container" too (plan.command with plan.env and plan.workdir).
#pragma once

#include "agent/process_launcher.h"

namespace fcvm::agent {

// How an exec request runs `argv`: its stdin, pty and window size (shared by both launchers).
SpawnOptions execSpawnOptions(const ExecRequest& request, std::vector<std::string> argv);

class DirectLauncher : public ProcessLauncher {
 public:
  SpawnedProcess startContainer(const RunPlan& plan) override;
  SpawnedProcess startExec(const ExecRequest& request) override;
};

}  // namespace fcvm::agent
