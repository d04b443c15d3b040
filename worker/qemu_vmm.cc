#include "worker/qemu_vmm.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "base/error.h"
#include "base/spawn.h"
#include "ipc/guest_network.h"
#include "worker/qemu_jail.h"

namespace fcvm::worker {

unsigned hostTscKhz() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("cpu MHz")) {
      auto colon = line.find(':');
      if (colon != std::string::npos) {
        return static_cast<unsigned>(std::lround(std::stod(line.substr(colon + 1)) * 1000));
      }
    }
  }
  throw Error("cannot read the CPU frequency from /proc/cpuinfo");
}

std::string kernelCommandLine(const QemuConfig& config) {
  if (!config.kernelCommandLine.empty()) return config.kernelCommandLine;
  // quiet + panic=-1 with -no-reboot: a guest panic ends QEMU instead of hanging the VM.
  std::string args = "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests";
  if (config.accel == "tcg") {
    // Without the TSC rate the kernel can hang calibrating against the PIT under TCG; with
    // several vCPUs it would otherwise drop the TSC clocksource.
    args += fmt::format(" tsc_early_khz={} tsc=reliable", hostTscKhz());
  }
  if (!config.extraKernelArgs.empty()) args += " " + config.extraKernelArgs;
  return args;
}

namespace {

// A value inside one of QEMU's comma-separated option strings (-drive file=..., -chardev path=...):
// QEMU reads ",," as a comma, so a path with a comma stays one value instead of starting an option.
std::string optionValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

}  // namespace

std::vector<std::string> qemuCommandLine(const QemuConfig& config) {
  std::string machine = "microvm,acpi=on,x-option-roms=off,rtc=on";
  std::vector<std::string> argv = {
      config.qemu, "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      // QEMU's own seccomp filter: no obsolete calls, no set*id, no fork/exec, no scheduling or
      // affinity changes; what a guest that escapes into QEMU could otherwise do.
      "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"};
  if (!config.name.empty()) argv.insert(argv.end(), {"-name", "guest=" + optionValue(config.name)});
  for (auto [fd, set] : config.fdSets) {
    argv.insert(argv.end(), {"-add-fd", fmt::format("fd={},set={}", fd, set)});
  }
  if (!config.memoryFile.empty()) {
    argv.insert(argv.end(),
                {"-object", fmt::format("memory-backend-file,id=mem,size={}M,mem-path={},share={}",
                                        config.memoryMib, optionValue(config.memoryFile.string()),
                                        config.memoryShared ? "on" : "off")});
    machine += ",memory-backend=mem";
  }
  std::string accel = config.accel;
  if (accel == "tcg" && config.tcgCacheMib > 0)
    accel += fmt::format(",tb-size={}", config.tcgCacheMib);
  argv.insert(argv.end(),
              {"-M", machine, "-accel", accel, "-cpu", config.accel == "kvm" ? "host" : "max",
               "-smp", std::to_string(config.cpus), "-m", std::to_string(config.memoryMib),
               "-kernel", config.kernel.string(), "-append", kernelCommandLine(config)});
  if (!config.initramfs.empty()) argv.insert(argv.end(), {"-initrd", config.initramfs.string()});
  if (!config.rootDisk.empty()) {
    argv.insert(argv.end(), {"-drive",
                             fmt::format("id=root,file={},format=raw,if=none,cache=unsafe,"
                                         "auto-read-only=off{}",
                                         optionValue(config.rootDisk.string()),
                                         config.rootDiskSnapshot ? ",snapshot=on" : ""),
                             "-device", "virtio-blk-device,drive=root"});
  }
  for (size_t i = 0; i < config.extraDisks.size(); ++i) {
    const auto& disk = config.extraDisks[i];
    argv.insert(argv.end(), {"-drive",
                             fmt::format("id=disk{},file={},format=raw,if=none,{}", i,
                                         optionValue(disk.path.string()),
                                         disk.readOnly ? "readonly=on" : "auto-read-only=off"),
                             "-device", fmt::format("virtio-blk-device,drive=disk{}", i)});
  }
  for (size_t i = 0; i < config.ninePShares.size(); ++i) {
    const auto& share = config.ninePShares[i];
    argv.insert(argv.end(), {"-fsdev",
                             fmt::format("local,id=share{},path={},security_model=passthrough", i,
                                         optionValue(share.dir.string())),
                             "-device",
                             fmt::format("virtio-9p-device,fsdev=share{},mount_tag={}", i,
                                         optionValue(share.tag))});
  }
  if (config.consoleFd >= 0 || !config.consoleLog.empty()) {
    auto backend = config.consoleFd >= 0 ? fmt::format("socket,id=console,fd={}", config.consoleFd)
                                         : fmt::format("file,id=console,path={}",
                                                       optionValue(config.consoleLog.string()));
    argv.insert(argv.end(), {"-chardev", backend, "-serial", "chardev:console"});
  }
  if (!config.channels.empty()) {
    // 8 ports unless more are named (volumes): a snapshot's device state records the number.
    argv.insert(argv.end(), {"-device", fmt::format("virtio-serial-device,max_ports={}",
                                                    std::max<size_t>(8, config.channels.size()))});
    for (size_t i = 0; i < config.channels.size(); ++i) {
      const auto& c = config.channels[i];
      auto backend = c.discard ? fmt::format("null,id=ch{}", i)
                     : c.fd >= 0
                         ? fmt::format("socket,id=ch{},fd={}", i, c.fd)
                         : fmt::format("socket,id=ch{},path={}", i, optionValue(c.socket.string()));
      argv.insert(argv.end(),
                  {"-chardev", backend, "-device",
                   fmt::format("virtserialport,chardev=ch{},name={}", i, optionValue(c.name))});
    }
  }
  const auto& net = config.network;
  if (net.mode == "bridged" || net.mode == "rootless") {
    std::string backend;
    if (net.mode == "bridged") {
      backend = fmt::format("tap,id=net0,fd={}", net.tapFd);
    } else {
      // The same guest addressing as bridged; the stack's own resolver at kRootlessDns.
      backend = fmt::format("user,id=net0,net={},host={},dns={}", ipc::kGuestSubnet,
                            ipc::kGatewayAddress, ipc::kRootlessDns);
      for (const auto& f : net.forwards) {
        backend +=
            fmt::format(",hostfwd={}:{}:{}-{}:{}", f.protocol, f.hostIp.empty() ? "" : f.hostIp,
                        f.hostPort, ipc::kGuestAddress, f.guestPort);
      }
    }
    argv.insert(argv.end(),
                {"-netdev", backend, "-device",
                 fmt::format("virtio-net-device,netdev=net0,mac={}", optionValue(net.mac))});
  }
  if (config.qmpFd >= 0 || !config.qmpSocket.empty()) {
    auto backend = config.qmpFd >= 0 ? fmt::format("socket,id=qmp,fd={}", config.qmpFd)
                                     : fmt::format("socket,id=qmp,path={}",
                                                   optionValue(config.qmpSocket.string()));
    argv.insert(argv.end(), {"-chardev", backend, "-mon", "chardev=qmp,mode=control"});
  }
  if (config.incoming) argv.insert(argv.end(), {"-incoming", "defer"});
  return argv;
}

QemuProcess::QemuProcess(const QemuConfig& config) {
  // QEMU's own diagnostics go beside the console log.
  std::string qemuLog =
      config.consoleLog.empty() ? "/dev/null" : config.consoleLog.string() + ".qemu";
  UniqueFd log(static_cast<int>(
      checkSys(::open(qemuLog.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600), "open {}",
               qemuLog)));
  // A jailed QEMU opens nothing of ours by path: what it needs is opened here and held until it
  // has its own copies.
  QemuConfig started = config;
  std::vector<UniqueFd> handedOver;
  if (config.jail) handedOver = openForJail(started);
  SpawnSpec spec;
  spec.argv = qemuCommandLine(started);
  // Nothing of the worker's environment: QEMU needs none of it.
  spec.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
  spec.fds = started.inheritedFds;
  spec.fds[1] = spec.fds[2] = log.get();
  // QEMU must die with its worker, whoever kills the worker, so a VM never runs on untracked.
  spec.dieWithParent = true;
  if (config.jail) confineInJail(spec, started);
  child_ = spawn(spec);
}

std::optional<int> QemuProcess::waitExit(std::chrono::milliseconds timeout) {
  if (!child_.running()) throw Error("qemu already reaped");
  return child_.waitFor(timeout);
}

}  // namespace fcvm::worker
