#include "worker/qemu_vmm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <fstream>

#include "base/error.h"
#include "base/subprocess.h"

extern char** environ;

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

std::vector<std::string> qemuCommandLine(const QemuConfig& config) {
  std::string machine = "microvm,acpi=on,x-option-roms=off,rtc=on";
  std::vector<std::string> argv = {config.qemu, "-nodefaults", "-no-user-config", "-nographic",
                                   "-no-reboot"};
  if (!config.memoryFile.empty()) {
    argv.insert(argv.end(),
                {"-object", fmt::format("memory-backend-file,id=mem,size={}M,mem-path={},share=on",
                                        config.memoryMib, config.memoryFile.string())});
    machine += ",memory-backend=mem";
  }
  argv.insert(
      argv.end(),
      {"-M", machine, "-accel", config.accel, "-cpu", config.accel == "kvm" ? "host" : "max",
       "-smp", std::to_string(config.cpus), "-m", std::to_string(config.memoryMib), "-kernel",
       config.kernel.string(), "-append", kernelCommandLine(config)});
  if (!config.initramfs.empty()) argv.insert(argv.end(), {"-initrd", config.initramfs.string()});
  if (!config.rootDisk.empty()) {
    argv.insert(argv.end(), {"-drive",
                             fmt::format("id=root,file={},format=raw,if=none,cache=unsafe{}",
                                         config.rootDisk.string(),
                                         config.rootDiskSnapshot ? ",snapshot=on" : ""),
                             "-device", "virtio-blk-device,drive=root"});
  }
  for (size_t i = 0; i < config.extraDisks.size(); ++i) {
    const auto& disk = config.extraDisks[i];
    argv.insert(argv.end(), {"-drive",
                             fmt::format("id=disk{},file={},format=raw,if=none{}", i,
                                         disk.path.string(), disk.readOnly ? ",readonly=on" : ""),
                             "-device", fmt::format("virtio-blk-device,drive=disk{}", i)});
  }
  if (!config.consoleLog.empty()) {
    argv.insert(argv.end(),
                {"-chardev", fmt::format("file,id=console,path={}", config.consoleLog.string()),
                 "-serial", "chardev:console"});
  }
  if (!config.channels.empty()) {
    argv.insert(argv.end(), {"-device", "virtio-serial-device,max_ports=8"});
    for (size_t i = 0; i < config.channels.size(); ++i) {
      const auto& c = config.channels[i];
      argv.insert(argv.end(),
                  {"-chardev", fmt::format("socket,id=ch{},path={}", i, c.socket.string()),
                   "-device", fmt::format("virtserialport,chardev=ch{},name={}", i, c.name)});
    }
  }
  return argv;
}

QemuProcess::QemuProcess(const QemuConfig& config) {
  auto argv = qemuCommandLine(config);
  auto program = findInPath(argv[0]);
  if (!program) throw SysError(ENOENT, "start " + argv[0]);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  // QEMU's own diagnostics go beside the console log.
  std::string qemuLog =
      config.consoleLog.empty() ? "/dev/null" : config.consoleLog.string() + ".qemu";
  pid_t parent = ::getpid();
  // fork, not posix_spawn: QEMU must die with its owner (PR_SET_PDEATHSIG), whoever kills it, so
  // a killed worker never leaves a VM running. Only async-signal-safe calls until exec.
  pid_ = ::fork();
  checkSys(pid_, "fork for qemu");
  if (pid_ == 0) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || ::getppid() != parent) ::_exit(126);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(qemuLog.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in == -1 || out == -1 || ::dup2(in, 0) == -1 || ::dup2(out, 1) == -1 ||
        ::dup2(out, 2) == -1) {
      ::_exit(126);
    }
    ::execve(program->c_str(), args.data(), environ);
    ::_exit(127);
  }
  pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  if (!pidfd_) {
    int e = errno;
    kill();
    throw SysError(e, "pidfd_open qemu");
  }
}

QemuProcess::~QemuProcess() {
  if (!reaped_) {
    kill();
    int status = 0;
    while (::waitpid(pid_, &status, 0) == -1 && errno == EINTR) {
    }
  }
}

void QemuProcess::kill() {
  if (!reaped_) ::kill(pid_, SIGKILL);
}

std::optional<int> QemuProcess::waitExit(std::chrono::milliseconds timeout) {
  if (reaped_) throw Error("qemu already reaped");
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  int n = retryEintr([&] { return ::poll(&pfd, 1, static_cast<int>(timeout.count())); });
  checkSys(n, "wait for qemu");
  if (n == 0) return std::nullopt;
  int status = 0;
  checkSys(retryEintr([&] { return ::waitpid(pid_, &status, 0); }), "waitpid qemu");
  reaped_ = true;
  return status;
}

}  // namespace fcvm::worker
