#include "base/process_identity.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm {
namespace {

// The state (field 3) and start time (field 22) of /proc/PID/stat.
struct ProcessStat {
  char state = '?';
  uint64_t startTime = 0;
};

std::optional<ProcessStat> readStat(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  ProcessStat stat;
  std::string field;
  if (!(rest >> stat.state)) return std::nullopt;
  // Fields 4..21 precede the start time.
  for (int i = 4; i <= 21; ++i) {
    if (!(rest >> field)) return std::nullopt;
  }
  if (!(rest >> stat.startTime)) return std::nullopt;
  return stat;
}

}  // namespace

std::optional<std::string> readProcessFile(pid_t pid, const char* file) {
  constexpr size_t kMax = 1 << 20;
  if (pid <= 0) return std::nullopt;
  UniqueFd fd(::open(fmt::format("/proc/{}/{}", pid, file).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  std::string text;
  char buffer[4096];
  while (text.size() < kMax) {
    ssize_t n = retryEintr([&] { return ::read(fd.get(), buffer, sizeof buffer); });
    if (n < 0) return std::nullopt;
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

std::optional<uint64_t> processStartTime(pid_t pid) {
  auto stat = readStat(pid);
  if (!stat) return std::nullopt;
  return stat->startTime;
}

bool isSameProcessAlive(pid_t pid, uint64_t startTime) {
  auto stat = readStat(pid);
  // A zombie is dead, only not reaped yet: under an init that does not reap (a container's), a
  // killed worker's pid would otherwise pass for a live one.
  return stat && stat->startTime == startTime && stat->state != 'Z' && stat->state != 'X';
}

}  // namespace fcvm
