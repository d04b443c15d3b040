#include "agent/podman_launcher.h"

#include <kj/debug.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

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
                                   "--pull", "never",
                                   // READY=1 on NOTIFY_SOCKET once the container runs.
                                   "--sdnotify", "conmon",
                                   // The VM's hostname (its name; a clone's own after restore).
                                   "--uts", "host"};
  if (plan.privileged) argv.push_back("--privileged");
  if (!plan.user.empty()) argv.insert(argv.end(), {"-u", plan.user});
  if (!plan.workdir.empty()) argv.insert(argv.end(), {"-w", plan.workdir});
  for (const auto& e : plan.env) argv.insert(argv.end(), {"-e", e});
  for (const auto& v : plan.volumes) {
    checkVolume(v);
    std::string spec = std::string(kVolumeMountRoot) + "/" + v.hostTag + ":" + v.guestPath +
                       (v.readOnly ? ":ro,rslave" : ":rslave");
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

PodmanLauncher::PodmanLauncher(std::string notifySocket) : notifyPath_(std::move(notifySocket)) {}

PodmanLauncher::~PodmanLauncher() noexcept {
  if (notify_ != nullptr) ::unlink(notifyPath_.c_str());
}

SpawnedProcess PodmanLauncher::startContainer(const RunPlan& plan) {
  SpawnOptions options;
  options.argv = podmanRunArgv(plan);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  KJ_REQUIRE(notifyPath_.size() < sizeof addr.sun_path, "notify socket path too long");
  std::strcpy(addr.sun_path, notifyPath_.c_str());
  int fd;
  KJ_SYSCALL(fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  notify_ = kj::AutoCloseFd(fd);
  ::unlink(notifyPath_.c_str());
  KJ_SYSCALL(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), notifyPath_);
  options.env.push_back("NOTIFY_SOCKET=" + notifyPath_);
  return spawnProcess(options);
}

kj::Promise<void> PodmanLauncher::containerRunning(kj::UnixEventPort& events) {
  KJ_REQUIRE(notify_ != nullptr, "no container started");
  if (!notifyObserver_) {
    notifyObserver_ = kj::heap<kj::UnixEventPort::FdObserver>(
        events, notify_.get(), kj::UnixEventPort::FdObserver::OBSERVE_READ);
  }
  // Datagrams of NAME=VALUE lines; anything but a READY=1 line (MAINPID=..., STATUS=...) is
  // skipped. Only processes in the guest can reach the socket.
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(notify_.get(), buf, sizeof buf - 1, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      KJ_FAIL_SYSCALL("recv", errno, notifyPath_);
    }
    std::string text(buf, static_cast<size_t>(n));
    if (("\n" + text + "\n").find("\nREADY=1\n") != std::string::npos) return kj::READY_NOW;
  }
  return notifyObserver_->whenBecomesReadable().then(
      [this, &events] { return containerRunning(events); });
}

SpawnedProcess PodmanLauncher::startExec(const ExecRequest& request) {
  if (!request.inContainer) return direct_.startExec(request);
  // The container's environment goes in podman's own -e arguments, not podman's environment.
  return spawnProcess(execSpawnOptions(request, podmanExecArgv(request)));
}

}  // namespace fcvm::agent
