// Whether a VM that ended starts again under its restart policy (podman's --restart), and after
// how long. The rule is pure: VmController applies it when a VM ends and at adoption.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "ipc/records.h"
#include "ipc/vm_spec.h"

namespace fcvm::supervisor {

enum class EndCause {
  kEnded,           // its container exited, its guest powered off, or its worker or QEMU died
  kStoppedByOwner,  // stop or rm: final for every policy
  kHostRestarted,   // its worker and QEMU went with the host
};

// The delay before `ended` starts again, or none when it stays ended. `quickEndsInARow` counts
// the ends in a row, this one included, that came soon after their start (kQuickEnd): none
// restarts at once, then each doubles the delay from 1 s to at most kMaxRestartDelay, so a VM
// that cannot start does not spin. on-failure:N stops after N restarts (ended.restartCount).
std::optional<std::chrono::milliseconds> restartDelay(const ipc::RestartPolicy& policy,
                                                      const ipc::VmRecord& ended, EndCause cause,
                                                      uint32_t quickEndsInARow);

// A VM that ran at least this long before it ended restarts at once (the back-off starts over).
inline constexpr std::chrono::seconds kQuickEnd{60};
inline constexpr std::chrono::milliseconds kMaxRestartDelay{60'000};

}  // namespace fcvm::supervisor
