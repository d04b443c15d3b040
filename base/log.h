// One log line format for every fcvm process:
//   2026-11-26T19:50:01.123 info  supervisor vm=web  started worker pid 4242
// The component and the VM (or "-") stand on every line; colours only when stderr is a TTY.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>
#include <string_view>

namespace fcvm {

struct LogOptions {
  spdlog::level::level_enum level = spdlog::level::info;
  std::string file;  // append here instead of stderr when set
};

// Installs the process-wide default logger for `component` (supervisor, worker, netd, cli, ...).
void initLogging(std::string_view component, const LogOptions& options = {});

// A logger that writes through the default logger's sinks with the VM's name on every line.
std::shared_ptr<spdlog::logger> vmLogger(std::string_view vmName);

// Parses "trace|debug|info|warn|error|off"; throws fcvm::Error on anything else.
spdlog::level::level_enum parseLogLevel(std::string_view name);

}  // namespace fcvm
