// Telling a live process apart from a later one that reused its pid.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace fcvm {

// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or nullopt if
// no such process exists.
std::optional<uint64_t> processStartTime(pid_t pid);

// True when `pid` is alive (not a zombie) and is the process that started at `startTime`.
bool isSameProcessAlive(pid_t pid, uint64_t startTime);

}  // namespace fcvm
