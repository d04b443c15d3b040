#include "setup/guest_setup.h"

#include <unistd.h>

#include <chrono>

#include "base/error.h"
#include "base/free_space.h"
#include "setup/artifact_store.h"
#include "setup/debian_mirror.h"
#include "setup/guest_kernel.h"
#include "setup/initramfs.h"
#include "setup/reflink_storage.h"
#include "setup/rootfs.h"

namespace fcvm::setup {
namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Runs one step, timing it and printing its outcome.
template <typename F>
SetupStep step(const SetupOptions& options, const std::string& name, const std::string& doing,
               F&& body) {
  if (options.progress) *options.progress << "fcvm setup: " << name << ": " << doing << std::endl;
  auto start = Clock::now();
  SetupStep s = body();
  s.name = name;
  s.seconds = secondsSince(start);
  if (options.progress) {
    *options.progress << fmt::format("fcvm setup: {}: {} {} ({:.1f} s){}\n", name,
                                     s.built ? "built" : "up to date", s.path.string(), s.seconds,
                                     s.detail.empty() ? "" : ", " + s.detail)
                      << std::flush;
  }
  return s;
}

std::string mib(uint64_t bytes) { return fmt::format("{:.0f} MiB", bytes / 1048576.0); }

}  // namespace

// What a first setup writes at most: the rootfs tree and its ext4 image, packages, the kernel.
constexpr uint64_t kSetupSpace = uint64_t{2} << 30;

SetupReport runSetup(const SetupOptions& options) {
  if (::geteuid() != 0) {
    throw Error("fcvm setup needs root (it runs debootstrap and creates device nodes)");
  }
  auto start = Clock::now();
  const Paths& paths = options.paths;
  ensureOwnedDirectory(paths.dataDir, 0755);
  ensureOwnedDirectory(paths.logDir(), 0755);
  std::string log = (paths.logDir() / "setup.log").string();
  // A first setup (or --force) refuses to start short of space rather than failing in debootstrap.
  // The data dir's file system is the one to check: a loopback storage is a sparse file on it.
  if (options.force || !currentArtifacts(paths.dataDir)) {
    requireFreeSpace(paths.dataDir, kSetupSpace,
                     "the guest artifacts (kernel, initramfs, a bookworm rootfs with podman)");
  }
  SetupReport report;
  report.steps.push_back(step(options, "storage", "a file system that can reflink VM disks", [&] {
    auto storage = ensureReflinkStorage(paths.dataDir, log);
    return SetupStep{"", "", storage.dir, storage.created, 0, storage.detail};
  }));
  ArtifactStore store(storageDir(paths.dataDir) / "artifacts");

  KernelArtifact kernel;
  report.steps.push_back(step(options, "kernel", "Debian linux-image-cloud-amd64", [&] {
    kernel = ensureKernel(store, options.force, log);
    return SetupStep{"",           kernel.key, kernel.vmlinux,
                     kernel.built, 0,          kernel.package + " " + kernel.version};
  }));

  report.steps.push_back(step(options, "initramfs", "fc-agent and kernel modules", [&] {
    auto initramfs = ensureInitramfs(store, kernel, options.agentBinary, options.force);
    return SetupStep{"",
                     initramfs.key,
                     initramfs.image,
                     initramfs.built,
                     0,
                     mib(std::filesystem::file_size(initramfs.image))};
  }));

  std::string mirror = hostDebianMirror("bookworm");
  report.steps.push_back(step(options, "rootfs", "Debian bookworm with podman from " + mirror, [&] {
    RootfsOptions rootfsOptions{mirror, paths.cacheDir() / "debs", log, options.force};
    auto rootfs = ensureRootfs(store, rootfsOptions);
    return SetupStep{"",           rootfs.key, rootfs.image,
                     rootfs.built, 0,          mib(rootfs.bytesUsed) + " used"};
  }));

  store.setCurrent(report.steps[1].key, report.steps[2].key, report.steps[3].key, kernel.version);
  report.seconds = secondsSince(start);
  return report;
}

nlohmann::json toJson(const SetupReport& report) {
  nlohmann::json steps = nlohmann::json::object();
  for (const auto& s : report.steps) {
    steps[s.name] = {{"key", s.key},
                     {"path", s.path.string()},
                     {"built", s.built},
                     {"seconds", s.seconds},
                     {"detail", s.detail}};
  }
  return {{"artifacts", steps}, {"seconds", report.seconds}};
}

}  // namespace fcvm::setup
