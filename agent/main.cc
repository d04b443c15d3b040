// fc-agent: the guest's PID 1. Wires the pieces: (as PID 1) early mounts, modules, switch to the
// root disk, system mounts; then the control port, the session with podman, and power-off.
//   fc-agent                 as the guest's /init
//   fc-agent --port PATH     use PATH (a Unix socket to connect to, or a device) as the channel
//                            and skip the PID-1 steps unless really PID 1 (for manual testing)
#include <fcntl.h>
#include <kj/async-io.h>
#include <kj/async-unix.h>
#include <kj/debug.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "agent/boot_timeline.h"
#include "agent/control_port.h"
#include "agent/guest_system.h"
#include "agent/modules.h"
#include "agent/pid1.h"
#include "agent/podman_launcher.h"
#include "agent/realtime_clock.h"
#include "agent/session.h"
#include "agent/volume_client.h"

namespace fcvm::agent {
namespace {

constexpr char kModuleList[] = "/fcvm/modules.order";
constexpr char kModuleDir[] = "/fcvm";
constexpr char kImageStore[] = "/var/lib/fcvm-images";  // listed in the rootfs's storage.conf
constexpr char kRootDevice[] = "/dev/vda";
constexpr auto kDeviceTimeout = std::chrono::seconds(20);
constexpr auto kHostTimeout = std::chrono::seconds(60);

// The kernel gives PID 1 /dev/console as stdio only if the initramfs has that node.
void ensureConsole() {
  if (fcntl(2, F_GETFD) >= 0) return;
  int fd = open("/dev/console", O_RDWR);
  if (fd < 0) return;
  for (int i = 0; i < 3; ++i) dup2(fd, i);
  if (fd > 2) close(fd);
}

kj::AutoCloseFd openPath(const std::string& path) {
  struct stat st;
  KJ_SYSCALL(stat(path.c_str(), &st), path);
  if (!S_ISSOCK(st.st_mode)) {
    int fd;
    KJ_SYSCALL(fd = open(path.c_str(), O_RDWR | O_CLOEXEC), path);
    return kj::AutoCloseFd(fd);
  }
  int fd;
  KJ_SYSCALL(fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  kj::AutoCloseFd sock(fd);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  KJ_REQUIRE(path.size() < sizeof(addr.sun_path), "socket path too long", path);
  strcpy(addr.sun_path, path.c_str());
  KJ_SYSCALL(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), "connect", path);
  return sock;
}

int run(const std::string& portPath, bool pid1) {
  BootTimeline boot;
  if (pid1) {
    boot.mark("kernel");
    mountInitramfsBasics();
    ensureConsole();
    loadModules(kModuleList, kModuleDir);
    boot.mark("modules");
    switchRoot(kRootDevice, "ext4", "/newroot", kDeviceTimeout);
    boot.mark("root");
    mountSystem();
    mountImageStore(kImageStore, kDeviceTimeout);
    setDefaultEnvironment();
    bringUpLoopback();
    boot.mark("system and image store");
  }
  kj::UnixEventPort::captureChildExit();
  auto io = kj::setupAsyncIo();
  auto fd = portPath.empty() ? openControlPort(kControlPortName, kHostTimeout) : openPath(portPath);
  boot.mark("control port");
  auto stream =
      io.lowLevelProvider->wrapSocketFd(fd.release(), kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
  PodmanLauncher launcher;
  SystemRealtimeClock clock;
  LinuxGuestSystem system;
  AgentSession session(SessionDeps{*stream, *io.lowLevelProvider, io.unixEventPort,
                                   io.provider->getTimer(), launcher, clock, system},
                       FCVM_AGENT_VERSION);
  if (pid1) session.logAfterHello("boot: " + boot.report());  // on the console too
  auto end = session.run().wait(io.waitScope);
  switch (end.reason) {
    case SessionEnd::Reason::kContainerExited:
      fprintf(stderr, "fc-agent: container exited with %d\n", end.container.code);
      return end.container.code;
    case SessionEnd::Reason::kPowerOff:
      fprintf(stderr, "fc-agent: power off requested\n");
      return 0;
    case SessionEnd::Reason::kHostClosed:
      fprintf(stderr, "fc-agent: the host closed the control channel\n");
      return 0;
  }
  return 0;
}

}  // namespace
}  // namespace fcvm::agent

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == fcvm::agent::kVolumeMountCommand) {
    return fcvm::agent::runVolumeClient(argc - 1, argv + 1);
  }
  std::string portPath;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--port" && i + 1 < argc) {
      portPath = argv[++i];
    } else if (arg == "--version") {
      printf("fc-agent %s\n", FCVM_AGENT_VERSION);
      return 0;
    } else if (getpid() != 1) {
      // The kernel passes unknown command-line words to init; only complain when run by hand.
      fprintf(stderr, "usage: fc-agent [--port PATH] [--version]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  bool pid1 = getpid() == 1;
  int code = 1;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { code = fcvm::agent::run(portPath, pid1); })) {
    fprintf(stderr, "fc-agent: %s\n", e->getDescription().cStr());
    code = 1;
  }
  if (pid1) fcvm::agent::powerOff();  // PID 1 must not exit while it can still power off
  return code;
}
