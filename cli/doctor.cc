#include "cli/doctor.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <map>
#include <sstream>

#include "base/error.h"
#include "base/jail_uids.h"
#include "base/reflink.h"
#include "base/subprocess.h"
#include "base/unique_fd.h"
#include "base/vm_cgroup.h"
#include "cli/supervisor_endpoint.h"

namespace fcvm::cli {
namespace {

constexpr std::chrono::milliseconds kToolTimeout{10000};

std::string firstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

// `tool --version`, first line; "not found" if it is not installed.
HostCheck toolCheck(const std::string& name, const std::string& tool, bool required,
                    const std::string& purpose) {
  HostCheck check{name, false, required, ""};
  auto path = findInPath(tool);
  if (!path) {
    check.detail = fmt::format(
        "{} not found in PATH (needed for {}; scripts/install-deps "
        "installs it)",
        tool, purpose);
    return check;
  }
  auto result = runCommand({*path, "--version"}, CommandOptions::withTimeout(kToolTimeout));
  check.ok = result.exitCode == 0;
  check.detail = fmt::format("{}: {}", *path, firstLine(result.output));
  return check;
}

HostCheck qemuCheck() {
  HostCheck check = toolCheck("qemu", "qemu-system-x86_64", true, "running VMs");
  if (!check.ok) return check;
  auto machines = runCommand({"qemu-system-x86_64", "-machine", "help"},
                             CommandOptions::withTimeout(kToolTimeout));
  if (machines.output.find("microvm") == std::string::npos) {
    check.ok = false;
    check.detail += "; the microvm machine type is missing";
  } else {
    check.detail += "; microvm machine available";
  }
  return check;
}

HostCheck deviceCheck(const std::string& name, const char* device, bool required,
                      const std::string& purpose) {
  UniqueFd fd(::open(device, O_RDWR | O_CLOEXEC));
  if (!fd) {
    return {name, false, required,
            fmt::format("cannot open {}: {} (needed for {})", device, errnoText(errno), purpose)};
  }
  return {name, true, required, fmt::format("{} opens read-write", device)};
}

HostCheck userfaultfdCheck() {
  HostCheck check =
      deviceCheck("userfaultfd", "/dev/userfaultfd", false, "serving snapshot memory to clones");
  if (check.ok) return check;
  // Without the device node, the system call may still be allowed.
  long fd = ::syscall(SYS_userfaultfd, O_CLOEXEC);
  if (fd >= 0) {
    ::close(static_cast<int>(fd));
    return {"userfaultfd", true, false, "the userfaultfd system call works"};
  }
  check.detail += fmt::format("; userfaultfd(2): {}", errnoText(errno));
  return check;
}

// The data dir (or its nearest existing parent) can clone a file with FICLONE.
HostCheck reflinkCheck(const Paths& paths) {
  auto dir = paths.dataDir;
  while (!std::filesystem::exists(dir) && dir.has_parent_path() && dir != dir.parent_path()) {
    dir = dir.parent_path();
  }
  auto storage = paths.dataDir / "storage";
  if (std::filesystem::exists(storage)) dir = storage;
  if (auto why = whyNoReflink(dir)) {
    return {"reflink", false, false,
            fmt::format("{} cannot reflink ({}); `fcvm setup` puts the data dir's storage on a "
                        "loopback btrfs",
                        dir.string(), *why)};
  }
  return {"reflink", true, false, fmt::format("{} supports reflink copies", dir.string())};
}

// Volumes are served from sandboxes whose namespaces only root can make: root's own VMs, and any
// user's when root's supervisor is the one answering (the host socket). The host needs no
// /dev/fuse: the FUSE mounts are the guest's.
HostCheck volumesCheck() {
  if (::geteuid() == 0) {
    return {"volumes", true, false, "--map: root's supervisor serves volumes in sandboxes"};
  }
  if (isAnswering(kHostSocket)) {
    return {"volumes", true, false,
            fmt::format("--map: root's supervisor answers on {}", kHostSocket)};
  }
  return {"volumes", false, false,
          fmt::format("--map needs root's fcvm-supervisor (on {}), which is not running: a "
                      "user's own cannot make the servers' sandboxes",
                      kHostSocket)};
}

// Root's supervisor as a systemd service (the units `make install` puts in place), or on demand.
HostCheck serviceCheck() {
  if (sd_booted() <= 0) {
    return {"service", true, false,
            "systemd does not run this host: fcvm starts root's supervisor on demand"};
  }
  auto systemctl = findInPath("systemctl");
  if (!systemctl) return {"service", false, false, "systemd runs this host, but systemctl is gone"};
  auto state = [&systemctl](const std::string& unit) {
    auto r =
        runCommand({*systemctl, "show", "--property=LoadState,ActiveState,UnitFileState", unit},
                   CommandOptions::withTimeout(kToolTimeout));
    std::map<std::string, std::string> properties;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      auto eq = line.find('=');
      if (eq != std::string::npos) properties[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return properties;
  };
  auto socket = state("fcvm-supervisor.socket");
  if (socket["LoadState"] != "loaded") {
    return {"service", false, false,
            "fcvm-supervisor.socket is not installed (make install, then systemctl enable --now "
            "fcvm-supervisor.socket); root's supervisor starts on demand"};
  }
  auto service = state("fcvm-supervisor.service");
  bool listening = socket["ActiveState"] == "active";
  return {"service", listening, false,
          fmt::format("fcvm-supervisor.socket {} ({}), fcvm-supervisor.service {}",
                      socket["ActiveState"], socket["UnitFileState"], service["ActiveState"])};
}

// Whether each VM gets a cgroup with its limits (memory, pids, cpu), as root's supervisor would.
HostCheck limitsCheck() {
  if (::geteuid() != 0) {
    return {"limits", false, false, "only root's supervisor gives VMs cgroups; run doctor as root"};
  }
  auto cgroups = VmCgroups::probe();
  return {"limits", cgroups.enforced(), false, cgroups.description()};
}

// The uids jailed QEMUs run as, and that no account of the host has one of them.
HostCheck jailCheck(const Paths& paths) {
  if (::geteuid() != 0) {
    return {"jail", false, false,
            "only root's supervisor runs QEMU as uids of its own; a user's runs it as that user"};
  }
  try {
    auto uids = JailUids::load(paths.configFile);
    auto range = fmt::format("QEMU runs as uids {}-{}", uids.first, uids.first + uids.count - 1);
    if (auto account = uids.ownedByAnAccount()) {
      return {"jail", false, true,
              fmt::format("{}, which include {}: set \"jail\" in {}", range, *account,
                          paths.configFile.string())};
    }
    return {"jail", true, true,
            range + ", no capabilities, own namespaces and a root without the host's data"};
  } catch (const Error& e) {
    return {"jail", false, true, e.what()};
  }
}

}  // namespace

bool DoctorReport::healthy() const {
  for (const auto& c : checks) {
    if (c.required && !c.ok) return false;
  }
  return true;
}

DoctorReport runDoctor(const Paths& paths) {
  DoctorReport report;
  worker::AcceleratorProbe probe{paths.dataDir / "kernel" / "vmlinux", paths.accelProbeCache()};
  report.accelerator = worker::chooseAccelerator(probe, worker::AccelRequest::kAuto);

  utsname host{};
  ::uname(&host);
  report.checks.push_back({"host", true, false, fmt::format("{} {}", host.sysname, host.release)});
  report.checks.push_back(qemuCheck());
  report.checks.push_back(deviceCheck("kvm", "/dev/kvm", false, "hardware acceleration"));
  report.checks.push_back(reflinkCheck(paths));
  report.checks.push_back(userfaultfdCheck());
  report.checks.push_back(volumesCheck());
  report.checks.push_back(serviceCheck());
  report.checks.push_back(limitsCheck());
  report.checks.push_back(jailCheck(paths));
  report.checks.push_back(toolCheck("slirp4netns", "slirp4netns", false, "rootless networking"));
  report.checks.push_back(toolCheck("iptables", "iptables", false, "port forwarding"));
  report.checks.push_back(toolCheck("podman", "podman", false, "images from host storage"));
  return report;
}

nlohmann::json toJson(const DoctorReport& report) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : report.checks) {
    checks.push_back(
        {{"name", c.name}, {"ok", c.ok}, {"required", c.required}, {"detail", c.detail}});
  }
  return {{"accelerator",
           {{"name", report.accelerator.name},
            {"reason", report.accelerator.reason},
            {"cached", report.accelerator.cached}}},
          {"healthy", report.healthy()},
          {"checks", checks}};
}

std::string formatReport(const DoctorReport& report) {
  std::string out = fmt::format("{:<12} {:<4}  {}\n", "accelerator", report.accelerator.name,
                                report.accelerator.reason);
  for (const auto& c : report.checks) {
    const char* verdict = c.ok ? "ok" : (c.required ? "FAIL" : "no");
    out += fmt::format("{:<12} {:<4}  {}\n", c.name, verdict, c.detail);
  }
  return out;
}

}  // namespace fcvm::cli
