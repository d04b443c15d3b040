#include "base/spawn.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/subprocess.h"

namespace fcvm {
namespace {

std::string readAll(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

struct Pipe {
  UniqueFd read, write;
  Pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw SysError(errno, "pipe2");
    read.reset(fds[0]);
    write.reset(fds[1]);
  }
};

TEST(SpawnTest, ChildGetsExactlyTheMappedFds) {
  Pipe out;
  // An fd of ours without close-on-exec: the child must still not see it.
  int leaked = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaked, 0);
  Pipe extra;
  SpawnSpec spec;
  spec.argv = {"sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; cat <&7"};
  spec.env = environmentWith({});
  spec.fds[1] = out.write.get();
  spec.fds[7] = extra.read.get();
  auto child = spawn(spec);
  out.write.reset();
  ASSERT_EQ(::write(extra.write.get(), "seven\n", 6), 6);
  extra.write.reset();
  std::string text = readAll(out.read.get());
  EXPECT_EQ(WEXITSTATUS(child.wait()), 0);
  ::close(leaked);
  // 0-2, 7, and the fd `ls` itself opens for /proc/self/fd.
  EXPECT_EQ(text.substr(0, text.find('\n')), "0 1 2 3 7 ");
  EXPECT_EQ(text.substr(text.find('\n') + 1), "seven\n");
}

TEST(SpawnTest, SwappedFdsLandWhereAsked) {
  Pipe a, b;
  SpawnSpec spec;
  spec.argv = {"sh", "-c", "echo to-a >&1; echo to-b >&2"};
  spec.env = environmentWith({});
  // Each source sits at the other's target number in a naive dup2 order.
  spec.fds[1] = a.write.get();
  spec.fds[2] = b.write.get();
  spec.fds[a.write.get()] = b.write.get();
  spec.fds[b.write.get()] = a.write.get();
  auto child = spawn(spec);
  a.write.reset();
  b.write.reset();
  EXPECT_EQ(readAll(a.read.get()), "to-a\n");
  EXPECT_EQ(readAll(b.read.get()), "to-b\n");
  EXPECT_EQ(WEXITSTATUS(child.wait()), 0);
}

TEST(SpawnTest, CredentialsEnvironmentAndWorkingDirectory) {
  ASSERT_EQ(::geteuid(), 0u) << "switching credentials needs root";
  CommandOptions options;
  options.credentials = Credentials{65534, 65534, {65534}};
  options.environment = std::vector<std::string>{"PATH=/usr/bin:/bin", "ONLY=this"};
  options.cwd = "/";
  auto r = runCommand({"sh", "-c", "id -u; id -g; id -G; pwd; env | sort | tr '\\n' ' '"}, options);
  EXPECT_EQ(r.exitCode, 0);
  EXPECT_EQ(r.output, "65534\n65534\n65534\n/\nONLY=this PATH=/usr/bin:/bin PWD=/ ");
}

TEST(SpawnTest, StartFailuresAreErrorsNotChildren) {
  SpawnSpec spec;
  spec.argv = {"true"};
  spec.env = environmentWith({});
  spec.cwd = "/nonexistent-fcvm-dir";
  try {
    spawn(spec);
    FAIL() << "chdir into a missing dir must fail the start";
  } catch (const SysError& e) {
    EXPECT_EQ(e.code(), ENOENT);
    EXPECT_NE(std::string(e.what()).find("(chdir)"), std::string::npos) << e.what();
  }
  spec.cwd.clear();
  spec.argv = {"/etc/hostname"};  // not executable
  EXPECT_THROW(spawn(spec), SysError);
}

TEST(SpawnTest, OwnerKillsAndReapsUnlessReleased) {
  SpawnSpec spec;
  spec.argv = {"sleep", "600"};
  spec.env = environmentWith({});
  pid_t pid;
  {
    auto child = spawn(spec);
    pid = child.pid();
    EXPECT_FALSE(child.waitFor(std::chrono::milliseconds(0)).has_value());
  }
  // Reaped: the pid no longer names a child of ours.
  EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);

  auto released = spawn(spec);
  pid = released.pid();
  released.release();
  EXPECT_EQ(::kill(pid, 0), 0) << "a released child lives on";
  ::kill(pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(describeWaitStatus(status), "signal 9");
}

TEST(SpawnTest, DieWithParentKillsTheChildWhenItsOwnerThreadsProcessDies) {
  Pipe report;
  pid_t owner = ::fork();
  ASSERT_GE(owner, 0);
  if (owner == 0) {
    SpawnSpec spec;
    spec.argv = {"sleep", "600"};
    spec.env = environmentWith({});
    spec.dieWithParent = true;
    auto child = spawn(spec);
    pid_t pid = child.pid();
    child.release();
    (void)!::write(report.write.get(), &pid, sizeof pid);
    ::_exit(0);
  }
  report.write.reset();
  pid_t grandchild = 0;
  ASSERT_EQ(::read(report.read.get(), &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  ASSERT_EQ(::waitpid(owner, nullptr, 0), owner);
  // The grandchild was reparented (to init or a subreaper) and killed: its pidfd says so.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, grandchild, 0)));
  if (pidfd) {
    pollfd pfd{pidfd.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 60000), 1) << "the child outlived its owner";
  }
}

TEST(SpawnTest, AJailedChildSeesOnlyItsRootAndHasNoPrivileges) {
  ASSERT_EQ(::geteuid(), 0u) << "building a jail needs root";
  char dirTemplate[] = "/tmp/fcvm-spawn-jail-XXXXXX";
  ASSERT_NE(::mkdtemp(dirTemplate), nullptr);
  std::filesystem::path dir = dirTemplate;
  std::filesystem::create_directory(dir / "root");
  std::filesystem::create_directory(dir / "given");
  std::ofstream(dir / "given" / "file") << "given\n";
  std::ofstream(dir / "secret") << "secret\n";

  Pipe out;
  SpawnSpec spec;
  spec.argv = {"/bin/sh", "-c",
               "ls -A /; echo ---; cat /given/file; echo pid $$; "
               "grep -E '^(Uid|CapEff|CapPrm|NoNewPrivs):' /proc/self/status; "
               "touch /usr/x 2>/dev/null || echo usr read-only; "
               "touch /x 2>/dev/null || echo root read-only; "
               "echo >/given/new 2>/dev/null || echo given read-only; "
               "cat " +
                   (dir / "secret").string() + " 2>/dev/null || echo no host files"};
  spec.env = {"PATH=/usr/bin:/bin"};
  spec.fds[1] = out.write.get();
  spec.credentials = Credentials{65534, 65534, {}};
  spec.noNewPrivs = true;
  spec.dieWithParent = true;
  spec.newNamespaces = CLONE_NEWNS | CLONE_NEWPID;
  spec.jail = systemJailRoot((dir / "root").string());
  spec.jail->binds.push_back({(dir / "given").string(), "/given", false});
  auto child = spawn(spec);
  out.write.reset();
  std::string output = readAll(out.read.get());
  EXPECT_EQ(describeWaitStatus(child.wait()), "exit code 0") << output;

  std::istringstream lines(output);
  std::vector<std::string> root;
  for (std::string line; std::getline(lines, line) && line != "---";) root.push_back(line);
  std::sort(root.begin(), root.end());
  // Nothing of the host's but its programs, libraries and devices; what was given.
  for (const auto& entry : root) {
    EXPECT_TRUE(entry == "usr" || entry == "dev" || entry == "proc" || entry == "etc" ||
                entry == "given" || entry.starts_with("lib") || entry == "bin" || entry == "sbin")
        << entry;
  }
  std::string rest((std::istreambuf_iterator<char>(lines)), {});
  EXPECT_EQ(rest,
            "given\n"
            "pid 1\n"
            "Uid:\t65534\t65534\t65534\t65534\n"
            "CapPrm:\t0000000000000000\n"
            "CapEff:\t0000000000000000\n"
            "NoNewPrivs:\t1\n"
            "usr read-only\n"
            "root read-only\n"
            "given read-only\n"
            "no host files\n");
  // The jail was the child's alone: our view of its directory is as it was.
  EXPECT_TRUE(std::filesystem::is_empty(dir / "root"));
  std::filesystem::remove_all(dir);
}

TEST(SpawnTest, AJailThatCannotBeBuiltSaysWhere) {
  SpawnSpec spec;
  spec.argv = {"/bin/true"};
  spec.newNamespaces = CLONE_NEWNS;
  spec.jail = JailRoot{"/nonexistent-fcvm-jail", {}, {}, false};
  try {
    spawn(spec);
    FAIL() << "spawned";
  } catch (const SysError& e) {
    EXPECT_NE(std::string(e.what()).find("building its root"), std::string::npos) << e.what();
  }
  spec.jail->binds.push_back({"/nonexistent-fcvm-source", "/x", false});
  EXPECT_THROW(spawn(spec), SysError);
}

}  // namespace
}  // namespace fcvm
