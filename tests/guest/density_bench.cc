// `make bench-density`: how many idle VMs this host holds, and what each costs. For 1, 8 and 32
// VMs of `fcvm podman run -d IMAGE sleep` (the default: clones of the configuration's start-up
// snapshot) and for 8 booted ones (--no-snapshot-cache) side by side:
//  - the time from the first `podman run -d` until every VM is healthy;
//  - host memory per VM: the drop of MemAvailable, and the PSS of each VM's QEMU and worker (plus
//    a share of the supervisor's and the serve process's);
//  - idle CPU per VM: the CPU time all QEMUs, workers and the supervisor used over a window
//    after all were healthy, per VM, as a percentage of one core.
// fcvm is driven through its binaries, as a user would. `--counts 1,8` runs fewer.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "tests/guest/bench_vms.h"
#include "tests/guest/guest_vm.h"
#include "tests/support/fcvm_instance.h"

namespace fcvm::testing {
namespace {

// The window idle CPU is measured over: a measurement interval, not a wait for anything.
constexpr auto kIdleWindow = std::chrono::seconds(30);

double memAvailableMib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit) {
    if (key == "MemAvailable:") return static_cast<double>(kb) / 1024;
  }
  throw Error("no MemAvailable in /proc/meminfo");
}

// utime + stime of `pid`, in seconds.
double cpuSecondsOf(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  auto end = stat.rfind(')');
  if (end == std::string::npos) throw Error(fmt::format("pid {} has gone", pid));
  std::istringstream fields(stat.substr(end + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

struct Row {
  std::string what;
  int vms = 0;
  double secondsToHealthy = 0;
  double availableDropMib = 0;  // per VM
  Memory qemu, worker, shared;  // per VM; shared: supervisor and serve processes / vms
  double idleCpuPercent = 0;    // per VM, of one core
};

Row measure(const std::string& what, int count, bool cold) {
  auto storage = testDataDir() / "storage";
  FcvmInstance fcvm(storage, GuestMemoryOn::kTmpfs);
  ok(fcvm, {"supervisor", "start"});
  // The image prepared, and (for the default) the start-up snapshot every VM then starts from.
  ok(fcvm, {"podman", "run", "--rm", kImage, "true"});
  auto availableBefore = memAvailableMib();

  DetachedVms vms(fcvm, kImage);
  std::vector<std::string> options;
  if (cold) options.push_back("--no-snapshot-cache");
  Row row;
  row.what = what;
  row.vms = count;
  row.secondsToHealthy = secondsOf([&] {
    for (int i = 1; i <= count; ++i) vms.start(fmt::format("d{}", i), {"sleep", "36000"}, options);
    for (const auto& name : vms.names()) {
      ok(fcvm, {"wait", "--name", name, "--condition", "healthy"});
    }
  });
  row.availableDropMib = (availableBefore - memAvailableMib()) / count;

  std::vector<pid_t> processes = fcvm.processesOf("fcvm-supervisor");
  auto serves = fcvm.processesOf("fcvm-uffd-server");
  for (pid_t pid : processes) row.shared = row.shared + memoryOf(pid) / count;
  for (pid_t pid : serves) row.shared = row.shared + memoryOf(pid) / count;
  processes.insert(processes.end(), serves.begin(), serves.end());
  for (const auto& name : vms.names()) {
    pid_t worker = workerOf(fcvm, name);
    pid_t qemu = qemuOf(worker);
    row.worker = row.worker + memoryOf(worker) / count;
    row.qemu = row.qemu + memoryOf(qemu) / count;
    processes.push_back(worker);
    processes.push_back(qemu);
  }
  std::map<pid_t, double> before;
  for (pid_t pid : processes) before[pid] = cpuSecondsOf(pid);
  auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(kIdleWindow);
  double window = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double used = 0;
  for (pid_t pid : processes) used += cpuSecondsOf(pid) - before[pid];
  row.idleCpuPercent = 100 * used / window / count;
  vms.removeAll();
  return row;
}

std::vector<int> countsFrom(int argc, char** argv) {
  std::vector<int> counts = {1, 8, 32};
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) != "--counts") continue;
    counts.clear();
    std::istringstream list(argv[i + 1]);
    for (std::string n; std::getline(list, n, ',');) counts.push_back(std::stoi(n));
  }
  return counts;
}

int run(const std::vector<int>& counts) {
  std::vector<Row> rows;
  for (int count : counts) {
    rows.push_back(measure(fmt::format("{} VMs, from the start-up snapshot", count), count, false));
  }
  rows.push_back(measure("8 VMs, booted (--no-snapshot-cache)", 8, true));

  fmt::print("idle VMs of `fcvm podman run -d {} sleep`, all healthy (TCG, 1 vCPU, 256 MiB)\n",
             kImage);
  fmt::print("{:<40} {:>10} {:>11} {:>10} {:>10} {:>10} {:>10}\n", "", "s healthy", "avail MiB",
             "QEMU PSS", "worker", "shared", "idle CPU");
  for (const auto& r : rows) {
    fmt::print("{:<40} {:>10.1f} {:>11.1f} {:>10.1f} {:>10.1f} {:>10.1f} {:>9.2f}%\n", r.what,
               r.secondsToHealthy, r.availableDropMib, r.qemu.pssMib, r.worker.pssMib,
               r.shared.pssMib, r.idleCpuPercent);
  }
  const auto& baseline = rows.back();
  fmt::print("\nagainst 8 booted VMs, per VM:\n");
  for (size_t i = 0; i + 1 < rows.size(); ++i) {
    const auto& r = rows[i];
    fmt::print("{:<40} memory (MemAvailable) {:.2f}x, QEMU PSS {:.2f}x, idle CPU {:.2f}x\n", r.what,
               r.availableDropMib / baseline.availableDropMib, r.qemu.pssMib / baseline.qemu.pssMib,
               r.idleCpuPercent / baseline.idleCpuPercent);
  }
  fmt::print(
      "\nper VM: avail = the drop of the host's MemAvailable / VMs; QEMU and worker PSS (MiB);\n"
      "shared = (supervisor + serve processes) PSS / VMs; idle CPU = CPU time of every fcvm\n"
      "process and QEMU over {} s after all were healthy / VMs, in % of one core. The targets\n"
      "(issue 15): QEMU PSS <= 90 MiB, idle CPU <= 1% per VM, 32 VMs healthy at once.\n",
      kIdleWindow.count());
  return 0;
}

}  // namespace
}  // namespace fcvm::testing

int main(int argc, char** argv) {
  auto counts = fcvm::testing::countsFrom(argc, argv);
  return fcvm::testing::benchMain("bench-density", [&] { return fcvm::testing::run(counts); });
}
