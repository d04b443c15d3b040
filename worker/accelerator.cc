#include "worker/accelerator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/subprocess.h"
#include "base/unique_fd.h"

namespace fcvm::worker {
namespace {

using nlohmann::json;

// Under a KVM that cannot run the kernel QEMU stops at once ("KVM internal error" / "emulation
// failure"); a kernel that runs reaches the panic for its missing root file system within a
// second or two. Generous for a loaded host, short enough for `fcvm doctor`.
constexpr std::chrono::milliseconds kProbeTimeout{20000};

// What the cached verdict depends on: the kernel file, QEMU and the host kernel.
json probeKey(const AcceleratorProbe& probe) {
  struct stat st {};
  checkSys(::stat(probe.kernel.c_str(), &st), "stat {}", probe.kernel.string());
  utsname host{};
  ::uname(&host);
  auto version = runCommand({probe.qemu, "--version"},
                            CommandOptions::withTimeout(std::chrono::milliseconds(5000)));
  return {{"kernel", probe.kernel.string()},
          {"kernel_size", st.st_size},
          {"kernel_mtime", st.st_mtim.tv_sec},
          {"qemu", version.output.substr(0, version.output.find('\n'))},
          {"host_kernel", host.release}};
}

std::optional<AcceleratorChoice> readCache(const AcceleratorProbe& probe, const json& key) {
  std::ifstream in(probe.cacheFile);
  if (!in) return std::nullopt;
  try {
    json cached = json::parse(in);
    if (cached.at("key") != key) return std::nullopt;
    return AcceleratorChoice{cached.at("accelerator").get<std::string>(),
                             cached.at("reason").get<std::string>(), true};
  } catch (const json::exception&) {
    return std::nullopt;  // a damaged cache is just a miss
  }
}

void writeCache(const AcceleratorProbe& probe, const json& key, const AcceleratorChoice& c) {
  std::error_code ec;
  std::filesystem::create_directories(probe.cacheFile.parent_path(), ec);
  auto tmp = probe.cacheFile;
  tmp += ".tmp";
  {
    std::ofstream out(tmp);
    out << json{{"key", key}, {"accelerator", c.name}, {"reason", c.reason}}.dump(2) << "\n";
    if (!out) return;  // the cache is an optimisation; the verdict stands without it
  }
  std::filesystem::rename(tmp, probe.cacheFile, ec);
}

AcceleratorChoice runProbe(const AcceleratorProbe& probe) {
  auto result = runCommand({probe.qemu,
                            "-M",
                            "microvm,acpi=on",
                            "-accel",
                            "kvm",
                            "-cpu",
                            "host",
                            "-m",
                            "128",
                            "-smp",
                            "1",
                            "-nodefaults",
                            "-no-user-config",
                            "-nographic",
                            "-no-reboot",
                            "-serial",
                            "stdio",
                            "-kernel",
                            probe.kernel.string(),
                            "-append",
                            "console=ttyS0 panic=-1 reboot=t root=/dev/fcvm-probe-none"},
                           CommandOptions::withTimeout(kProbeTimeout));
  if (result.output.find("Kernel panic") != std::string::npos ||
      result.output.find("Linux version") != std::string::npos) {
    return {"kvm", "KVM ran the guest kernel (probe boot succeeded)"};
  }
  std::string why = result.timedOut ? "the probe boot timed out"
                                    : result.output.substr(0, result.output.find('\n'));
  return {"tcg", "/dev/kvm cannot run the guest kernel (" + why + "); using TCG emulation"};
}

}  // namespace

AccelRequest parseAccelRequest(const std::string& s) {
  if (s == "auto") return AccelRequest::kAuto;
  if (s == "kvm") return AccelRequest::kKvm;
  if (s == "tcg") return AccelRequest::kTcg;
  throw Error(fmt::format("unknown accelerator '{}' (auto|kvm|tcg)", s));
}

AcceleratorChoice chooseAccelerator(const AcceleratorProbe& probe, AccelRequest request) {
  if (request == AccelRequest::kTcg) return {"tcg", "forced with --accel tcg"};
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) {
    std::string why = "cannot open /dev/kvm: " + errnoText(errno);
    if (request == AccelRequest::kKvm) throw Error("--accel kvm: " + why);
    return {"tcg", why + "; using TCG emulation"};
  }
  if (request == AccelRequest::kKvm) return {"kvm", "forced with --accel kvm"};
  if (!std::filesystem::exists(probe.kernel)) {
    return {"tcg", fmt::format("/dev/kvm is present, but the probe that boots the guest kernel "
                               "under KVM waits for `fcvm setup` (no kernel at {}); using TCG",
                               probe.kernel.string())};
  }
  json key = probeKey(probe);
  if (auto cached = readCache(probe, key)) return *cached;
  AcceleratorChoice choice = runProbe(probe);
  writeCache(probe, key, choice);
  return choice;
}

}  // namespace fcvm::worker
