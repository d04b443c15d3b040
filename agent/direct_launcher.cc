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

SpawnOptions execSpawnOptions(const ExecRequest& request, std::vector<std::string> argv) {
  SpawnOptions options;
  options.argv = std::move(argv);
  options.pipeStdin = request.stdin;
  options.tty = request.tty;
  options.rows = request.rows;
  options.cols = request.cols;
  return options;
}

SpawnedProcess DirectLauncher::startExec(const ExecRequest& request) {
  SpawnOptions options = execSpawnOptions(request, request.command);
  options.env = request.env;
  return spawnProcess(options);
}

}  // namespace fcvm::agent
