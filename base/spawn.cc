#include "base/spawn.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <sstream>

#include "base/error.h"

extern char** environ;

namespace fcvm {
namespace {

// What the child failed at before exec, reported with errno over the error pipe.
enum class Step : int {
  kSession = 1,
  kParentDeath,
  kFds,
  kCwd,
  kNoNewPrivs,
  kNetns,
  kGroups,
  kGid,
  kUid,
  kExec,
  kCgroup,
  kJail,
};

const char* stepName(Step step) {
  switch (step) {
    case Step::kSession:
      return "setsid";
    case Step::kParentDeath:
      return "parent-death signal";
    case Step::kFds:
      return "fd layout";
    case Step::kCwd:
      return "chdir";
    case Step::kNoNewPrivs:
      return "no_new_privs";
    case Step::kNetns:
      return "setns";
    case Step::kGroups:
      return "setgroups";
    case Step::kGid:
      return "setresgid";
    case Step::kUid:
      return "setresuid";
    case Step::kExec:
      return "exec";
    case Step::kCgroup:
      return "joining its cgroup";
    case Step::kJail:
      return "building its root";
  }
  return "setup";
}

struct Failure {
  int step;
  int err;
  int jailStep;  // which of the JailSteps failed (kJail)
};

// One system call of building a jail root, worked out before the fork so that the child only
// makes system calls. Paths are as the child sees them before it pivots: under JailRoot::dir.
struct JailStep {
  enum Kind { kMkdir, kFile, kBind, kReadOnly, kSymlink, kProc } kind;
  std::string path;
  std::string source;  // kBind: the host path; kSymlink: the link's text
};

std::vector<JailStep> planJail(const JailRoot& jail) {
  std::vector<JailStep> steps;
  std::vector<std::string> made;
  // Every directory above `target` (a path inside the root), once.
  auto parentsOf = [&](const std::string& target) {
    for (size_t slash = target.find('/', 1); slash != std::string::npos;
         slash = target.find('/', slash + 1)) {
      std::string dir = jail.dir + target.substr(0, slash);
      if (std::find(made.begin(), made.end(), dir) == made.end()) {
        made.push_back(dir);
        steps.push_back({JailStep::kMkdir, dir, {}});
      }
    }
  };
  for (const auto& bind : jail.binds) {
    if (bind.target.empty() || bind.target[0] != '/') {
      throw Error(fmt::format("jail: '{}' is not an absolute path", bind.target));
    }
    struct stat st {};
    checkSys(::stat(bind.source.c_str(), &st), "jail: stat {}", bind.source);
    parentsOf(bind.target);
    std::string path = jail.dir + bind.target;
    steps.push_back({S_ISDIR(st.st_mode) ? JailStep::kMkdir : JailStep::kFile, path, {}});
    made.push_back(path);
    steps.push_back({JailStep::kBind, path, bind.source});
    if (!bind.writable) steps.push_back({JailStep::kReadOnly, path, {}});
  }
  for (const auto& link : jail.symlinks) {
    parentsOf(link.target);
    steps.push_back({JailStep::kSymlink, jail.dir + link.target, link.text});
  }
  if (jail.proc) {
    steps.push_back({JailStep::kMkdir, jail.dir + "/proc", {}});
    steps.push_back({JailStep::kProc, jail.dir + "/proc", {}});
  }
  return steps;
}

// In the child, in its new mount namespace: the root, then pivot_root into it. Returns the index
// of the step that failed (errno set), -1 for the mounts before the steps, -3 for the pivot into
// the root, or -2 on success.
int buildJail(const JailRoot& jail, const std::vector<JailStep>& steps) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == -1) return -1;
  if (::mount("tmpfs", jail.dir.c_str(), "tmpfs", MS_NOSUID, "mode=0755,size=1m") == -1) return -1;
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& step = steps[i];
    const char* path = step.path.c_str();
    int rc = 0;
    switch (step.kind) {
      case JailStep::kMkdir:
        rc = ::mkdir(path, 0755);
        break;
      case JailStep::kFile:
        rc = ::mknod(path, S_IFREG | 0644, 0);
        break;
      case JailStep::kBind:
        rc = ::mount(step.source.c_str(), path, nullptr, MS_BIND | MS_REC, nullptr);
        break;
      case JailStep::kReadOnly: {
        // The bind and every mount below it (a remount would change only the top one), adding
        // to the flags each has rather than replacing them (some may be locked).
        mount_attr attr{};
        attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID;
        rc = ::mount_setattr(AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr);
        break;
      }
      case JailStep::kSymlink:
        rc = ::symlink(step.source.c_str(), path);
        break;
      case JailStep::kProc:
        rc = ::mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
        break;
    }
    if (rc == -1) return static_cast<int>(i);
  }
  if (pivotIntoReadOnlyRoot(jail.dir.c_str()) == -1) return -3;
  return -2;
}

// fork(), or clone3 into new namespaces. Without a stack clone3 returns twice as fork does; the
// child runs only the async-signal-safe steps below, so skipping glibc's fork handlers is safe.
pid_t forkInto(int namespaces) {
  if (namespaces == 0) return ::fork();
  clone_args args{};
  args.flags = static_cast<uint64_t>(namespaces);
  args.exit_signal = SIGCHLD;
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

[[noreturn]] void childFail(int errorPipe, Step step, int jailStep = -1) {
  Failure f{static_cast<int>(step), errno, jailStep};
  ssize_t ignored = ::write(errorPipe, &f, sizeof f);
  (void)ignored;
  ::_exit(127);
}

}  // namespace

Credentials Credentials::ofUser(uid_t uid, gid_t fallbackGid) {
  Credentials c{uid, fallbackGid, {}};
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* found = nullptr;
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return c;
  }
  c.gid = entry.pw_gid;
  int count = 64;
  std::vector<gid_t> groups(static_cast<size_t>(count));
  if (::getgrouplist(entry.pw_name, entry.pw_gid, groups.data(), &count) == -1) {
    groups.resize(static_cast<size_t>(count));
    ::getgrouplist(entry.pw_name, entry.pw_gid, groups.data(), &count);
  }
  groups.resize(static_cast<size_t>(std::max(count, 0)));
  c.groups = std::move(groups);
  return c;
}

int pivotIntoReadOnlyRoot(const char* dir) {
  // pivot_root(".", "."): the old root ends up on top of the new one, and goes with the unmount.
  if (::chdir(dir) == -1 || ::syscall(SYS_pivot_root, ".", ".") == -1 ||
      ::umount2(".", MNT_DETACH) == -1 || ::chdir("/") == -1) {
    return -1;
  }
  return ::mount(nullptr, "/", nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                 nullptr);
}

JailRoot systemJailRoot(const std::string& dir) {
  JailRoot root;
  root.dir = dir;
  root.binds.push_back({"/usr", "/usr", false});
  for (const char* top : {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}) {
    struct stat st {};
    if (::lstat(top, &st) == -1) continue;
    if (S_ISLNK(st.st_mode)) {
      std::string text(PATH_MAX, '\0');
      ssize_t n = ::readlink(top, text.data(), text.size());
      checkSys(n, "readlink {}", top);
      text.resize(static_cast<size_t>(n));
      root.symlinks.push_back({top, text});
    } else if (S_ISDIR(st.st_mode)) {
      root.binds.push_back({top, top, false});
    }
  }
  if (::access("/etc/ld.so.cache", F_OK) == 0) {
    root.binds.push_back({"/etc/ld.so.cache", "/etc/ld.so.cache", false});
  }
  for (const char* device : {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}) {
    root.binds.push_back({device, device, true});
  }
  root.symlinks.push_back({"/dev/fd", "/proc/self/fd"});
  root.proc = true;
  return root;
}

std::optional<std::string> findInPath(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) == 0) return program;
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir;
    candidate.append("/").append(program);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  // Administrative tools live in sbin, which a non-root PATH often lacks.
  for (const char* sbin : {"/usr/sbin/", "/sbin/"}) {
    std::string candidate = sbin + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

std::vector<std::string> environmentWith(const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto name = entry.substr(0, entry.find('=') + 1);
    bool replaced = std::any_of(overrides.begin(), overrides.end(),
                                [&](const std::string& o) { return o.starts_with(name); });
    if (!replaced) env.emplace_back(entry);
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

std::string describeWaitStatus(int status) {
  if (WIFEXITED(status)) return fmt::format("exit code {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("signal {}", WTERMSIG(status));
  return fmt::format("status {}", status);
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      reaped_(std::exchange(other.reaped_, false)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    ChildProcess old(std::move(*this));
    pid_ = std::exchange(other.pid_, -1);
    pidfd_ = std::move(other.pidfd_);
    reaped_ = std::exchange(other.reaped_, false);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (running()) {
    kill();
    wait();
  }
}

void ChildProcess::kill(int signo) const {
  if (!running()) return;
  // By pidfd, so a reused pid is never hit; by pid only if there is no pidfd (not yet reaped, so
  // the pid is still ours).
  if (pidfd_) {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), signo, nullptr, 0);
  } else {
    ::kill(pid_, signo);
  }
}

int ChildProcess::wait() {
  if (!running()) throw Error(fmt::format("process {} was already reaped", pid_));
  int status = 0;
  checkSys(retryEintr([&] { return ::waitpid(pid_, &status, 0); }), "waitpid {}", pid_);
  reaped_ = true;
  return status;
}

std::optional<int> ChildProcess::waitFor(std::chrono::milliseconds timeout) {
  if (!running()) throw Error(fmt::format("process {} was already reaped", pid_));
  pollfd pfd{pidfd_.get(), POLLIN, 0};
  int n = retryEintr([&] { return ::poll(&pfd, 1, static_cast<int>(timeout.count())); });
  checkSys(n, "wait for process {}", pid_);
  if (n == 0) return std::nullopt;
  return wait();
}

UniqueFd ChildProcess::release() {
  pid_ = -1;
  return std::move(pidfd_);
}

ChildProcess spawn(const SpawnSpec& spec) {
  if (spec.argv.empty()) throw Error("spawn: empty command");
  auto program = findInPath(spec.argv[0]);
  if (!program) throw SysError(ENOENT, "start " + spec.argv[0]);

  // Everything the child needs is built here: between fork and exec only async-signal-safe calls.
  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  UniqueFd devNull(static_cast<int>(checkSys(::open("/dev/null", O_RDWR | O_CLOEXEC), "open")));
  std::map<int, int> fds = spec.fds;
  for (int stdio = 0; stdio <= 2; ++stdio) fds.emplace(stdio, devNull.get());
  int highest = 0;
  for (auto [child, parent] : fds) highest = std::max({highest, child, parent});
  std::vector<std::pair<int, int>> layout(fds.begin(), fds.end());
  std::vector<gid_t> groups;
  if (spec.credentials) groups = spec.credentials->groups;
  std::vector<JailStep> jailSteps;
  if (spec.jail) {
    if ((spec.newNamespaces & CLONE_NEWNS) == 0) throw Error("spawn: a jail needs CLONE_NEWNS");
    jailSteps = planJail(*spec.jail);
  }
  std::vector<UniqueFd> cgroupFiles;
  std::vector<int> cgroupFds;
  for (const auto& procs : spec.cgroups) {
    cgroupFiles.emplace_back(static_cast<int>(checkSys(::open(procs.c_str(), O_WRONLY | O_CLOEXEC),
                                                       "open {} for {}", procs, spec.argv[0])));
    cgroupFds.push_back(cgroupFiles.back().get());
  }

  int errorFds[2];
  checkSys(::pipe2(errorFds, O_CLOEXEC), "pipe2");
  UniqueFd errorRead(errorFds[0]), errorWrite(errorFds[1]);
  pid_t parent = ::getpid();
  // In a new PID namespace the child cannot compare its parent's pid: it watches a pidfd instead.
  UniqueFd parentPidfd;
  if (spec.dieWithParent && (spec.newNamespaces & CLONE_NEWPID)) {
    parentPidfd.reset(static_cast<int>(
        checkSys(::syscall(SYS_pidfd_open, parent, 0), "pidfd_open of this process")));
  }

  pid_t pid = forkInto(spec.newNamespaces);
  checkSys(pid, "fork for {}", spec.argv[0]);
  if (pid == 0) {
    // Move the error pipe and every source above all numbers in play first, so no dup2 below
    // overwrites a later source or the pipe; dup2 clears close-on-exec on the targets.
    int base = std::max(highest, errorWrite.get()) + 1;
    int err = ::fcntl(errorWrite.get(), F_DUPFD_CLOEXEC, base);
    if (err == -1) ::_exit(127);
    int owner = parentPidfd ? ::fcntl(parentPidfd.get(), F_DUPFD_CLOEXEC, base) : -1;
    if (parentPidfd && owner == -1) childFail(err, Step::kParentDeath);
    for (int signo = 1; signo < NSIG; ++signo) (void)::signal(signo, SIG_DFL);
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Before any dup2 below can reuse these fds' numbers. "0" is the writer itself.
    for (int fd : cgroupFds) {
      if (::write(fd, "0", 1) != 1) childFail(err, Step::kCgroup);
    }
    if (spec.newSession && ::setsid() == -1) childFail(err, Step::kSession);
    for (auto& [child, source] : layout) {
      source = ::fcntl(source, F_DUPFD_CLOEXEC, base);
      if (source == -1) childFail(err, Step::kFds);
    }
    // Everything closes at exec but the targets, which dup2 marks to stay open; the error pipe
    // stays usable until then.
    if (::syscall(SYS_close_range, 0, ~0U, CLOSE_RANGE_CLOEXEC) == -1) childFail(err, Step::kFds);
    for (auto [child, source] : layout) {
      if (::dup2(source, child) == -1) childFail(err, Step::kFds);
    }
    if (spec.jail) {
      int failed = buildJail(*spec.jail, jailSteps);
      if (failed != -2) childFail(err, Step::kJail, failed);
    }
    if (!spec.cwd.empty() && ::chdir(spec.cwd.c_str()) == -1) childFail(err, Step::kCwd);
    if (spec.noNewPrivs && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
      childFail(err, Step::kNoNewPrivs);
    }
    if (spec.netns >= 0 && ::setns(spec.netns, CLONE_NEWNET) == -1) childFail(err, Step::kNetns);
    if (spec.credentials) {
      // Raw system calls: they change this (the only) thread's credentials, without glibc's
      // all-threads broadcast.
      const auto& c = *spec.credentials;
      if (::syscall(SYS_setgroups, groups.size(), groups.data()) == -1) {
        childFail(err, Step::kGroups);
      }
      if (::syscall(SYS_setresgid, c.gid, c.gid, c.gid) == -1) childFail(err, Step::kGid);
      if (::syscall(SYS_setresuid, c.uid, c.uid, c.uid) == -1) childFail(err, Step::kUid);
    }
    // After the credentials: changing them clears the parent-death signal.
    if (spec.dieWithParent) {
      if (::prctl(PR_SET_PDEATHSIG, SIGKILL) == -1) childFail(err, Step::kParentDeath);
      // The owner is already gone (it may have died at any step above).
      if (owner != -1) {
        pollfd gone{owner, POLLIN, 0};
        if (::poll(&gone, 1, 0) != 0) ::_exit(127);
      } else if (::getppid() != parent) {
        ::_exit(127);
      }
    }
    ::execve(program->c_str(), argv.data(), envp.data());
    childFail(err, Step::kExec);
  }

  errorWrite.reset();
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  int pidfdErrno = errno;
  ChildProcess child(pid, std::move(pidfd));
  Failure failure{};
  ssize_t n = retryEintr([&] { return ::read(errorRead.get(), &failure, sizeof failure); });
  if (n == sizeof failure) {
    child.wait();
    std::string step = stepName(static_cast<Step>(failure.step));
    if (failure.step == static_cast<int>(Step::kJail)) {
      if (failure.jailStep >= 0 && static_cast<size_t>(failure.jailStep) < jailSteps.size()) {
        step += ": " + jailSteps[static_cast<size_t>(failure.jailStep)].path;
      } else if (failure.jailStep == -3) {
        step += ": pivot_root into " + spec.jail->dir;
      } else {
        step += ": a tmpfs on " + spec.jail->dir;
      }
    }
    throw SysError(failure.err, fmt::format("start {} ({})", *program, step));
  }
  if (child.pidfd() < 0) throw SysError(pidfdErrno, "pidfd_open " + *program);
  return child;
}

}  // namespace fcvm
