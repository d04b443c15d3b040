#include "agent/boot_timeline.h"

#include <time.h>

#include <cstdio>

namespace fcvm::agent {

void BootTimeline::mark(std::string phase) {
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  marks_.emplace_back(std::move(phase), static_cast<double>(now.tv_sec) + now.tv_nsec / 1e9);
}

std::string BootTimeline::report() const {
  std::string line;
  double previous = 0;
  for (const auto& [phase, at] : marks_) {
    char part[96];
    std::snprintf(part, sizeof part, "%s%s %.2f s", line.empty() ? "" : ", ", phase.c_str(),
                  at - previous);
    line += part;
    previous = at;
  }
  return line;
}

}  // namespace fcvm::agent
