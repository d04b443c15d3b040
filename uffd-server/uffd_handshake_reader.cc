// readHandshake: the socket side of the handshake (uffd_handshake.cc holds the pure decoding).
#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "base/error.h"
#include "uffd-server/uffd_handshake.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5; newer than this system's headers
#endif

namespace fcvm::uffd {
namespace {

using Clock = std::chrono::steady_clock;

// Room for a few descriptors, so that a peer sending two or three gets a clear refusal (and they
// are all closed); a peer sending more truncates the control data and is refused for that.
constexpr size_t kFdSlots = 4;

[[noreturn]] void refuse(const std::string& reason) { throw Error("uffd handshake: " + reason); }

// True when `text` is a prefix of JSON that could still be completed: the parser ran off its end.
// Anything else (complete, or wrong before its end) goes to decodeHandshake as it is.
bool isIncompleteJson(const std::string& text) {
  try {
    [[maybe_unused]] const auto complete = nlohmann::json::parse(text);
    return false;
  } catch (const nlohmann::json::parse_error& e) {
    return e.byte > text.size();
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

void waitReadable(int fd, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) refuse("timed out waiting for the peer's message");
    pollfd pfd{fd, POLLIN, 0};
    const int n = retryEintr([&] { return ::poll(&pfd, 1, static_cast<int>(left.count())); });
    checkSys(n, "poll uffd handshake socket");
    if (n > 0) return;
  }
}

// One recvmsg: appends the bytes to `buffer` (never past kMaxHandshakeBytes + 1, so an oversize
// message shows) and every descriptor to `fds`. Returns false when nothing was ready.
bool receiveSome(int socketFd, std::string& buffer, std::vector<UniqueFd>& fds) {
  const size_t used = buffer.size();
  buffer.resize(kMaxHandshakeBytes + 1);
  iovec iov{buffer.data() + used, buffer.size() - used};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kFdSlots)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n =
      retryEintr([&] { return ::recvmsg(socketFd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); });
  const int err = errno;
  buffer.resize(used + (n > 0 ? static_cast<size_t>(n) : 0));
  if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) return false;
  if (n < 0) throw SysError(err, "receive uffd handshake");
  // Owned at once, so that every refusal below closes them.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) refuse("too many file descriptors (control data truncated)");
  if (n == 0) {
    refuse(buffer.empty() ? "the peer closed the connection without a message"
                          : "the peer closed the connection in the middle of its message");
  }
  return true;
}

void checkIsUserfaultfd(int fd) {
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  char target[64] = {};
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n < 0) throw SysError(errno, "readlink " + link);
  if (std::string_view(target, static_cast<size_t>(n)) != "anon_inode:[userfaultfd]") {
    refuse(fmt::format("the descriptor is not a userfaultfd but {}", target));
  }
}

UniqueFd peerPidfd(int socketFd, pid_t pid) {
  int fd = -1;
  socklen_t length = sizeof fd;
  if (::getsockopt(socketFd, SOL_SOCKET, SO_PEERPIDFD, &fd, &length) == 0) return UniqueFd(fd);
  if (errno != ENOPROTOOPT) throw SysError(errno, "SO_PEERPIDFD of the uffd handshake socket");
  // Kernels before 6.5: the peer is alive while it restores, so its pid is still its own.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) throw SysError(errno, fmt::format("pidfd_open of uffd peer {}", pid));
  return pidfd;
}

}  // namespace

Handshake readHandshake(int socketFd, uint64_t imageSize, uint64_t pageSize,
                        std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string text;
  std::vector<UniqueFd> fds;
  do {
    waitReadable(socketFd, deadline);
    if (!receiveSome(socketFd, text, fds)) continue;
    if (text.size() > kMaxHandshakeBytes) {
      refuse(fmt::format("message longer than {} bytes", kMaxHandshakeBytes));
    }
  } while (text.empty() || isIncompleteJson(text));

  if (fds.empty()) refuse("missing userfaultfd (no descriptor came with the message)");
  if (fds.size() > 1) refuse(fmt::format("{} descriptors, expected one userfaultfd", fds.size()));
  checkIsUserfaultfd(fds[0].get());

  Handshake handshake;
  handshake.regions = decodeHandshake(text, imageSize, pageSize);
  handshake.uffd = std::move(fds[0]);
  // The server reads it from an event loop; a blocking uffd would stall that loop. The flag lives
  // in the file description shared with the peer, which never reads its copy.
  const int flags = static_cast<int>(checkSys(::fcntl(handshake.uffd.get(), F_GETFL), "F_GETFL"));
  checkSys(::fcntl(handshake.uffd.get(), F_SETFL, flags | O_NONBLOCK),
           "make userfaultfd non-blocking");
  socklen_t length = sizeof handshake.peer;
  checkSys(::getsockopt(socketFd, SOL_SOCKET, SO_PEERCRED, &handshake.peer, &length),
           "SO_PEERCRED of the uffd handshake socket");
  handshake.peerPidfd = peerPidfd(socketFd, handshake.peer.pid);
  return handshake;
}

}  // namespace fcvm::uffd
