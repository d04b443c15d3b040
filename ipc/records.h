// Records of the shared-memory state table. Plain, fixed-size and trivially copyable: the
// supervisor writes them, every other process copies them out and validates before use.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

#include "ipc/fixed_string.h"

namespace fcvm::ipc {

enum class VmState : uint8_t {
  kFree = 0,  // slot unused
  kCreating,
  kBooting,
  kRunning,
  kHealthy,
  kStopped,
  kFailed,
  kRestarting,  // ended; its restart policy starts it again after a delay
};
inline constexpr uint8_t kVmStateMax = static_cast<uint8_t>(VmState::kRestarting);

enum class Health : uint8_t { kUnknown = 0, kStarting, kHealthy, kUnhealthy };
inline constexpr uint8_t kHealthMax = static_cast<uint8_t>(Health::kUnhealthy);

std::string_view toString(VmState state);
std::string_view toString(Health health);
std::optional<VmState> vmStateFromString(std::string_view s);
std::optional<Health> healthFromString(std::string_view s);

// Identity of a live process that survives pid reuse: pid plus its start time in clock ticks
// since boot (field 22 of /proc/PID/stat).
struct ProcessId {
  int32_t pid = 0;
  uint32_t reserved = 0;
  uint64_t startTime = 0;
};

struct VmRecord {
  FixedString<24> id;  // 16 hex digits
  FixedString<64> name;
  uint32_t ownerUid = 0;
  VmState state = VmState::kFree;
  Health health = Health::kUnknown;
  uint8_t hasExitCode = 0;
  uint8_t autoRemove = 0;  // records and disk go when it ends (run --rm)
  int32_t exitCode = 0;
  uint32_t restartCount = 0;  // how many times its restart policy started it again
  ProcessId worker;
  FixedString<128> image;
  FixedString<128> reason;     // why it failed, or empty
  FixedString<64> network;     // e.g. "10.20.0.2 via tap-ab12"
  FixedString<24> snapshotId;  // the snapshot a clone was started from; empty for other VMs
  int64_t createdAtNs = 0;
  int64_t updatedAtNs = 0;

  bool inUse() const { return state != VmState::kFree; }
};

enum class SnapshotState : uint8_t { kFree = 0, kCreating, kReady, kFailed };
inline constexpr uint8_t kSnapshotStateMax = static_cast<uint8_t>(SnapshotState::kFailed);

struct SnapshotRecord {
  FixedString<24> id;
  FixedString<64> tag;
  FixedString<64> sourceVm;
  uint32_t ownerUid = 0;
  SnapshotState state = SnapshotState::kFree;
  uint8_t reserved[3] = {};
  uint64_t memoryBytes = 0;
  int64_t createdAtNs = 0;

  bool inUse() const { return state != SnapshotState::kFree; }
};

enum class ServeState : uint8_t { kFree = 0, kStarting, kServing, kStopped, kFailed };
inline constexpr uint8_t kServeStateMax = static_cast<uint8_t>(ServeState::kFailed);

// A uffd-server process serving one snapshot's memory to its clones.
struct ServeRecord {
  FixedString<24> id;
  FixedString<24> snapshotId;
  uint32_t ownerUid = 0;
  ServeState state = ServeState::kFree;
  uint8_t reserved[3] = {};
  ProcessId server;
  uint32_t clients = 0;
  uint32_t reserved1 = 0;
  int64_t startedAtNs = 0;

  bool inUse() const { return state != ServeState::kFree; }
};

static_assert(std::is_trivially_copyable_v<VmRecord> && sizeof(VmRecord) % 8 == 0);
static_assert(std::is_trivially_copyable_v<SnapshotRecord> && sizeof(SnapshotRecord) % 8 == 0);
static_assert(std::is_trivially_copyable_v<ServeRecord> && sizeof(ServeRecord) % 8 == 0);

// Validation of a record copied out of shared memory: every string terminated, every enum in
// range. A record that fails is treated as absent by readers.
bool isValid(const VmRecord& r);
bool isValid(const SnapshotRecord& r);
bool isValid(const ServeRecord& r);

}  // namespace fcvm::ipc
