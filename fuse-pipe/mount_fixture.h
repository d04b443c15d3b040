// The fixture of the tests on real mounts: the `fuse-pipe` binary serves a temporary directory
// (tmp/srv/root) and mounts it on another (tmp/mnt); every child process, mount and directory is
// owned by an object that cleans it up, also when a test fails half-way. Needs root and /dev/fuse.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "base/unique_fd.h"
#include "fuse-pipe/test_util.h"

extern char** environ;

namespace fcvm::fusepipe {

namespace fs = std::filesystem;

inline bool canMount() { return ::geteuid() == 0 && ::access("/dev/fuse", R_OK | W_OK) == 0; }

inline bool isMounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(" " + path + " ") != std::string::npos) return true;
  }
  return false;
}

// A child process; killed (SIGKILL) and reaped on destruction unless already waited for.
class Child {
 public:
  // Runs argv with the write end of a pipe as fd 3 and returns once the child writes a byte
  // there (it is ready) or closes it (it failed: throws).
  static std::unique_ptr<Child> startAndWaitReady(std::vector<std::string> argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    // Move both ends above fd 3, so that dup2 onto 3 always makes a fresh inheritable fd.
    UniqueFd readEnd(::fcntl(fds[0], F_DUPFD_CLOEXEC, 10));
    UniqueFd writeEnd(::fcntl(fds[1], F_DUPFD_CLOEXEC, 10));
    ::close(fds[0]);
    ::close(fds[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), 3);
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0]);
    auto child = std::unique_ptr<Child>(new Child(pid));
    writeEnd.reset();
    char byte = 0;
    ssize_t n;
    do {
      n = ::read(readEnd.get(), &byte, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) throw std::runtime_error(argv[0] + " " + argv[1] + " exited before it was ready");
    return child;
  }

  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  // Sends `signal` and waits for the child to end; returns its wait status.
  int signalAndWait(int signal) {
    ::kill(pid_, signal);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  explicit Child(pid_t pid) : pid_(pid) {}
  pid_t pid_;
};

// Unmounts (lazily) on destruction if still mounted, so the temp dir can always be removed.
class UnmountGuard {
 public:
  explicit UnmountGuard(std::string path) : path_(std::move(path)) {}
  ~UnmountGuard() {
    if (isMounted(path_)) ::umount2(path_.c_str(), MNT_DETACH);
  }

 private:
  std::string path_;
};

inline std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// errno of open(path, flags), or 0 if it opened (the fd is closed again).
inline int openErrno(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

inline void writeAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    ASSERT_GT(n, 0) << std::strerror(errno);
    done += static_cast<size_t>(n);
  }
}

inline void writeFile(const std::string& path, const std::string& data, int flags = O_TRUNC) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644));
  ASSERT_TRUE(fd) << path << ": " << std::strerror(errno);
  writeAll(fd.get(), data);
}

class MountTest : public ::testing::Test {
 protected:
  // Layout: tmp/srv/root is served, tmp/mnt is the mountpoint, tmp/srv/secret lies outside the
  // served tree, at the place a "../secret" symlink in the root would reach on the host.
  void SetUp() override {
    if (!canMount()) GTEST_FAIL() << "needs root and /dev/fuse";
    fs::create_directories(hostRoot_);
    fs::create_directory(mountpoint_);
    std::ofstream(tmp_ / "srv/secret") << "host secret";
    // Let unprivileged test callers reach the mountpoint.
    fs::permissions(tmp_.path(), fs::perms(0755));
  }

  void TearDown() override {
    if (mount_) mount_->signalAndWait(SIGTERM);
    mount_.reset();
    server_.reset();
  }

  void startServer(bool readOnly = false) {
    std::vector<std::string> argv = {
        FUSE_PIPE_BINARY, "--log-level",     "warn",       "serve", "--root", hostRoot_,
        "--listen",       "unix:" + socket_, "--ready-fd", "3"};
    if (readOnly) argv.push_back("--read-only");
    server_ = Child::startAndWaitReady(argv);
  }

  void startMount(const std::string& cacheTimeout = "0") {
    mount_ =
        Child::startAndWaitReady({FUSE_PIPE_BINARY, "--log-level", "warn", "mount", "--connect",
                                  "unix:" + socket_, mountpoint_, "-o", "allow_other", "--readers",
                                  "4", "--cache-timeout", cacheTimeout, "--ready-fd", "3"});
    ASSERT_TRUE(isMounted(mountpoint_));
  }

  void startAll(bool readOnly = false) {
    startServer(readOnly);
    startMount();
  }

  std::string m(const std::string& name) const { return mountpoint_ + "/" + name; }
  std::string h(const std::string& name) const { return hostRoot_ + "/" + name; }

  testing::TempDir tmp_;
  const std::string hostRoot_ = tmp_ / "srv/root";
  const std::string mountpoint_ = tmp_ / "mnt";
  const std::string socket_ = tmp_ / "fuse-pipe.sock";
  UnmountGuard unmountGuard_{mountpoint_};
  std::unique_ptr<Child> server_;
  std::unique_ptr<Child> mount_;
};

// Runs `body` in a forked child as uid/gid 65534 with the given supplementary groups and umask;
// returns the child's exit code (body's result).
inline int runAsNobody(const std::vector<gid_t>& groups, mode_t umask,
                       const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(65534) != 0 ||
        ::setuid(65534) != 0) {
      ::_exit(100);
    }
    ::umask(umask);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

}  // namespace fcvm::fusepipe
