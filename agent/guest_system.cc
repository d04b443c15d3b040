#include "agent/guest_system.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "agent/control_port.h"
#include "agent/podman_launcher.h"
#include "agent/spawn.h"
#include "agent/volume_client.h"

namespace fcvm::agent {
namespace {

// The root disk holds everything writable: the rootfs, podman's storage and the container's
// layer. The image store is mounted read-only and needs no freeze.
constexpr char kRoot[] = "/";

kj::AutoCloseFd openRoot() {
  int fd;
  KJ_SYSCALL(fd = open(kRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open /");
  return kj::AutoCloseFd(fd);
}

}  // namespace

void LinuxGuestSystem::freezeFilesystems() {
  sync();
  auto root = openRoot();
  KJ_SYSCALL(ioctl(root.get(), FIFREEZE, 0), "freeze /");
}

void LinuxGuestSystem::thawFilesystems() {
  auto root = openRoot();
  // EINVAL: not frozen (a thaw after a failed freeze, or a second one): nothing to undo.
  if (ioctl(root.get(), FITHAW, 0) != 0 && errno != EINVAL) KJ_FAIL_SYSCALL("thaw /", errno);
}

void LinuxGuestSystem::setHostname(const std::string& hostname) {
  KJ_SYSCALL(sethostname(hostname.data(), hostname.size()), "sethostname", hostname);
}

void LinuxGuestSystem::setMachineId(const std::string& machineId) {
  std::string line = machineId + "\n";
  int fd;
  KJ_SYSCALL(fd = open("/etc/machine-id", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0444),
             "/etc/machine-id");
  kj::AutoCloseFd file(fd);
  kj::FdOutputStream(fd).write(line.data(), line.size());
}

void LinuxGuestSystem::addEntropy(const std::string& bytes) {
  std::vector<char> buffer(sizeof(rand_pool_info) + bytes.size());
  auto* info = reinterpret_cast<rand_pool_info*>(buffer.data());
  info->entropy_count = static_cast<int>(bytes.size() * 8);
  info->buf_size = static_cast<int>(bytes.size());
  std::memcpy(info->buf, bytes.data(), bytes.size());
  int fd;
  KJ_SYSCALL(fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC), "/dev/urandom");
  kj::AutoCloseFd urandom(fd);
  KJ_SYSCALL(ioctl(fd, RNDADDENTROPY, info), "RNDADDENTROPY");
}

namespace {

sockaddr ipv4(const std::string& text) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  KJ_REQUIRE(inet_pton(AF_INET, text.c_str(), &in.sin_addr) == 1, "not an IPv4 address", text);
  sockaddr out{};
  memcpy(&out, &in, sizeof in);
  return out;
}

// The VM's one network interface: the first that is not loopback (virtio-net's eth0).
std::string networkInterface() {
  std::ifstream in("/proc/net/dev");
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != "lo") return name;
  }
  KJ_FAIL_REQUIRE("the VM has no network interface");
}

}  // namespace

void LinuxGuestSystem::configureNetwork(const GuestNetwork& network) {
  int sock;
  KJ_SYSCALL(sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket");
  kj::AutoCloseFd owned(sock);
  auto name = networkInterface();
  ifreq ifr{};
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_addr = ipv4(network.address);
  KJ_SYSCALL(ioctl(sock, SIOCSIFADDR, &ifr), "set the address", name);
  uint32_t mask =
      network.prefixLength == 0 ? 0 : htonl(~uint32_t{0} << (32 - network.prefixLength));
  sockaddr_in netmask{};
  netmask.sin_family = AF_INET;
  netmask.sin_addr.s_addr = mask;
  memcpy(&ifr.ifr_netmask, &netmask, sizeof netmask);
  KJ_SYSCALL(ioctl(sock, SIOCSIFNETMASK, &ifr), "set the netmask", name);
  KJ_SYSCALL(ioctl(sock, SIOCGIFFLAGS, &ifr), "get flags", name);
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  KJ_SYSCALL(ioctl(sock, SIOCSIFFLAGS, &ifr), "bring it up", name);
  rtentry route{};
  route.rt_dst = ipv4("0.0.0.0");
  route.rt_genmask = ipv4("0.0.0.0");
  route.rt_gateway = ipv4(network.gateway);
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  if (ioctl(sock, SIOCADDRT, &route) != 0 && errno != EEXIST) {
    KJ_FAIL_SYSCALL("add the default route", errno, network.gateway);
  }
  std::string resolv;
  for (const auto& ns : network.nameservers) resolv += "nameserver " + ns + "\n";
  int fd;
  KJ_SYSCALL(fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644),
             "/etc/resolv.conf");
  kj::AutoCloseFd file(fd);
  kj::FdOutputStream(fd).write(resolv.data(), resolv.size());
}

namespace {

std::string volumeMountpoint(const VolumeSpec& volume) {
  return std::string(kVolumeMountRoot) + "/" + volume.hostTag;
}

void killAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

// Starts the volume's fuse-pipe client on its port and returns its pid once it has mounted the
// volume at `mountpoint`. Throws kj::Exception naming the volume otherwise (no client is left).
pid_t startVolumeClient(const VolumeSpec& volume, const std::string& mountpoint) {
  constexpr auto kPortTimeout = std::chrono::seconds(10);
  constexpr int kMountTimeoutMs = 30'000;
  auto port = waitForVirtioPort(volumePortName(volume.hostTag, volume.port), kPortTimeout);
  std::filesystem::create_directories(mountpoint);
  int ready[2];
  KJ_SYSCALL(pipe2(ready, O_CLOEXEC));
  kj::AutoCloseFd readyRead(ready[0]), readyWrite(ready[1]);
  SpawnOptions options;
  // fc-agent itself: the initramfs it came from is gone, the running binary is not.
  options.argv = {"/proc/self/exe", kVolumeMountCommand, "--port",     port,
                  "--mountpoint",   mountpoint,          "--ready-fd", "3"};
  if (volume.readOnly) options.argv.push_back("--read-only");
  options.inheritOutput = true;  // its messages go to the console, as the agent's do
  options.passFd = readyWrite.get();
  pid_t pid = spawnProcess(options).pid;
  readyWrite = nullptr;
  struct pollfd p = {readyRead.get(), POLLIN, 0};
  int n;
  do {
    n = poll(&p, 1, kMountTimeoutMs);
  } while (n < 0 && errno == EINTR);
  char byte = 0;
  if (n == 1 && read(readyRead.get(), &byte, 1) == 1 && byte == '1') return pid;
  killAndReap(pid);
  KJ_FAIL_REQUIRE("the volume's fuse-pipe client did not mount it (see the console log)",
                  volume.hostTag, volume.guestPath, n == 0 ? "timed out" : "exited");
}

void makeShared(const std::string& mountpoint) {
  KJ_SYSCALL(mount(nullptr, mountpoint.c_str(), nullptr, MS_SHARED, nullptr),
             "make the volume's mount shared", mountpoint);
}

}  // namespace

pid_t LinuxGuestSystem::mountVolume(const VolumeSpec& volume) {
  auto mountpoint = volumeMountpoint(volume);
  pid_t pid = startVolumeClient(volume, mountpoint);
  makeShared(mountpoint);
  return pid;
}

pid_t LinuxGuestSystem::remountVolume(const VolumeSpec& volume) {
  // Mounted aside first: the client's mount looks at its mount point, which must not be the dead
  // mount (stat there fails with ENOTCONN). Then bound over the dead mount, which propagates the
  // new mount to the container's bind of it; the aside mount goes.
  auto target = volumeMountpoint(volume);
  auto aside = std::string(kVolumeMountRoot) + "/." + volume.hostTag + ".next";
  pid_t pid = startVolumeClient(volume, aside);
  auto failure = kj::runCatchingExceptions([&]() {
    KJ_SYSCALL(mount(aside.c_str(), target.c_str(), nullptr, MS_BIND, nullptr),
               "bind the volume's new mount", target);
    makeShared(target);
  });
  umount2(aside.c_str(), MNT_DETACH);
  rmdir(aside.c_str());
  KJ_IF_MAYBE (e, failure) {
    killAndReap(pid);
    kj::throwFatalException(kj::mv(*e));
  }
  return pid;
}

}  // namespace fcvm::agent
