#include "agent/podman_launcher.h"

#include <kj/debug.h>

namespace fcvm::agent {
namespace {

void checkEnv(const std::vector<std::string>& env) {
  for (const auto& e : env) {
    auto eq = e.find('=');
    KJ_REQUIRE(eq != std::string::npos && eq > 0, "env entry is not NAME=VALUE", e);
  }
}

void checkVolume(const VolumeSpec& v) {
  KJ_REQUIRE(!v.hostTag.empty() && v.hostTag != "." && v.hostTag != "..", "bad volume tag",
             v.hostTag);
  for (char c : v.hostTag) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    KJ_REQUIRE(ok, "bad volume tag", v.hostTag);
  }
  KJ_REQUIRE(!v.guestPath.empty() && v.guestPath[0] == '/', "volume path not absolute",
             v.guestPath);
  KJ_REQUIRE(v.guestPath.find(':') == std::string::npos, "':' in volume path", v.guestPath);
  std::string padded = v.guestPath + "/";
  KJ_REQUIRE(padded.find("/../") == std::string::npos, "'..' in volume path", v.guestPath);
}

}  // namespace

std::vector<std::string> podmanRunArgv(const RunPlan& plan) {
  KJ_REQUIRE(!plan.image.empty(), "run plan without image");
  checkEnv(plan.env);
  std::vector<std::string> argv = {"podman", "run", "--rm", "--name", kContainerName, "--network",
                                   plan.network == NetworkMode::kHost ? "host" : "none",
                                   "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                                   // Images come from the host's read-only image store; a guest
                                   // never contacts a registry on its own.
                                   "--pull", "never"};
  if (plan.privileged) argv.push_back("--privileged");
  if (!plan.user.empty()) argv.insert(argv.end(), {"-u", plan.user});
  if (!plan.workdir.empty()) argv.insert(argv.end(), {"-w", plan.workdir});
  for (const auto& e : plan.env) argv.insert(argv.end(), {"-e", e});
  for (const auto& v : plan.volumes) {
    checkVolume(v);
    std::string spec = std::string(kVolumeMountRoot) + "/" + v.hostTag + ":" + v.guestPath;
    if (v.readOnly) spec += ":ro";
    argv.insert(argv.end(), {"-v", spec});
  }
  // Everything after the image is the container's command, even if it starts with '-'.
  argv.push_back(plan.image);
  argv.insert(argv.end(), plan.command.begin(), plan.command.end());
  return argv;
}

std::vector<std::string> podmanExecArgv(const ExecRequest& request) {
  KJ_REQUIRE(!request.command.empty(), "exec without command");
  checkEnv(request.env);
  std::vector<std::string> argv = {"podman", "exec"};
  if (request.stdin) argv.push_back("-i");
  if (request.tty) argv.push_back("-t");
  for (const auto& e : request.env) argv.insert(argv.end(), {"-e", e});
  argv.push_back(kContainerName);
  argv.insert(argv.end(), request.command.begin(), request.command.end());
  return argv;
}

SpawnedProcess PodmanLauncher::startContainer(const RunPlan& plan) {
  SpawnOptions options;
  options.argv = podmanRunArgv(plan);
  return spawnProcess(options);
}

SpawnedProcess PodmanLauncher::startExec(const ExecRequest& request) {
  if (!request.inContainer) return direct_.startExec(request);
  // The container's environment goes in podman's own -e arguments, not podman's environment.
  return spawnProcess(execSpawnOptions(request, podmanExecArgv(request)));
}

}  // namespace fcvm::agent
