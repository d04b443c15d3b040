#include "agent/direct_launcher.h"

#include <kj/debug.h>

namespace fcvm::agent {

SpawnedProcess DirectLauncher::startContainer(const RunPlan& plan) {
  KJ_REQUIRE(!plan.command.empty(), "direct launcher: the plan has no command");
  SpawnOptions options;
  options.argv = plan.command;
  options.env = plan.env;
  options.workdir = plan.workdir;
  return spawnProcess(options);
}

SpawnedProcess DirectLauncher::startExec(const ExecRequest& request) {
  SpawnOptions options;
  options.argv = request.command;
  options.env = request.env;
  options.pipeStdin = request.stdin;
  options.tty = request.tty;
  options.rows = request.rows;
  options.cols = request.cols;
  return spawnProcess(options);
}

}  // namespace fcvm::agent
