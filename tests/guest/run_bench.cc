// `make bench-run`: what fcvm adds to QEMU for a user's `fcvm podman run`, side by side in one run.
// Time: the whole `fcvm podman run --rm IMAGE true` (supervisor already running) beside a bare
// QEMU boot of the same kernel to a trivial /init, with guest RAM on tmpfs (the default) and on
// disk. Memory: fcvm's own per VM (its worker plus a share of the supervisor) beside QEMU's, with
// a few detached VMs running. fcvm is driven through its binaries, exactly as a user would.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/error.h"
#include "tests/guest/guest_vm.h"
#include "tests/support/fcvm_instance.h"
#include "worker/accelerator.h"

namespace fcvm::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRuns = 3;
constexpr int kVms = 3;
constexpr const char* kImage = "localhost/fcvm-test-busybox:latest";
// A watchdog for one command on a loaded 2-core host under TCG; it bounds a hang, nothing more.
constexpr auto kCommandDeadline = std::chrono::seconds(600);

const std::vector<std::string> kRunTrue = {"podman", "run", "--rm", kImage, "true"};

std::string commandLine(const std::vector<std::string>& args) {
  std::string line = "fcvm";
  for (const auto& a : args) line += " " + a;
  return line;
}

std::string logTail(const FcvmInstance& fcvm) {
  std::ifstream in(fcvm.log());
  std::string log((std::istreambuf_iterator<char>(in)), {});
  return log.size() > 3000 ? log.substr(log.size() - 3000) : log;
}

// Runs `fcvm ARGS` in `fcvm`; returns its output, or throws unless it succeeded.
std::string ok(const FcvmInstance& fcvm, const std::vector<std::string>& args) {
  auto r = fcvm.fcvm(args, std::nullopt, kCommandDeadline);
  if (r.exitCode != 0) {
    throw Error(fmt::format("`{}` {}:\n{}\nsupervisor log ends:\n{}", commandLine(args),
                            r.timedOut ? "timed out" : fmt::format("exited {}", r.exitCode),
                            r.output, logTail(fcvm)));
  }
  return r.output;
}

double secondsOf(const std::function<void()>& work) {
  auto start = Clock::now();
  work();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Starts the instance's supervisor and runs the image once: an image's first run prepares its
// image disk, which the timed runs then find ready.
void warmUp(const FcvmInstance& fcvm) {
  ok(fcvm, {"supervisor", "start"});
  ok(fcvm, kRunTrue);
}

std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return fmt::format("{} {} {}", one, five, fifteen);
}

// VMs started with `podman run -d`, removed (`rm -f`) when this goes, also when the bench fails.
class DetachedVms {
 public:
  explicit DetachedVms(const FcvmInstance& fcvm) : fcvm_(fcvm) {}
  ~DetachedVms() {
    for (const auto& name : names_) {
      try {
        fcvm_.fcvm({"rm", "-f", "--name", name}, {}, kCommandDeadline);
      } catch (const std::exception&) {
        // Already failing; the instance's destructor kills what is left.
      }
    }
  }
  DetachedVms(const DetachedVms&) = delete;
  DetachedVms& operator=(const DetachedVms&) = delete;

  void start(const std::string& name, const std::vector<std::string>& command) {
    names_.push_back(name);  // first: a half-started VM is removed too
    std::vector<std::string> args = {"podman", "run", "-d", "--name", name, kImage};
    args.insert(args.end(), command.begin(), command.end());
    ok(fcvm_, args);
  }
  // Removes them now, so that a failure to remove is reported.
  void removeAll() {
    while (!names_.empty()) {
      ok(fcvm_, {"rm", "-f", "--name", names_.back()});
      names_.pop_back();
    }
  }
  const std::vector<std::string>& names() const { return names_; }

 private:
  const FcvmInstance& fcvm_;
  std::vector<std::string> names_;
};

struct Memory {
  double rssMib = 0;  // VmRSS
  double pssMib = 0;  // Pss: shared pages divided among their users

  Memory operator+(const Memory& o) const { return {rssMib + o.rssMib, pssMib + o.pssMib}; }
  Memory operator/(double d) const { return {rssMib / d, pssMib / d}; }
};

// The kB field `key` of /proc/PID/FILE (status, smaps_rollup), in MiB.
double procFieldMib(pid_t pid, const char* file, const std::string& key) {
  auto path = fmt::format("/proc/{}/{}", pid, file);
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024;
  }
  throw Error(fmt::format("no {} in {} (has the process gone?)", key, path));
}

Memory memoryOf(pid_t pid) {
  return {procFieldMib(pid, "status", "VmRSS"), procFieldMib(pid, "smaps_rollup", "Pss")};
}

std::string commName(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/comm", pid));
  std::string name;
  std::getline(in, name);
  return name;
}

// The QEMU that `worker` runs: its child named qemu-system-*.
pid_t qemuOf(pid_t worker) {
  for (const auto& task :
       std::filesystem::directory_iterator(fmt::format("/proc/{}/task", worker))) {
    std::ifstream in(task.path() / "children");
    pid_t child = 0;
    while (in >> child) {
      if (commName(child).rfind("qemu-system", 0) == 0) return child;
    }
  }
  throw Error(fmt::format("worker {} has no qemu-system child", worker));
}

struct VmMemory {
  std::string name;
  pid_t worker = 0;
  pid_t qemu = 0;
  Memory workerMemory;
  Memory qemuMemory;
};

struct MemoryFigures {
  pid_t supervisor = 0;
  Memory supervisorMemory;
  std::vector<VmMemory> vms;
};

// Starts kVms detached VMs, waits until each is healthy, reads the memory of their workers, their
// QEMUs and the supervisor, and removes them.
MemoryFigures measureMemory(const FcvmInstance& fcvm) {
  DetachedVms vms(fcvm);
  for (int i = 1; i <= kVms; ++i) vms.start(fmt::format("b{}", i), {"sleep", "600"});
  for (const auto& name : vms.names()) ok(fcvm, {"wait", "--name", name, "--condition", "healthy"});

  MemoryFigures figures;
  auto status = nlohmann::json::parse(ok(fcvm, {"supervisor", "status", "--json"}));
  figures.supervisor = status.at("pid").get<pid_t>();
  for (const auto& name : vms.names()) {
    VmMemory vm;
    vm.name = name;
    vm.worker =
        nlohmann::json::parse(ok(fcvm, {"inspect", "--name", name})).at("worker_pid").get<pid_t>();
    if (vm.worker <= 0) throw Error(fmt::format("VM {} has no worker pid", name));
    vm.qemu = qemuOf(vm.worker);
    vm.workerMemory = memoryOf(vm.worker);
    vm.qemuMemory = memoryOf(vm.qemu);
    figures.vms.push_back(vm);
  }
  figures.supervisorMemory = memoryOf(figures.supervisor);
  vms.removeAll();
  return figures;
}

int run() {
  auto artifacts = testArtifacts();
  auto storage = testDataDir() / "storage";
  TempDir dir("fcvm-bench-run");
  // The accelerator fcvm's workers choose for this kernel; the bare boot uses the same.
  auto accel = worker::chooseAccelerator({artifacts.kernel, dir / "accel-probe"},
                                         worker::AccelRequest::kAuto);
  auto initramfs = bareInitramfs(dir);

  FcvmInstance tmpfs(storage, GuestMemoryOn::kTmpfs);
  FcvmInstance disk(storage, GuestMemoryOn::kDisk);
  warmUp(tmpfs);
  warmUp(disk);
  // Interleaved rounds, so that the load of a shared host weighs on each figure alike.
  auto loadBefore = loadAverage();
  std::vector<double> bare, onTmpfs, onDisk;
  for (int i = 0; i < kRuns; ++i) {
    bare.push_back(bareBootSeconds(artifacts, initramfs, accel.name));
    onTmpfs.push_back(secondsOf([&] { ok(tmpfs, kRunTrue); }));
    onDisk.push_back(secondsOf([&] { ok(disk, kRunTrue); }));
  }
  auto loadAfter = loadAverage();
  for (auto* s : {&bare, &onTmpfs, &onDisk}) std::sort(s->begin(), s->end());
  auto memory = measureMemory(tmpfs);

  auto samples = [](const std::vector<double>& s) {
    return fmt::format("{:.2f}", fmt::join(s, " "));
  };
  double base = median(bare);
  fmt::print("fcvm podman run vs bare QEMU under {}, median of {} runs (kernel {})\n", accel.name,
             kRuns, artifacts.kernelVersion);
  fmt::print("{:<52} {:>9} {:>8}   {}\n", "", "seconds", "x bare", "all runs, sorted");
  auto row = [&](const std::string& what, const std::vector<double>& s) {
    fmt::print("{:<52} {:>9.2f} {:>8.2f}   {}\n", what, median(s), median(s) / base, samples(s));
  };
  row("bare QEMU boot: kernel to trivial /init, power off", bare);
  row("fcvm podman run --rm IMAGE true, RAM on tmpfs", onTmpfs);
  row("fcvm podman run --rm IMAGE true, RAM on disk", onDisk);
  fmt::print("  IMAGE = {}; after 1 warm-up run each, supervisor already running\n", kImage);
  fmt::print("  RAM file dirs (FCVM_MEMORY_DIR): tmpfs {}, disk {}\n", tmpfs.memoryDir().string(),
             disk.memoryDir().string());
  fmt::print("  rounds interleaved (bare, tmpfs, disk); host load average before {}, after {}\n\n",
             loadBefore, loadAfter);

  Memory workers, qemus;
  for (const auto& vm : memory.vms) {
    workers = workers + vm.workerMemory;
    qemus = qemus + vm.qemuMemory;
  }
  double n = static_cast<double>(memory.vms.size());
  Memory worker = workers / n, qemu = qemus / n, supervisorShare = memory.supervisorMemory / n;
  Memory own = worker + supervisorShare;
  fmt::print("memory per VM, {} VMs from `fcvm podman run -d IMAGE sleep 600`, all healthy\n",
             kVms);
  fmt::print("{:<52} {:>9} {:>8} {:>9} {:>8}\n", "", "RSS MiB", "x qemu", "PSS MiB", "x qemu");
  auto memoryRow = [&](const std::string& what, const Memory& m) {
    fmt::print("{:<52} {:>9.1f} {:>8.3f} {:>9.1f} {:>8.3f}\n", what, m.rssMib,
               m.rssMib / qemu.rssMib, m.pssMib, m.pssMib / qemu.pssMib);
  };
  memoryRow("QEMU (mean)", qemu);
  memoryRow(fmt::format("fcvm's own: worker + supervisor/{}", kVms), own);
  memoryRow("  worker (mean)", worker);
  memoryRow(fmt::format("  supervisor/{}", kVms), supervisorShare);
  fmt::print("  per process, RSS/PSS MiB:\n");
  for (const auto& vm : memory.vms) {
    fmt::print("    {}: fcvm-worker pid {} {:.1f}/{:.1f}, qemu pid {} {:.1f}/{:.1f}\n", vm.name,
               vm.worker, vm.workerMemory.rssMib, vm.workerMemory.pssMib, vm.qemu,
               vm.qemuMemory.rssMib, vm.qemuMemory.pssMib);
  }
  fmt::print("    fcvm-supervisor pid {} {:.1f}/{:.1f}\n", memory.supervisor,
             memory.supervisorMemory.rssMib, memory.supervisorMemory.pssMib);
  return 0;
}

}  // namespace
}  // namespace fcvm::testing

int main() { return fcvm::testing::benchMain("bench-run", fcvm::testing::run); }
