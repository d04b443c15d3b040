#include "agent/pid1.h"

#include <errno.h>
#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

namespace fcvm::agent {
namespace {

void makeDir(const char* path) {
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    KJ_FAIL_SYSCALL("mkdir", errno, path);
  }
}

// A mount point sits on another device than its parent (the moved /dev, for instance).
bool isMountPoint(const std::string& path) {
  struct stat self, parent;
  if (stat(path.c_str(), &self) != 0 || stat((path + "/..").c_str(), &parent) != 0) return false;
  return self.st_dev != parent.st_dev || self.st_ino == parent.st_ino;
}

// Mounts unless something is mounted there already.
void mountFs(const char* source, const char* target, const char* type, unsigned long flags,
             const char* data) {
  makeDir(target);
  if (isMountPoint(target)) return;
  if (mount(source, target, type, flags, data) != 0 && errno != EBUSY) {
    KJ_FAIL_SYSCALL("mount", errno, type, target);
  }
}

}  // namespace

void mountInitramfsBasics() {
  mountFs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mountFs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mountFs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
}

// No udev: a disk's node appears in devtmpfs when virtio_blk probes it, asynchronously. Polling
// is the only notification PID 1 has here.
void waitForDevice(const std::string& device, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  struct stat st;
  while (stat(device.c_str(), &st) != 0) {
    KJ_REQUIRE(std::chrono::steady_clock::now() < deadline, "disk did not appear", device);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void switchRoot(const std::string& device, const std::string& fsType, const std::string& newRoot,
                std::chrono::milliseconds timeout) {
  waitForDevice(device, timeout);
  makeDir(newRoot.c_str());
  KJ_SYSCALL(mount(device.c_str(), newRoot.c_str(), fsType.c_str(), 0, nullptr), "mount root",
             device, newRoot);
  std::string newDev = newRoot + "/dev";
  makeDir(newDev.c_str());
  KJ_SYSCALL(mount("/dev", newDev.c_str(), nullptr, MS_MOVE, nullptr), "move /dev");
  // /proc and /sys of the initramfs are mounted afresh in the new root.
  umount2("/proc", MNT_DETACH);
  umount2("/sys", MNT_DETACH);
  KJ_SYSCALL(chdir(newRoot.c_str()), newRoot);
  KJ_SYSCALL(mount(".", "/", nullptr, MS_MOVE, nullptr), "move the new root onto /");
  KJ_SYSCALL(chroot("."), "chroot into the new root");
  KJ_SYSCALL(chdir("/"));
}

void mountSystem() {
  mountFs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mountFs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mountFs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mountFs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
  mountFs("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mountFs("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  mountFs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  mountFs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

void mountImageStore(const std::string& target, std::chrono::milliseconds timeout) {
  std::ifstream in("/proc/cmdline");
  std::string word, device;
  while (in >> word) {
    if (word.rfind("fcvm.images=", 0) == 0) device = word.substr(strlen("fcvm.images="));
  }
  if (device.empty()) return;
  KJ_REQUIRE(device.rfind("/dev/vd", 0) == 0 && device.find('/', 5) == std::string::npos &&
                 device.size() <= 12,
             "bad fcvm.images", device);
  waitForDevice(device, timeout);
  makeDir(target.c_str());
  KJ_SYSCALL(
      mount(device.c_str(), target.c_str(), "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV, "noload"),
      "mount image store", device, target);
}

void setDefaultEnvironment() {
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 0);
  setenv("HOME", "/root", 0);
  setenv("TERM", "xterm", 0);
}

void bringUpLoopback() {
  int sock;
  KJ_SYSCALL(sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket for lo");
  kj::AutoCloseFd owned(sock);
  struct ifreq ifr = {};
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  KJ_SYSCALL(ioctl(sock, SIOCGIFFLAGS, &ifr), "get lo flags");
  ifr.ifr_flags |= IFF_UP;
  KJ_SYSCALL(ioctl(sock, SIOCSIFFLAGS, &ifr), "bring lo up");
}

void powerOff() {
  sync();
  reboot(RB_POWER_OFF);
  fprintf(stderr, "fc-agent: reboot(RB_POWER_OFF): %s\n", strerror(errno));
}

}  // namespace fcvm::agent
