#include "supervisor/restart_rule.h"

#include <algorithm>

namespace fcvm::supervisor {

std::optional<std::chrono::milliseconds> restartDelay(const ipc::RestartPolicy& policy,
                                                      const ipc::VmRecord& ended, EndCause cause,
                                                      uint32_t quickEndsInARow) {
  using Kind = ipc::RestartPolicy::Kind;
  if (cause == EndCause::kStoppedByOwner) return std::nullopt;
  switch (policy.kind) {
    case Kind::kNo:
      return std::nullopt;
    case Kind::kAlways:
    case Kind::kUnlessStopped:
      break;
    case Kind::kOnFailure: {
      // As podman: a reboot is no failure of the container's (podman-restart.service starts only
      // `always` containers at boot).
      if (cause == EndCause::kHostRestarted) return std::nullopt;
      bool failed = ended.state == ipc::VmState::kFailed || (ended.hasExitCode && ended.exitCode);
      if (!failed) return std::nullopt;
      if (policy.maxRetries != 0 && ended.restartCount >= policy.maxRetries) return std::nullopt;
      break;
    }
  }
  if (quickEndsInARow == 0) return std::chrono::milliseconds{0};
  uint32_t doublings = std::min<uint32_t>(quickEndsInARow - 1, 16);
  return std::min(std::chrono::milliseconds{int64_t{1000} << doublings}, kMaxRestartDelay);
}

}  // namespace fcvm::supervisor
