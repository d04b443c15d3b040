// Telling a live process apart from a later one that reused its pid.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace fcvm {

// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or nullopt if
// no such process exists.
std::optional<uint64_t> processStartTime(pid_t pid);

// True when `pid` is alive (not a zombie) and is the process that started at `startTime`.
bool isSameProcessAlive(pid_t pid, uint64_t startTime);

// The contents of /proc/PID/`file` (cmdline, comm, stat), up to 1 MiB, or nullopt if the process
// is gone or the file cannot be read. Never throws: any process may end while it is being read
// (a read then fails with ESRCH, which std::istreambuf_iterator would throw as ios_failure).
std::optional<std::string> readProcessFile(pid_t pid, const char* file);

}  // namespace fcvm
