// The guest's launcher: the container through `podman run`, in-container exec through
// `podman exec`, guest-OS exec directly. The argv builders are pure so they can be tested.
#pragma once

#include <string>
#include <vector>

#include "agent/direct_launcher.h"
#include "agent/process_launcher.h"

namespace fcvm::agent {

inline constexpr char kContainerName[] = "fcvm";
// Where the agent mounts volume `hostTag` in the guest before binding it into the container.
inline constexpr char kVolumeMountRoot[] = "/run/fcvm/volumes";

// podman run --rm --name fcvm --network host|none --cgroup-manager cgroupfs
//   --events-backend file --pull never --sdnotify conmon [--privileged] [-u USER] [-w DIR] [-e
//   NAME=VALUE]...
//   [-v /run/fcvm/volumes/TAG:PATH:[ro,]rslave]... IMAGE [COMMAND...]
// rslave: a clone's volume, mounted anew over the old mount in the guest, reaches the container.
// Throws kj::Exception for an empty image, an env entry without '=', a volume tag that is not
// [A-Za-z0-9._-]+ (or is "." / ".."), or a guest path that is not absolute or contains ':' or "..".
std::vector<std::string> podmanRunArgv(const RunPlan& plan);

// podman exec [-i] [-t] [-e NAME=VALUE]... fcvm COMMAND...
std::vector<std::string> podmanExecArgv(const ExecRequest& request);

// Where podman tells the agent that the container runs (sd_notify READY=1 with --sdnotify=conmon,
// sent once the OCI runtime has started the container's process).
inline constexpr char kNotifySocket[] = "/run/fcvm-notify.sock";

class PodmanLauncher : public ProcessLauncher {
 public:
  explicit PodmanLauncher(std::string notifySocket = kNotifySocket);
  ~PodmanLauncher() noexcept override;
  SpawnedProcess startContainer(const RunPlan& plan) override;
  SpawnedProcess startExec(const ExecRequest& request) override;
  kj::Promise<void> containerRunning(kj::UnixEventPort& events) override;

 private:
  DirectLauncher direct_;
  std::string notifyPath_;
  kj::AutoCloseFd notify_;  // datagram socket bound at notifyPath_, created by startContainer
  kj::Own<kj::UnixEventPort::FdObserver> notifyObserver_;
};

}  // namespace fcvm::agent
