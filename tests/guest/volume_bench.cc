// `make bench-volumes`: the workloads of `make bench-fuse-pipe` (fuse-pipe/fs_workloads.h) inside
// a guest, side by side on
//   disk       the guest's own virtio-blk disk (ext4),
//   9p         a host directory through QEMU's virtio-9p server, the baseline a QEMU user has,
//   fuse-pipe  a host directory through a --map volume: the worker's VolumeServer (sandboxed
//              fuse-pipe server) on the volume's virtio-serial port, mounted by the agent's code;
// then the POSIX checks of issue 12 on each, as root and as an unprivileged uid. Target:
// fuse-pipe at least as fast as 9p on every row.
//
// The guests' cloud kernel has no 9p, so this boots Debian's generic kernel (downloaded into the
// test data dir's artifact store once, like `fcvm setup`'s) with an initramfs of its own, built
// per run: tests/guest/volume_bench_guest.cc as /init, and the modules it needs.
//
//   fcvm_volume_bench [--quick]
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/install_layout.h"
#include "base/subprocess.h"
#include "fuse-pipe/fs_workloads.h"
#include "setup/artifact_store.h"
#include "setup/guest_kernel.h"
#include "setup/initramfs.h"
#include "setup/reflink_storage.h"
#include "tests/guest/bench_vms.h"
#include "tests/guest/guest_vm.h"
#include "worker/qemu_vmm.h"
#include "worker/volume_server.h"

namespace fcvm::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// What the guest needs of the generic kernel's modules (their dependencies come along).
const std::vector<std::string> kBenchModules = {
    "virtio_mmio",    "virtio_console", "virtio_blk",   "ext4",
    "crc32c_generic", "fuse",           "9pnet_virtio", "9p"};
// Watchdog for the whole guest run on a loaded 2-core host under TCG, not a measurement.
constexpr auto kGuestDeadline = std::chrono::minutes(90);
// The guest's descriptors for its two channels (QEMU's numbers, see QemuConfig::inheritedFds).
constexpr int kVolumeFd = 100;
constexpr int kResultsFd = 101;

void runOrThrow(const std::vector<std::string>& argv) {
  auto r = runCommand(argv, CommandOptions::withTimeout(std::chrono::minutes(2)));
  if (r.exitCode != 0) throw Error(fmt::format("{} failed: {}", argv[0], r.output));
}

fs::path benchInitramfs(const TempDir& dir, const setup::KernelArtifact& kernel) {
  auto tree = dir / "initramfs";
  setup::makeInitramfsTree(tree);
  fs::copy_file(siblingBinary("fcvm-volume-bench-guest", "FCVM_VOLUME_BENCH_GUEST_BIN"),
                tree / "init");
  setup::addInitramfsModules(tree, kernel.modules,
                             setup::moduleLoadOrder(kernel.modules, kBenchModules));
  auto cpio = dir / "initramfs.cpio";
  setup::packInitramfs(tree, cpio);
  return cpio;
}

// Reads the guest's one line of results from `results` until QEMU exits.
json readResults(int results, worker::QemuProcess& qemu, const fs::path& console) {
  std::string received;
  auto deadline = std::chrono::steady_clock::now() + kGuestDeadline;
  while (received.find('\n') == std::string::npos) {
    if (std::chrono::steady_clock::now() > deadline) throw Error("the guest run timed out");
    struct pollfd fds[2] = {{results, POLLIN, 0}, {qemu.pidfd(), POLLIN, 0}};
    checkSys(::poll(fds, 2, 60'000), "poll");
    if (fds[0].revents != 0) {
      char buffer[65536];
      ssize_t n = ::read(results, buffer, sizeof buffer);
      if (n < 0 && errno != EINTR) throw SysError(errno, "read the guest's results");
      if (n == 0) break;  // QEMU is gone
      if (n > 0) received.append(buffer, n);
    } else if (fds[1].revents != 0) {
      break;  // QEMU exited and left nothing more to read
    }
  }
  auto line = received.substr(0, received.find('\n'));
  if (line.empty()) {
    std::ifstream in(console);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    throw Error("the guest sent no results; its console ends:\n" +
                text.substr(text.size() > 4000 ? text.size() - 4000 : 0));
  }
  auto result = json::parse(line);
  if (result.contains("error")) {
    throw Error("the guest failed: " + result["error"].get<std::string>());
  }
  return result;
}

void printPosix(const json& checks, const std::vector<std::string>& targets) {
  fmt::print("\nPOSIX checks (issue 12's classes), pass or what failed:\n");
  fmt::print("{:<28}", "check (uid)");
  for (const auto& t : targets) fmt::print(" {:>10}", t);
  fmt::print("\n");
  std::vector<std::string> failures;
  std::map<std::pair<std::string, unsigned>, std::map<std::string, bool>> table;
  std::vector<std::pair<std::string, unsigned>> order;
  for (const auto& c : checks) {
    auto key = std::make_pair(c.at("check").get<std::string>(), c.at("uid").get<unsigned>());
    if (!table.count(key)) order.push_back(key);
    table[key][c.at("target").get<std::string>()] = c.at("ok").get<bool>();
    if (!c.at("ok").get<bool>()) {
      failures.push_back(fmt::format("  {} as uid {} on {}: {}", key.first, key.second,
                                     c.at("target").get<std::string>(),
                                     c.at("detail").get<std::string>()));
    }
  }
  for (const auto& key : order) {
    fmt::print("{:<28}", fmt::format("{} ({})", key.first, key.second));
    for (const auto& t : targets) {
      auto it = table[key].find(t);
      fmt::print(" {:>10}", it == table[key].end() ? "-" : it->second ? "pass" : "FAIL");
    }
    fmt::print("\n");
  }
  for (const auto& f : failures) fmt::print("{}\n", f);
}

int run(int argc, char** argv) {
  bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  if (argc > 2 || (argc == 2 && !quick)) {
    fmt::print(stderr, "usage: {} [--quick]\n", argv[0]);
    return 2;
  }
  if (::geteuid() != 0) throw Error("needs root (the volume server's sandbox, mkfs)");
  const size_t bigSize = quick ? (16u << 20) : (64u << 20);
  TempDir dir("fcvm-bench-volumes");

  fmt::print("bench-volumes: Debian's generic kernel (the guests' kernel has no 9p)...\n");
  (void)std::fflush(stdout);
  setup::KernelArtifact kernel;
  {
    setup::ArtifactStore store(setup::storageDir(testDataDir()) / "artifacts");
    kernel =
        setup::ensureKernel(store, false, (dir / "kernel.log").string(), setup::kGenericKernel);
  }
  auto initramfs = benchInitramfs(dir, kernel);

  // The guest's own disk, and one host directory per share (the same data, made alike).
  auto disk = dir / "disk.ext4";
  { std::ofstream(disk).close(); }
  fs::resize_file(disk, 1ull << 30);
  runOrThrow({"mkfs.ext4", "-q", "-F", disk.string()});
  auto share9p = dir / "9p";
  auto shareFp = dir / "fuse-pipe";
  fsbench::makeData(share9p, bigSize);
  fsbench::makeData(shareFp, bigSize);

  UniqueFd volumeDir(::open(shareFp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!volumeDir) throw SysError(errno, "open " + shareFp.string());
  UniqueFd serverLog(
      ::open((dir / "fuse-pipe.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!serverLog) throw SysError(errno, "open the server's log");
  worker::VolumeServer server(0, {shareFp.string(), "/data", false}, volumeDir.get(), Credentials{},
                              serverLog.get());
  auto volumeEnd = server.takeVmEnd();
  int pair[2];
  checkSys(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), "socketpair");
  UniqueFd results(pair[0]), resultsEnd(pair[1]);

  worker::QemuConfig config;
  config.memoryMib = 1024;
  config.kernel = kernel.vmlinux;
  config.initramfs = initramfs;
  config.rootDisk = disk;  // /dev/vda
  config.ninePShares = {{share9p, "fcvm9p"}};
  config.channels = {{"fcvm.volume.v0.0", {}, kVolumeFd}, {"fcvm.bench", {}, kResultsFd}};
  config.inheritedFds = {{kVolumeFd, volumeEnd.get()}, {kResultsFd, resultsEnd.get()}};
  config.consoleLog = dir / "console.log";
  config.extraKernelArgs =
      fmt::format("fcvm.bench.big_mib={}{}", bigSize >> 20, quick ? " fcvm.bench.quick=1" : "");
  fmt::print("bench-volumes: {} {}, {} MiB sequential file{}; load average {}\n", kernel.package,
             kernel.version, bigSize >> 20, quick ? ", quick" : "", loadAverage());
  (void)std::fflush(stdout);
  json result;
  {
    worker::QemuProcess qemu(config);
    volumeEnd.reset();
    resultsEnd.reset();
    result = readResults(results.get(), qemu, config.consoleLog);
    qemu.waitExit(std::chrono::minutes(2));
  }

  auto names = result.at("targets").get<std::vector<std::string>>();
  std::vector<fsbench::Row> rows;
  for (const auto& r : result.at("rows")) {
    std::vector<double> seconds;
    for (const auto& v : r.at("seconds")) {
      seconds.push_back(v.is_null() ? std::nan("") : v.get<double>());
    }
    rows.push_back({r.at("workload"),
                    r.at("per_operation").get<bool>() ? fsbench::RowKind::kPerOperation
                                                      : fsbench::RowKind::kThroughput,
                    r.at("unit"), r.at("scale"), seconds});
  }
  fmt::print("\nin the guest (kernel {}, TCG, 1 vCPU), medians:",
             result.at("kernel").get<std::string>());
  (void)std::fflush(stdout);
  fsbench::printTable(rows, names, {{1, 0, "9p/disk"}, {2, 0, "fp/disk"}, {2, 1, "fp/9p"}});
  int missed = 0;
  fmt::print("\ntarget: fuse-pipe at least as fast as 9p (fp/9p <= 1.0x) on every row:\n");
  for (const auto& r : rows) {
    double ratio = r.figures[2] / r.figures[1];
    if (std::isnan(ratio)) {
      fmt::print("  {:<34} {:>7} (no samples from one side)\n", r.workload, "-");
      continue;
    }
    missed += ratio > 1.0;
    fmt::print("  {:<34} {:6.2f}x {}\n", r.workload, ratio, ratio <= 1.0 ? "met" : "MISSED");
  }
  fmt::print("{} row(s) missed\n", missed);
  for (const auto& [target, workload] : result.at("hung").items()) {
    fmt::print(
        "{} HUNG during \"{}\" (the sample was killed after 180 s); it gave no further samples "
        "and no POSIX checks\n",
        target, workload.get<std::string>());
  }
  printPosix(result.at("posix"), names);
  return 0;
}

}  // namespace
}  // namespace fcvm::testing

int main(int argc, char** argv) {
  return fcvm::testing::benchMain("bench-volumes", [&] { return fcvm::testing::run(argc, argv); });
}
