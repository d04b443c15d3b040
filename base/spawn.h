// The one way fcvm starts a child process, shaped after crosvm's jail and Firecracker's jailer: a
// SpawnSpec says everything the child gets (program, arguments, the whole environment, the fds it
// inherits at fixed numbers with every other fd closed, session, parent-death signal, credentials,
// no_new_privs), and a ChildProcess owns the result: its pidfd, and a kill plus reap in its
// destructor unless it was released on purpose (a daemon that outlives its starter).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace fcvm {

// Who a child runs as.
struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups

  // The user's primary group and supplementary groups from the user database; a uid without an
  // entry keeps `fallbackGid` and no supplementary groups.
  static Credentials ofUser(uid_t uid, gid_t fallbackGid);
};

// A root of the child's own, in its own mount namespace (Firecracker's jailer, crosvm's
// minijail): an empty tmpfs mounted on `dir` (an empty directory of ours) that holds only what is
// listed here, which the child pivots into before it drops its credentials. Its /proc is a new
// one, which shows only the child's own processes when it also has CLONE_NEWPID. The root is
// read-only in the end. Needs CLONE_NEWNS (and, for /proc, CLONE_NEWPID) in newNamespaces.
struct JailRoot {
  std::string dir;
  struct Bind {
    std::string source;  // a host path: a directory, or a file (a device such as /dev/null)
    std::string target;  // the absolute path inside the root
    bool writable = false;
  };
  std::vector<Bind> binds;
  struct Symlink {
    std::string target;  // the absolute path inside the root
    std::string text;    // what it points to
  };
  std::vector<Symlink> symlinks;
  bool proc = true;  // mount a /proc
};

// A jail root on `dir` with what any program needs to run: /usr and the host's /bin, /sbin and
// /lib* (bound read-only, or the same symlinks where the host's are symlinks into /usr), the
// loader's cache, /dev/null, /dev/zero, /dev/random, /dev/urandom, /dev/fd and a /proc.
JailRoot systemJailRoot(const std::string& dir);

// Makes `dir` (a mount point, in a mount namespace of this process's own whose mounts are
// private) this process's root, with the old root detached, and that root read-only, nosuid and
// nodev. Only system calls (fit for a child between fork and exec): 0, or -1 with errno set.
int pivotIntoReadOnlyRoot(const char* dir);

struct SpawnSpec {
  std::vector<std::string> argv;  // argv[0]: a path, or a name searched in PATH (and sbin)
  std::vector<std::string> env;   // the child's whole environment, NAME=VALUE
  // Child fd number -> an fd of ours. Every other fd is closed in the child; 0, 1 and 2 are
  // /dev/null unless given here.
  std::map<int, int> fds;
  std::string cwd;          // working directory; empty: ours
  bool newSession = false;  // setsid(): no controlling terminal, own process group
  // SIGKILL when the thread that spawned it exits (PR_SET_PDEATHSIG); for children that must
  // never outlive their owner, such as a VM's QEMU.
  bool dieWithParent = false;
  bool noNewPrivs = false;
  std::optional<Credentials> credentials;  // switch to these before exec; else ours
  int netns = -1;  // an fd of a network namespace to enter (setns) before exec; -1: ours
  // CLONE_NEW* flags: the child starts in namespaces of its own (clone3; needs CAP_SYS_ADMIN).
  // With CLONE_NEWPID it is PID 1 there, and killing it ends everything it started.
  int newNamespaces = 0;
  // cgroup.procs files (one per cgroup v1 hierarchy, or one of cgroup v2) the child moves itself
  // into first, so everything it starts is limited too. Opened here, before the fork.
  std::vector<std::string> cgroups;
  std::optional<JailRoot> jail;  // a root of its own (and it must be CLONE_NEWNS)
};

// A started child. Destroying it kills (SIGKILL) and reaps the child unless it has been reaped
// or released.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(pid_t pid, UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Readable once the child has exited, for an event loop; wait()/waitFor() then reap at once.
  int pidfd() const { return pidfd_.get(); }
  bool running() const { return pid_ > 0 && !reaped_; }

  void kill(int signo = 9) const;
  // Blocks until the child exits; returns its wait status.
  int wait();
  // Waits up to `timeout`; the wait status, or nullopt if it is still running.
  std::optional<int> waitFor(std::chrono::milliseconds timeout);
  // Gives up ownership without killing: the child lives on and someone else reaps it (its new
  // parent after this process exits, or a later waitpid by pid). Returns the pidfd, for a caller
  // that goes on watching it.
  UniqueFd release();

 private:
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  bool reaped_ = false;
};

// Starts the child. Throws fcvm::SysError naming the program when it cannot be started: not
// found, not executable, credentials refused; the child reports such failures before exec over a
// close-on-exec pipe, so a failed start never looks like a started child.
ChildProcess spawn(const SpawnSpec& spec);

// This process's environment with `overrides` (NAME=VALUE) added or replacing same-named entries.
std::vector<std::string> environmentWith(const std::vector<std::string>& overrides);

// Describes a wait status for messages: "exit code 3", "signal 9".
std::string describeWaitStatus(int status);

// The full path of `program` in PATH (and, for administrative tools, sbin), if it is there and
// executable; `program` itself if it contains a slash and is executable.
std::optional<std::string> findInPath(const std::string& program);

}  // namespace fcvm
