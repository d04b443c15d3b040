#include "base/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <mutex>

#include "base/capped_file.h"
#include "base/error.h"

namespace fcvm {
namespace {

constexpr const char* kPattern = "%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %n  %v";
std::string gComponent = "fcvm";

std::string loggerName(std::string_view component, std::string_view vm) {
  return fmt::format("{} vm={}", component, vm.empty() ? "-" : vm);
}

void pointStdioAt(int fd) {
  ::dup3(fd, STDOUT_FILENO, 0);
  ::dup3(fd, STDERR_FILENO, 0);
}

// spdlog's rotating_file_sink would rotate the file but leave stdout and stderr on the old one,
// where a writer other than spdlog would grow it unseen; this sink moves them along.
class CappedFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  CappedFileSink(const std::string& path, uint64_t cap) : file_(path, cap, pointStdioAt) {
    pointStdioAt(file_.fd());
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    file_.append(std::string_view(line.data(), line.size()));
  }
  void flush_() override {}  // every line is its own write(2)

 private:
  CappedFile file_;
};

}  // namespace

uint64_t processLogCap() {
  return logCapFromEnvironment("FCVM_LOG_MAX_BYTES", kDefaultProcessLogCap, kMinProcessLogCap);
}

void initLogging(std::string_view component, const LogOptions& options) {
  gComponent = component;
  spdlog::sink_ptr sink;
  if (options.file.empty()) {
    sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>(spdlog::color_mode::automatic);
  } else {
    sink = std::make_shared<CappedFileSink>(options.file, processLogCap());
  }
  auto logger = std::make_shared<spdlog::logger>(loggerName(component, ""), sink);
  logger->set_pattern(kPattern);
  logger->set_level(options.level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

std::shared_ptr<spdlog::logger> vmLogger(std::string_view vmName) {
  auto base = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(loggerName(gComponent, vmName),
                                                 base->sinks().begin(), base->sinks().end());
  logger->set_pattern(kPattern);
  logger->set_level(base->level());
  logger->flush_on(spdlog::level::info);
  return logger;
}

spdlog::level::level_enum parseLogLevel(std::string_view name) {
  auto level = spdlog::level::from_str(std::string(name));
  // from_str answers "off" for anything it does not know; accept "off" only when asked for.
  if (level == spdlog::level::off && name != "off") {
    throw Error(fmt::format("unknown log level '{}' (trace|debug|info|warn|error|off)", name));
  }
  return level;
}

}  // namespace fcvm
