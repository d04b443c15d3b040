// Running a helper program (qemu --version, podman, mkfs, ...) and collecting its output, with a
// deadline. The child is started through spawn() and killed and reaped on every path out,
// including exceptions.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "base/spawn.h"

namespace fcvm {

struct CommandResult {
  int exitCode = -1;  // -1 when killed by a signal or the deadline
  int signal = 0;     // the signal that ended it, if any
  bool timedOut = false;
  std::string output;  // stdout and stderr interleaved, capped at maxOutput
};

struct CommandOptions {
  std::chrono::milliseconds timeout{10000};
  size_t maxOutput = 1 << 20;
  std::vector<std::string> extraEnv;  // NAME=VALUE, added to (or replacing in) this environment
  // The child's whole environment instead of ours plus extraEnv (e.g. for another user's podman).
  std::optional<std::vector<std::string>> environment;
  std::string cwd;                         // working directory of the child, if set
  std::string outputFile;                  // append output here instead of collecting it
  std::string errorFile;                   // stderr here (truncated), apart from stdout
  std::optional<Credentials> credentials;  // run as this user instead of ours
  int netns = -1;                          // run in this network namespace (an fd) instead of ours
  int stdinFd = -1;                        // the child's stdin (an fd of ours) instead of /dev/null

  static CommandOptions withTimeout(std::chrono::milliseconds t) {
    CommandOptions o;
    o.timeout = t;
    return o;
  }
};

// Runs argv[0] (searched in PATH) with stdin from /dev/null or options.stdinFd. Throws
// fcvm::SysError if it cannot be started at all (e.g. not installed).
CommandResult runCommand(const std::vector<std::string>& argv, const CommandOptions& options = {});

}  // namespace fcvm
