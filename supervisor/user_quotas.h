// Per-user quotas on a shared host: how many VMs a user may have at a time, how much guest memory
// they may use together, how many snapshots they may keep. Read once, at the supervisor's start,
// from the "quotas" object of its configuration file (Paths::configFile):
//
//   {"quotas": {"default": {"vms": 8, "memory_mib": 8192, "snapshots": 4},
//               "uids": {"1000": {"vms": 16}}}}
//
// A limit left out is no limit; a uid listed takes its own limits over the default's. Root is
// held to quotas only when listed ("0"): it is the host's administrator.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>

namespace fcvm::supervisor {

struct Quota {
  std::optional<uint32_t> vms;        // VMs that have not ended (restarting ones too)
  std::optional<uint64_t> memoryMib;  // their guest memory together
  std::optional<uint32_t> snapshots;
};

// What a user has now, for a check.
struct QuotaUsage {
  uint32_t vms = 0;
  uint64_t memoryMib = 0;
  uint32_t snapshots = 0;
};

class UserQuotas {
 public:
  UserQuotas() = default;  // none
  // The quotas of configuration file `file`; none if it does not exist. Throws fcvm::Error naming
  // the file and the field that is wrong (an unknown field too: a typo must not lift a limit).
  static UserQuotas load(const std::filesystem::path& file);

  Quota of(uid_t uid) const;
  // Throws fcvm::Error saying which quota of `uid` one more VM of `memoryMib` would exceed.
  void checkVm(uid_t uid, const QuotaUsage& now, uint32_t memoryMib) const;
  // Throws fcvm::Error if `uid` may keep no more snapshots.
  void checkSnapshot(uid_t uid, const QuotaUsage& now) const;

 private:
  std::filesystem::path file_;
  std::optional<Quota> default_;
  std::map<uid_t, Quota> uids_;
};

}  // namespace fcvm::supervisor
