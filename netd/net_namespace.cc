#include "netd/net_namespace.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "base/error.h"

namespace fcvm::netd {
namespace {

std::string pathOf(const std::string& name) { return std::string(kNetnsDir) + "/" + name; }

// iproute2's convention: the namespace directory is a shared mount point of its own, so the
// namespaces mounted in it are seen from every mount namespace. `ip netns add` makes it one when
// it is not, by mounting the directory over itself, which hides (and makes impossible to remove)
// every namespace mounted there before. Doing the same first keeps one view for both. Called
// under the host-wide slot lock, so two netd processes do not both mount it.
void ensureSharedNetnsDir() {
  std::filesystem::create_directories(kNetnsDir);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) == 0) return;
    if (errno != EINVAL || attempt > 0) break;  // EINVAL: not a mount point yet
    checkSys(::mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr), "bind {} on itself",
             kNetnsDir);
  }
  throw SysError(errno, fmt::format("make {} a shared mount point", kNetnsDir));
}

}  // namespace

bool netnsExists(const std::string& name) { return std::filesystem::exists(pathOf(name)); }

UniqueFd openNetns(const std::string& name) {
  UniqueFd fd(::open(pathOf(name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open network namespace " + name);
  return fd;
}

void runInNetns(int netnsFd, const std::function<void()>& work) {
  std::exception_ptr failure;
  std::thread thread([&] {
    try {
      checkSys(::setns(netnsFd, CLONE_NEWNET), "enter a network namespace");
      work();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  thread.join();
  if (failure) std::rethrow_exception(failure);
}

void createNetns(const std::string& name) {
  ensureSharedNetnsDir();
  auto path = pathOf(name);
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444));
  if (!file) throw SysError(errno, "create " + path);
  file.reset();
  std::exception_ptr failure;
  // A thread of its own unshares, so no other thread's namespace changes; its namespace then
  // lives on through the bind mount.
  std::thread thread([&] {
    try {
      checkSys(::unshare(CLONE_NEWNET), "unshare a network namespace");
      auto self = fmt::format("/proc/self/task/{}/ns/net", ::gettid());
      checkSys(::mount(self.c_str(), path.c_str(), nullptr, MS_BIND, nullptr), "bind {}", path);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  thread.join();
  if (failure) {
    ::unlink(path.c_str());
    std::rethrow_exception(failure);
  }
}

void deleteNetns(const std::string& name) {
  auto path = pathOf(name);
  if (::umount2(path.c_str(), MNT_DETACH) == -1 && errno != EINVAL && errno != ENOENT) {
    throw SysError(errno, "unmount " + path);
  }
  if (::unlink(path.c_str()) == -1 && errno != ENOENT) throw SysError(errno, "remove " + path);
}

UniqueFd openTap(const std::string& name) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open /dev/net/tun");
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  checkSys(::ioctl(fd.get(), TUNSETIFF, &ifr), "create TAP {}", name);
  return fd;
}

void writeSysctl(const std::string& path, const std::string& value) {
  auto full = "/proc/sys/" + path;
  UniqueFd fd(::open(full.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw SysError(errno, "open " + full);
  checkSys(::write(fd.get(), value.data(), value.size()), "write {}", full);
}

}  // namespace fcvm::netd
