// `make bench-snapshot`: what snapshots buy, side by side in one run, through the real binaries.
//  - a clone to healthy (`snapshot run -d` + `wait healthy`) vs a cold `podman run -d` of the
//    same image to healthy;
//  - the pause of `snapshot create` (paused to resumed) for 256 MiB and 1 GiB VMs, idle and with
//    half of a 1 GiB guest's memory written;
//  - the memory (QEMU's PSS: its own plus guest RAM) of N idle clones vs N idle cold VMs;
//  - the time until N clones started at once are all healthy.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "tests/guest/bench_vms.h"
#include "tests/guest/guest_vm.h"

namespace fcvm::testing {
namespace {

constexpr int kRuns = 3;
constexpr int kMany = 10;
const std::vector<std::string> kIdle = {"sleep", "3600"};

double pauseMs(const FcvmInstance& fcvm, const std::string& vm, const std::string& tag) {
  auto created =
      nlohmann::json::parse(ok(fcvm, {"snapshot", "create", "--name", vm, "--tag", tag, "--json"}));
  return created.at("pause_ms").get<double>();
}

double totalQemuPss(const FcvmInstance& fcvm, const std::vector<std::string>& names) {
  double total = 0;
  for (const auto& name : names) total += memoryOf(qemuOf(workerOf(fcvm, name))).pssMib;
  return total;
}

void waitHealthy(const FcvmInstance& fcvm, const std::vector<std::string>& names) {
  for (const auto& name : names) ok(fcvm, {"wait", "--name", name, "--condition", "healthy"});
}

std::string samples(const std::vector<double>& s) {
  return fmt::format("{:.3f}", fmt::join(s, " "));
}

int run() {
  FcvmInstance fcvm(testDataDir() / "storage");
  ok(fcvm, {"supervisor", "start"});
  DetachedVms vms(fcvm, kImage);
  vms.start("warm-up", {"true"});  // prepares the image disk once
  ok(fcvm, {"wait", "--name", "warm-up", "--condition", "ended"});

  // Clone vs cold, rounds interleaved so that the host's load weighs on both alike.
  vms.start("source", kIdle);
  waitHealthy(fcvm, {"source"});
  pauseMs(fcvm, "source", "idle-256");
  auto loadBefore = loadAverage();
  std::vector<double> cold, clone;
  for (int i = 0; i < kRuns; ++i) {
    auto coldName = fmt::format("cold-{}", i), cloneName = fmt::format("clone-{}", i);
    cold.push_back(secondsOf([&] {
      vms.start(coldName, kIdle);
      waitHealthy(fcvm, {coldName});
    }));
    clone.push_back(secondsOf([&] {
      vms.add(cloneName);
      ok(fcvm, {"snapshot", "run", "--from", "idle-256", "--name", cloneName, "-d"});
      waitHealthy(fcvm, {cloneName});
    }));
  }
  auto loadAfter = loadAverage();
  vms.removeAll();
  std::sort(cold.begin(), cold.end());
  std::sort(clone.begin(), clone.end());
  fmt::print("clone vs cold start to healthy (`fcvm wait --condition healthy`), median of {}\n",
             kRuns);
  fmt::print("{:<52} {:>9} {:>8}   {}\n", "", "seconds", "x clone", "all runs, sorted");
  fmt::print("{:<52} {:>9.3f} {:>8.2f}   {}\n", "snapshot run --from TAG -d", median(clone), 1.0,
             samples(clone));
  fmt::print("{:<52} {:>9.3f} {:>8.2f}   {}\n", "podman run -d IMAGE (cold)", median(cold),
             median(cold) / median(clone), samples(cold));
  fmt::print("  IMAGE = {} sleep 3600; host load average before {}, after {}\n\n", kImage,
             loadBefore, loadAfter);

  // Pause of snapshot create.
  vms.start("small", kIdle);
  vms.start("large", kIdle, {"--mem", "1024"});
  waitHealthy(fcvm, {"small", "large"});
  double small = pauseMs(fcvm, "small", "pause-256");
  double large = pauseMs(fcvm, "large", "pause-1g");
  // Half of the large guest's memory written (a tmpfs in the guest, filled with non-zero data).
  ok(fcvm, {"exec", "--name", "large", "--", "sh", "-c",
            "mkdir -p /run/fill && mount -t tmpfs -o size=600m fill /run/fill && "
            "yes 0123456789abcdef | head -c 512m > /run/fill/data"});
  double filled = pauseMs(fcvm, "large", "pause-1g-filled");
  auto memoryOfSnapshot = [&](const std::string& tag) {
    for (const auto& s : nlohmann::json::parse(ok(fcvm, {"snapshot", "ls", "--json"}))) {
      if (s.at("tag") == tag) return s.at("memory_bytes").get<uint64_t>() >> 20;
    }
    throw Error("no snapshot " + tag);
  };
  fmt::print("pause of `fcvm snapshot create` (guest paused to resumed)\n");
  fmt::print("{:<52} {:>9} {:>12}\n", "", "ms", "memory MiB");
  fmt::print("{:<52} {:>9.1f} {:>12}\n", "256 MiB VM, idle", small, memoryOfSnapshot("pause-256"));
  fmt::print("{:<52} {:>9.1f} {:>12}\n", "1 GiB VM, idle", large, memoryOfSnapshot("pause-1g"));
  fmt::print("{:<52} {:>9.1f} {:>12}\n", "1 GiB VM, 512 MiB of it written", filled,
             memoryOfSnapshot("pause-1g-filled"));
  fmt::print("  memory: the guest memory the snapshot holds (the data of the sparse image)\n\n");
  vms.removeAll();
  for (const char* tag : {"pause-256", "pause-1g", "pause-1g-filled"}) {
    ok(fcvm, {"snapshot", "rm", tag});
  }

  // N clones started at once, then their memory beside N cold VMs'.
  std::vector<std::string> clones, colds;
  for (int i = 0; i < kMany; ++i) clones.push_back(fmt::format("many-{}", i));
  double allHealthy = secondsOf([&] {
    for (const auto& name : clones) {
      vms.add(name);
      ok(fcvm, {"snapshot", "run", "--from", "idle-256", "--name", name, "-d"});
    }
    waitHealthy(fcvm, clones);
  });
  double clonePss = totalQemuPss(fcvm, clones);
  vms.removeAll();
  for (int i = 0; i < kMany; ++i) {
    colds.push_back(fmt::format("cold-many-{}", i));
    vms.start(colds.back(), kIdle);
  }
  waitHealthy(fcvm, colds);
  double coldPss = totalQemuPss(fcvm, colds);
  vms.removeAll();
  fmt::print("{} idle VMs of the same image\n", kMany);
  fmt::print("{:<52} {:>12} {:>8}\n", "", "PSS MiB", "x cold");
  fmt::print("{:<52} {:>12.1f} {:>8.2f}\n", "clones of one snapshot: QEMU PSS, all", clonePss,
             clonePss / coldPss);
  fmt::print("{:<52} {:>12.1f} {:>8.2f}\n", "cold VMs: QEMU PSS, all", coldPss, 1.0);
  fmt::print("{:<52} {:>12.2f} s\n", fmt::format("{} clones started at once, all healthy", kMany),
             allHealthy);
  ok(fcvm, {"snapshot", "rm", "-f", "idle-256"});
  return 0;
}

}  // namespace
}  // namespace fcvm::testing

int main() { return fcvm::testing::benchMain("bench-snapshot", fcvm::testing::run); }
