// What the benchmarks that drive fcvm through its binaries share: running `fcvm` commands that
// must succeed, timing, detached VMs removed however the bench ends, and reading the memory of
// the processes behind a VM.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tests/support/fcvm_instance.h"

namespace fcvm::testing {

constexpr const char* kImage = "localhost/fcvm-test-busybox:latest";
// A watchdog for one command on a loaded 2-core host under TCG; it bounds a hang, nothing more.
constexpr auto kCommandDeadline = std::chrono::seconds(600);

// Runs `fcvm ARGS` in `fcvm`; returns its output, or throws (with the supervisor log's end)
// unless it succeeded.
std::string ok(const FcvmInstance& fcvm, const std::vector<std::string>& args);
double secondsOf(const std::function<void()>& work);
std::string loadAverage();  // /proc/loadavg's three figures

// VMs started with `podman run -d` (or added by name), removed (`rm -f`) when this goes, also
// when the bench fails.
class DetachedVms {
 public:
  DetachedVms(const FcvmInstance& fcvm, std::string image);
  ~DetachedVms();
  DetachedVms(const DetachedVms&) = delete;
  DetachedVms& operator=(const DetachedVms&) = delete;

  void start(const std::string& name, const std::vector<std::string>& command,
             const std::vector<std::string>& options = {});
  void add(const std::string& name) { names_.push_back(name); }  // started some other way
  // Removes them now, so that a failure to remove is reported.
  void removeAll();
  const std::vector<std::string>& names() const { return names_; }

 private:
  const FcvmInstance& fcvm_;
  std::string image_;
  std::vector<std::string> names_;
};

struct Memory {
  double rssMib = 0;  // VmRSS
  double pssMib = 0;  // Pss: shared pages divided among their users

  Memory operator+(const Memory& o) const { return {rssMib + o.rssMib, pssMib + o.pssMib}; }
  Memory operator/(double d) const { return {rssMib / d, pssMib / d}; }
};

Memory memoryOf(pid_t pid);
// The QEMU that `worker` runs: its child named qemu-system-*.
pid_t qemuOf(pid_t worker);
// The worker pid of VM `name`, from `fcvm inspect`.
pid_t workerOf(const FcvmInstance& fcvm, const std::string& name);

}  // namespace fcvm::testing
