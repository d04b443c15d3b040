// `make bench-run`: what fcvm adds to QEMU for a user's `fcvm podman run`, side by side in one run.
// Time: the whole `fcvm podman run --rm IMAGE true` (supervisor already running), cold (booted,
// --no-snapshot-cache) and warm (from the start-up snapshot the warm-up run left), beside a bare
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
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "base/error.h"
#include "tests/guest/bench_vms.h"
#include "tests/guest/guest_vm.h"
#include "tests/support/fcvm_instance.h"
#include "worker/accelerator.h"

namespace fcvm::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRuns = 3;
constexpr int kVms = 3;

const std::vector<std::string> kRunTrue = {"podman", "run", "--rm", kImage, "true"};
const std::vector<std::string> kColdRunTrue = {"podman", "run", "--rm", "--no-snapshot-cache",
                                               kImage,   "true"};

// Starts the instance's supervisor and runs the image once: an image's first run prepares its
// image disk, which the timed runs then find ready, and leaves the start-up snapshot warm runs
// start from.
void warmUp(const FcvmInstance& fcvm) {
  ok(fcvm, {"supervisor", "start"});
  ok(fcvm, kRunTrue);
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
  DetachedVms vms(fcvm, kImage);
  for (int i = 1; i <= kVms; ++i) vms.start(fmt::format("b{}", i), {"sleep", "600"});
  for (const auto& name : vms.names()) ok(fcvm, {"wait", "--name", name, "--condition", "healthy"});

  MemoryFigures figures;
  auto status = nlohmann::json::parse(ok(fcvm, {"supervisor", "status", "--json"}));
  figures.supervisor = status.at("pid").get<pid_t>();
  for (const auto& name : vms.names()) {
    VmMemory vm;
    vm.name = name;
    vm.worker = workerOf(fcvm, name);
    vm.qemu = qemuOf(vm.worker);
    vm.workerMemory = memoryOf(vm.worker);
    vm.qemuMemory = memoryOf(vm.qemu);
    figures.vms.push_back(vm);
  }
  figures.supervisorMemory = memoryOf(figures.supervisor);
  vms.removeAll();
  return figures;
}

// The seconds of day of a log line's timestamp ("2026-12-03T18:35:56.206 info ...").
std::optional<double> lineTime(const std::string& line) {
  static const std::regex stamp(R"(^\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d+) )");
  std::smatch m;
  if (!std::regex_search(line, m, stamp)) return std::nullopt;
  return std::stod(m[1]) * 3600 + std::stod(m[2]) * 60 + std::stod(m[3]);
}

// The time of the first line of `file` that contains `text` (and `also`, if given).
std::optional<double> timeOf(const std::filesystem::path& file, const std::string& text,
                             const std::string& also = "") {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    if (line.find(text) != std::string::npos &&
        (also.empty() || line.find(also) != std::string::npos)) {
      return lineTime(line);
    }
  }
  return std::nullopt;
}

// The text after `text` on the first line of `file` that has it.
std::string restOf(const std::filesystem::path& file, const std::string& text) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    auto at = line.find(text);
    if (at != std::string::npos) return line.substr(at + text.size());
  }
  return "";
}

struct Phases {
  double wall = 0;
  std::vector<std::pair<std::string, std::optional<double>>> steps;  // name, seconds
  std::string bootLine;  // the guest agent's own breakdown of a booted guest
};

// One `podman run --name NAME IMAGE true` (kept until its logs are read), timed as a whole and
// phase by phase from the supervisor's and its worker's logs.
Phases phasesOf(const FcvmInstance& fcvm, const std::string& name, bool cold) {
  std::vector<std::string> args = {"podman", "run", "--name", name};
  if (cold) args.push_back("--no-snapshot-cache");
  args.insert(args.end(), {kImage, "true"});
  Phases p;
  p.wall = secondsOf([&] { ok(fcvm, args); });
  auto vm = nlohmann::json::parse(ok(fcvm, {"inspect", "--name", name}));
  auto worker = fcvm.dataDir() / "vms" / vm.at("id").get<std::string>() / "worker.log";
  auto requested = timeOf(fcvm.log(), "runs VM " + name + " (");
  // A cold run's image is prepared by its worker, in the next step.
  auto resolved = cold ? requested : timeOf(fcvm.log(), "VM " + name + " (", "start-up snapshot");
  auto qemu = timeOf(worker, "qemu pid");
  auto answered = timeOf(worker, "guest agent");
  auto plan = timeOf(worker, "state running");
  auto running = timeOf(worker, "state healthy");
  auto exited = timeOf(worker, "container exited");
  auto ended = timeOf(worker, "VM ended");
  auto between = [](std::optional<double> a, std::optional<double> b) -> std::optional<double> {
    if (!a || !b) return std::nullopt;
    return *b - *a;
  };
  p.steps = {
      {"image resolved (fcvm-worker --prepare-image)", between(requested, resolved)},
      {"worker: image (cold), disk, QEMU started", between(resolved, qemu)},
      {"guest booted or restored, its agent answered", between(qemu, answered)},
      {"the container's plan sent", between(answered, plan)},
      {"podman run in the guest, to the container running", between(plan, running)},
      {"`true` runs, podman's teardown", between(running, exited)},
      {"the guest powers off, QEMU exits", between(exited, ended)},
  };
  double sum = 0;
  for (const auto& [what, seconds] : p.steps) sum += seconds.value_or(0);
  p.steps.emplace_back("the rest: CLI, supervisor, worker start and end", p.wall - sum);
  p.bootLine = restOf(worker, "agent: boot: ");
  ok(fcvm, {"rm", "--name", name});
  return p;
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
  std::vector<double> bare, coldTmpfs, warmTmpfs, coldDisk, warmDisk;
  for (int i = 0; i < kRuns; ++i) {
    bare.push_back(bareBootSeconds(artifacts, initramfs, accel.name));
    coldTmpfs.push_back(secondsOf([&] { ok(tmpfs, kColdRunTrue); }));
    warmTmpfs.push_back(secondsOf([&] { ok(tmpfs, kRunTrue); }));
    coldDisk.push_back(secondsOf([&] { ok(disk, kColdRunTrue); }));
    warmDisk.push_back(secondsOf([&] { ok(disk, kRunTrue); }));
  }
  auto loadAfter = loadAverage();
  for (auto* s : {&bare, &coldTmpfs, &warmTmpfs, &coldDisk, &warmDisk}) {
    std::sort(s->begin(), s->end());
  }
  auto cold = phasesOf(tmpfs, "phases-cold", true);
  auto warm = phasesOf(tmpfs, "phases-warm", false);
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
  row("cold: podman run --rm IMAGE true, RAM on tmpfs", coldTmpfs);
  row("warm: the same from its start-up snapshot", warmTmpfs);
  row("cold: podman run --rm IMAGE true, RAM on disk", coldDisk);
  row("warm: the same from its start-up snapshot", warmDisk);
  fmt::print("  IMAGE = {}; after 1 warm-up run each, supervisor already running\n", kImage);
  fmt::print(
      "  cold: --no-snapshot-cache (booted); warm: the default, restored from the entry the\n"
      "  warm-up run left\n");
  fmt::print("  RAM file dirs (FCVM_MEMORY_DIR): tmpfs {}, disk {}\n", tmpfs.memoryDir().string(),
             disk.memoryDir().string());
  fmt::print("  rounds interleaved; host load average before {}, after {}\n\n", loadBefore,
             loadAfter);

  fmt::print("where one run's time goes (RAM on tmpfs), from the supervisor's and worker's logs\n");
  fmt::print("{:<52} {:>9} {:>9}\n", "", "cold s", "warm s");
  auto seconds = [](const std::optional<double>& s) {
    return s ? fmt::format("{:.2f}", *s) : std::string("-");
  };
  for (size_t i = 0; i < cold.steps.size(); ++i) {
    fmt::print("{:<52} {:>9} {:>9}\n", cold.steps[i].first, seconds(cold.steps[i].second),
               seconds(warm.steps[i].second));
  }
  fmt::print("{:<52} {:>9.2f} {:>9.2f}\n", "the whole run (wall)", cold.wall, warm.wall);
  fmt::print("  the booted guest, by its agent: {}\n\n", cold.bootLine);

  Memory workers, qemus;
  for (const auto& vm : memory.vms) {
    workers = workers + vm.workerMemory;
    qemus = qemus + vm.qemuMemory;
  }
  double n = static_cast<double>(memory.vms.size());
  Memory worker = workers / n, qemu = qemus / n, supervisorShare = memory.supervisorMemory / n;
  Memory own = worker + supervisorShare;
  fmt::print(
      "memory per VM, {} VMs from `fcvm podman run -d IMAGE sleep 600` (warm: clones of the "
      "start-up snapshot), all healthy\n",
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
