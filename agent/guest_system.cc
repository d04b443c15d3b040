#include "agent/guest_system.h"

#include <fcntl.h>
#include <kj/debug.h>
#include <kj/io.h>
#include <linux/fs.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <vector>

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

}  // namespace fcvm::agent
