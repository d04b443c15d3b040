// The `fcvm` command line: the command tree (CLI11) and what each command does.
#pragma once

#include <sys/types.h>

#include <ostream>
#include <string>
#include <vector>

#include "base/paths.h"

namespace fcvm::cli {

// Exit codes every command shares (a foreground `podman run` will return the container's own).
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotImplemented = 3;
inline constexpr int kExitNotRunning = 4;

struct CliContext {
  std::ostream& out;
  std::ostream& err;
  Environment env;
  uid_t uid;
};

// Parses `args` (args[0] is the program name) and runs the command. Never throws: every failure
// becomes one line "fcvm: error: ..." on err and a nonzero exit code.
int runCli(const std::vector<std::string>& args, const CliContext& context);

}  // namespace fcvm::cli
