// What a VM's memory costs the host and what its guest makes of it, for `fcvm inspect`: the VMM's
// share of host memory from /proc, and the guest kernel's own figures from its /proc/meminfo
// (read in the guest: the guest's word, checked for shape and sense, never trusted further).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fcvm::worker {

struct GuestMemory {
  uint64_t totalBytes = 0;      // MemTotal: the RAM the guest kernel manages
  uint64_t availableBytes = 0;  // MemAvailable: what it could give a new workload
};

struct VmmMemory {
  uint64_t pssBytes = 0;   // proportional share: memory shared with clones counts in part
  uint64_t anonBytes = 0;  // its own anonymous memory (under TCG mostly translated code)
};

// What the worker answers: each part when it could be had, and why not otherwise.
struct VmMemoryReport {
  std::optional<GuestMemory> guest;
  std::optional<VmmMemory> vmm;
  std::string reason;
};

// The largest /proc/meminfo a guest may send; a real one is under 2 KiB.
inline constexpr size_t kMaxMeminfoBytes = 16 * 1024;

// The value of a "Key:   123 kB" line, in bytes; nullopt if the key is missing. Throws Error on
// a line of that key that is not a number of kB, or one that overflows.
std::optional<uint64_t> kilobyteField(std::string_view text, std::string_view key);

// A guest's /proc/meminfo. Throws Error (what was wrong) unless both fields are there, sane and
// available <= total.
GuestMemory parseGuestMeminfo(std::string_view text);

// The VMM process's memory from /proc/PID/smaps_rollup. Throws Error with the path and errno text.
VmmMemory readVmmMemory(pid_t pid);

}  // namespace fcvm::worker
