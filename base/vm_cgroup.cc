#include "base/vm_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/unique_fd.h"

namespace fcvm {
namespace {

constexpr const char* kParent = "fcvm";
constexpr const char* kV1Controllers[] = {"memory", "pids", "cpu"};
constexpr uint32_t kCpuPeriodUs = 100000;
// How long removing a VM's cgroup waits for what was left in it to die of SIGKILL.
constexpr std::chrono::seconds kKillWait{5};

void writeFile(const std::filesystem::path& file, const std::string& value) {
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open " + file.string());
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
    throw SysError(errno, fmt::format("write '{}' to {}", value, file.string()));
  }
}

std::string readWord(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::string all((std::istreambuf_iterator<char>(in)), {});
  return all;
}

bool hasControllers(const std::string& list) {
  std::istringstream words(list);
  bool memory = false, pids = false, cpu = false;
  for (std::string w; words >> w;) {
    memory |= w == "memory";
    pids |= w == "pids";
    cpu |= w == "cpu";
  }
  return memory && pids && cpu;
}

// SIGKILLs every process listed in `procs` and waits (bounded) until each has exited.
void killAndWait(const std::filesystem::path& procs) {
  std::ifstream in(procs);
  std::vector<UniqueFd> pidfds;
  for (pid_t pid; in >> pid;) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd) continue;  // gone already
    ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
    pidfds.push_back(std::move(pidfd));
  }
  auto deadline = std::chrono::steady_clock::now() + kKillWait;
  for (const auto& pidfd : pidfds) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd dead{pidfd.get(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&dead, 1, static_cast<int>(left.count())) != 1) break;
  }
}

void makeDir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0755) == -1 && errno != EEXIST) {
    throw SysError(errno, "create cgroup " + dir.string());
  }
}

}  // namespace

VmLimits vmLimits(uint32_t memoryMib, uint32_t cpus) {
  return {(uint64_t{memoryMib} << 20) + kVmmOverhead, kVmPids, (cpus + 1) * 1000};
}

VmCgroups VmCgroups::probe(const std::filesystem::path& root) {
  VmCgroups cgroups;
  cgroups.root_ = root;
  std::error_code ec;
  try {
    if (std::filesystem::exists(root / "cgroup.controllers", ec)) {
      if (!hasControllers(readWord(root / "cgroup.controllers"))) {
        cgroups.description_ = fmt::format(
            "cgroup v2 at {} lacks the memory, pids or cpu controller; VMs run without limits",
            root.string());
        return cgroups;
      }
      // The root cgroup may hand controllers down though processes live in it; fcvm/ holds none.
      writeFile(root / "cgroup.subtree_control", "+memory +pids +cpu");
      makeDir(root / kParent);
      writeFile(root / kParent / "cgroup.subtree_control", "+memory +pids +cpu");
      cgroups.version_ = Version::kV2;
    } else {
      for (const char* controller : kV1Controllers) {
        if (!std::filesystem::exists(root / controller / "cgroup.procs", ec)) {
          cgroups.description_ = fmt::format(
              "no cgroup v2 and no cgroup v1 {} hierarchy at {}; VMs run without limits",
              controller, root.string());
          return cgroups;
        }
        makeDir(root / controller / kParent);
      }
      cgroups.version_ = Version::kV1;
    }
    // Can a VM's cgroup be made? (Read-only in many containers.)
    auto probe = fmt::format("probe-{}", ::getpid());
    for (const auto& dir : cgroups.dirsOf(probe)) makeDir(dir);
    cgroups.remove(probe);
  } catch (const Error& e) {
    cgroups.version_ = Version::kNone;
    cgroups.description_ =
        fmt::format("cannot make VM cgroups ({}); VMs run without limits", e.what());
    return cgroups;
  }
  cgroups.description_ =
      cgroups.version_ == Version::kV2
          ? fmt::format("cgroup v2: memory, pids and cpu per VM under {}",
                        (root / kParent).string())
          : fmt::format("cgroup v1: memory, pids and cpu per VM under {}/{{memory,pids,cpu}}/{}",
                        root.string(), kParent);
  return cgroups;
}

std::vector<std::filesystem::path> VmCgroups::dirsOf(const std::string& id) const {
  switch (version_) {
    case Version::kNone:
      return {};
    case Version::kV2:
      return {root_ / kParent / id};
    case Version::kV1: {
      std::vector<std::filesystem::path> dirs;
      for (const char* controller : kV1Controllers)
        dirs.push_back(root_ / controller / kParent / id);
      return dirs;
    }
  }
  return {};
}

std::vector<std::string> VmCgroups::create(const std::string& id, const VmLimits& limits) const {
  if (version_ == Version::kNone) return {};
  remove(id);  // a stale one, from a VM of this id that crashed mid-start
  auto dirs = dirsOf(id);
  std::vector<std::string> procs;
  try {
    for (const auto& dir : dirs) {
      makeDir(dir);
      procs.push_back((dir / "cgroup.procs").string());
    }
    auto memory = std::to_string(limits.memoryBytes);
    auto pids = std::to_string(limits.pids);
    auto quota = std::to_string(uint64_t{limits.cpuMillis} * kCpuPeriodUs / 1000);
    if (version_ == Version::kV2) {
      writeFile(dirs[0] / "memory.max", memory);
      writeFile(dirs[0] / "memory.swap.max", "0");
      writeFile(dirs[0] / "pids.max", pids);
      writeFile(dirs[0] / "cpu.max", quota + " " + std::to_string(kCpuPeriodUs));
    } else {
      writeFile(dirs[0] / "memory.limit_in_bytes", memory);
      writeFile(dirs[1] / "pids.max", pids);
      writeFile(dirs[2] / "cpu.cfs_period_us", std::to_string(kCpuPeriodUs));
      writeFile(dirs[2] / "cpu.cfs_quota_us", quota);
    }
  } catch (...) {
    remove(id);
    throw;
  }
  return procs;
}

void VmCgroups::remove(const std::string& id) const {
  for (const auto& dir : dirsOf(id)) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
    if (errno == EBUSY) {
      // What is left of an ended VM (a QEMU still dying of its worker's end, a volume server)
      // goes now; a cgroup can only be removed empty.
      killAndWait(dir / "cgroup.procs");
      if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) continue;
    }
    spdlog::warn("could not remove cgroup {}: {}", dir.string(), std::strerror(errno));
  }
}

}  // namespace fcvm
