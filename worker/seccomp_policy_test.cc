#include "worker/seccomp_policy.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <functional>

namespace fcvm::worker {
namespace {

// Runs `body` in a forked child after confining it; the child's exit code is body's result.
int inConfinedChild(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    try {
      confineWorker();
    } catch (...) {
      ::_exit(100);
    }
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

TEST(SeccompPolicyTest, RefusesExecutingPrograms) {
  EXPECT_EQ(inConfinedChild([] {
              char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
              ::execve("/bin/true", argv, nullptr);
              return errno == EPERM ? 0 : 1;
            }),
            0);
}

// Only TCP over IPv4 (the HTTP health check's connection) may be opened: no datagrams, no raw or
// packet sockets, no netlink, no IPv6.
TEST(SeccompPolicyTest, RefusesNetworkSocketsMountsAndForks) {
  EXPECT_EQ(inConfinedChild([] {
              if (::socket(AF_INET, SOCK_DGRAM, 0) != -1 || errno != EPERM) return 1;
              if (::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) != -1 || errno != EPERM) return 1;
              if (::socket(AF_INET6, SOCK_STREAM, 0) != -1 || errno != EPERM) return 1;
              if (::socket(AF_NETLINK, SOCK_RAW, 0) != -1 || errno != EPERM) return 1;
              if (::socket(AF_UNIX, SOCK_STREAM, 0) != -1 || errno != EPERM) return 1;
              if (::mount("none", "/mnt", "tmpfs", 0, nullptr) != -1 || errno != EPERM) return 2;
              if (::fork() != -1 || errno != EPERM) return 3;
              if (::setuid(0) != -1 || errno != EPERM) return 4;
              return 0;
            }),
            0);
}

TEST(SeccompPolicyTest, AllowsTheHealthChecksTcpConnection) {
  EXPECT_EQ(inConfinedChild([] {
              int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
              return fd >= 0 ? 0 : 1;
            }),
            0);
}

TEST(SeccompPolicyTest, AllowsWhatTheWorkerDoes) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  EXPECT_EQ(inConfinedChild([&fds] {
              // A socketpair made before confinement stays usable; so do files and time.
              char buf[4] = {};
              if (::write(fds[1], "ping", 4) != 4) return 1;
              if (::read(fds[0], buf, 4) != 4) return 2;
              if (::getpid() <= 0) return 3;
              return 0;
            }),
            0);
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace fcvm::worker
