// Where a guest's boot goes, phase by phase, as PID 1 sees it: each mark is the time since the
// kernel started (CLOCK_BOOTTIME), so the first phase is the kernel's own. The report is one
// line ("kernel 0.95 s, modules 0.12 s, ..."), which the agent prints on the console and sends the
// host after its hello (the worker logs it as "agent: boot: ...").
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace fcvm::agent {

class BootTimeline {
 public:
  // The phase that ends now.
  void mark(std::string phase);
  std::string report() const;

 private:
  std::vector<std::pair<std::string, double>> marks_;  // phase, seconds since boot at its end
};

}  // namespace fcvm::agent
