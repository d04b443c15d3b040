#include "base/process_identity.h"

#include <fstream>
#include <sstream>
#include <string>

namespace fcvm {

std::optional<uint64_t> processStartTime(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  // Fields 3..21 precede the start time.
  for (int i = 3; i <= 21; ++i) {
    if (!(rest >> field)) return std::nullopt;
  }
  uint64_t startTime = 0;
  if (!(rest >> startTime)) return std::nullopt;
  return startTime;
}

bool isSameProcessAlive(pid_t pid, uint64_t startTime) {
  auto now = processStartTime(pid);
  if (!now || *now != startTime) return false;
  // A zombie is dead, only not reaped yet: under an init that does not reap (a container's), a
  // killed worker's pid would otherwise pass for a live one.
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return false;
  char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace fcvm
