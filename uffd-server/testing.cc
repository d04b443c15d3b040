#include "uffd-server/testing.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "base/error.h"

namespace fcvm::uffd::testing {

TempDir::TempDir() {
  const char* base = ::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/uffd-test.XXXXXX";
  if (!::mkdtemp(pattern.data())) throw SysError(errno, "mkdtemp " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::byte patternByte(uint64_t page, uint64_t index) {
  return static_cast<std::byte>((page * 131 + index * 7 + 1) % 251 + 1);
}

void writeImage(const std::string& path, uint64_t pages, uint64_t pageSize, uint64_t holeEvery) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw SysError(errno, "create " + path);
  checkSys(::ftruncate(fd.get(), static_cast<off_t>(pages * pageSize)), "truncate {}", path);
  std::vector<std::byte> page(pageSize);
  for (uint64_t i = 0; i < pages; ++i) {
    if (holeEvery != 0 && i % holeEvery == holeEvery - 1) continue;
    for (uint64_t j = 0; j < pageSize; ++j) page[j] = patternByte(i, j);
    const auto written =
        ::pwrite(fd.get(), page.data(), pageSize, static_cast<off_t>(i * pageSize));
    if (written != static_cast<ssize_t>(pageSize)) throw SysError(errno, "write " + path);
  }
}

UniqueFd createUserfaultfd(uint64_t features, bool userModeOnly) {
  const int flags = O_CLOEXEC | O_NONBLOCK | (userModeOnly ? UFFD_USER_MODE_ONLY : 0);
  UniqueFd uffd(static_cast<int>(::syscall(SYS_userfaultfd, flags)));
  if (!uffd) {
    throw SysError(errno,
                   "userfaultfd(2) refused (it needs root, CAP_SYS_PTRACE or "
                   "vm.unprivileged_userfaultfd=1)");
  }
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = features;
  checkSys(::ioctl(uffd.get(), UFFDIO_API, &api), "UFFDIO_API features {:#x}", features);
  return uffd;
}

void registerMissing(int uffd, const void* addr, size_t length) {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(addr);
  reg.range.len = length;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  checkSys(::ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER {} bytes", length);
}

std::string encodeRegions(const std::vector<GuestRegion>& regions) {
  nlohmann::json array = nlohmann::json::array();
  for (const GuestRegion& r : regions) {
    array.push_back({{"base_host_virt_addr", r.base},
                     {"size", r.size},
                     {"offset", r.offset},
                     {"page_size", r.pageSize}});
  }
  return array.dump();
}

void sendWithFds(int socketFd, std::string_view bytes, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  const ssize_t sent = retryEintr([&] { return ::sendmsg(socketFd, &msg, MSG_NOSIGNAL); });
  if (sent != static_cast<ssize_t>(bytes.size())) throw SysError(errno, "sendmsg");
}

namespace {

sockaddr_un unixAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof address.sun_path) throw Error("socket path too long: " + path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  return address;
}

}  // namespace

UniqueFd listenUnix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw SysError(errno, "socket");
  const sockaddr_un address = unixAddress(path);
  checkSys(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address), "bind {}",
           path);
  checkSys(::listen(fd.get(), 8), "listen {}", path);
  return fd;
}

UniqueFd connectUnix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw SysError(errno, "socket");
  const sockaddr_un address = unixAddress(path);
  checkSys(retryEintr([&] {
             return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address),
                              sizeof address);
           }),
           "connect {}", path);
  return fd;
}

}  // namespace fcvm::uffd::testing
