#include "ipc/records.h"

#include <array>

namespace fcvm::ipc {
namespace {

constexpr std::array<std::string_view, kVmStateMax + 1> kVmStateNames = {
    "free", "creating", "booting", "running", "healthy", "stopped", "failed", "restarting"};
constexpr std::array<std::string_view, kHealthMax + 1> kHealthNames = {"unknown", "starting",
                                                                       "healthy", "unhealthy"};

template <typename Enum, size_t N>
std::optional<Enum> fromName(const std::array<std::string_view, N>& names, std::string_view s) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<Enum>(i);
  }
  return std::nullopt;
}

}  // namespace

std::string_view toString(VmState state) {
  auto i = static_cast<size_t>(state);
  return i < kVmStateNames.size() ? kVmStateNames[i] : "invalid";
}

std::string_view toString(Health health) {
  auto i = static_cast<size_t>(health);
  return i < kHealthNames.size() ? kHealthNames[i] : "invalid";
}

std::optional<VmState> vmStateFromString(std::string_view s) {
  return fromName<VmState>(kVmStateNames, s);
}

std::optional<Health> healthFromString(std::string_view s) {
  return fromName<Health>(kHealthNames, s);
}

bool isValid(const VmRecord& r) {
  return r.id.valid() && r.name.valid() && r.image.valid() && r.reason.valid() &&
         r.network.valid() && r.snapshotId.valid() &&
         static_cast<uint8_t>(r.state) <= kVmStateMax &&
         static_cast<uint8_t>(r.health) <= kHealthMax && r.hasExitCode <= 1;
}

bool isValid(const SnapshotRecord& r) {
  return r.id.valid() && r.tag.valid() && r.sourceVm.valid() &&
         static_cast<uint8_t>(r.state) <= kSnapshotStateMax;
}

bool isValid(const ServeRecord& r) {
  return r.id.valid() && r.snapshotId.valid() && static_cast<uint8_t>(r.state) <= kServeStateMax;
}

}  // namespace fcvm::ipc
