// One log line format for every fcvm process:
//   2026-11-26T19:50:01.123 info  supervisor vm=web  started worker pid 4242
// The component and the VM (or "-") stand on every line; colours only when stderr is a TTY.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace fcvm {

// A process log's cap on disk (the file and its rotated .1), unless FCVM_LOG_MAX_BYTES says
// otherwise; the same cap bounds each VM's console log.
inline constexpr uint64_t kDefaultProcessLogCap = uint64_t{16} << 20;
inline constexpr uint64_t kMinProcessLogCap = uint64_t{64} << 10;
uint64_t processLogCap();

struct LogOptions {
  spdlog::level::level_enum level = spdlog::level::info;
  // Append here instead of stderr when set, rotating at half of processLogCap(). The process's
  // stdout and stderr are pointed at the file too (and again after each rotation), so that what
  // is written there directly (a crash report, a child's output) is capped with the rest.
  std::string file;
};

// Installs the process-wide default logger for `component` (supervisor, worker, netd, cli, ...).
void initLogging(std::string_view component, const LogOptions& options = {});

// A logger that writes through the default logger's sinks with the VM's name on every line.
std::shared_ptr<spdlog::logger> vmLogger(std::string_view vmName);

// Parses "trace|debug|info|warn|error|off"; throws fcvm::Error on anything else.
spdlog::level::level_enum parseLogLevel(std::string_view name);

}  // namespace fcvm
