// The guest side of `make bench-volumes` (tests/guest/volume_bench.cc): /init of an initramfs
// that only the benchmark boots, under Debian's generic kernel (the guests' cloud kernel has no
// 9p). It mounts three targets:
//   disk       ext4 on its own virtio-blk disk, /dev/vda;
//   9p         a host directory through QEMU's virtio-9p server (9p2000.L, the kernel's default
//              caching, cache=none);
//   fuse-pipe  another host directory, served by the worker's VolumeServer on a --map volume's
//              port and mounted by the agent's own code (LinuxGuestSystem::mountVolume), as in
//              a VM.
// It runs fs_workloads' suite and the POSIX checks on each, as root and as uid 1000, sends the
// results as one JSON line on the port "fcvm.bench" and powers off. A failure is sent as
// {"error": why}.
//
// The same binary is the volume's fuse-pipe client (`volume-mount`): mountVolume starts
// /proc/self/exe for it, as fc-agent does.
#include <fcntl.h>
#include <grp.h>
#include <kj/debug.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "agent/control_port.h"
#include "agent/guest_system.h"
#include "agent/modules.h"
#include "agent/pid1.h"
#include "agent/podman_launcher.h"
#include "agent/volume_client.h"
#include "base/error.h"
#include "base/unique_fd.h"
#include "fuse-pipe/fs_workloads.h"

namespace fcvm::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uid_t kUser = 1000;  // the unprivileged caller of the POSIX checks
constexpr auto kDeviceTimeout = std::chrono::seconds(30);

std::string errnoName(int err) { return err == 0 ? "success" : std::strerror(err); }

// ---- POSIX checks: the four classes issue 12 found fuse-pipe failing, on every target. ----

struct Check {
  std::string name;
  std::string target;
  uid_t uid;
  bool ok;
  std::string detail;  // what differed, if anything
};

// Kills `pid` and reaps it. A task stuck in an uninterruptible wait is not reaped however long
// one waits: it is then left behind rather than hanging the run too.
void killAndReap(pid_t pid) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  ::kill(pid, SIGKILL);
  struct pollfd p = {pidfd.get(), POLLIN, 0};
  if (pidfd && ::poll(&p, 1, 10'000) != 1) return;
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

// Runs `body` in a forked child and returns what it returned (or the text of what it threw);
// nothing if it took longer than `timeoutMs` (-1: no limit), when it is killed.
std::optional<std::string> inChild(const std::function<std::string()>& body, int timeoutMs) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw SysError(errno, "pipe2");
  UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
  pid_t pid = ::fork();
  if (pid < 0) throw SysError(errno, "fork");
  if (pid == 0) {
    std::string result;
    try {
      result = body();
    } catch (const std::exception& e) {
      result = e.what();
    }
    result.insert(0, "=");  // a child that dies before this says nothing at all
    (void)!::write(writeEnd.get(), result.data(), result.size());
    ::_exit(0);
  }
  writeEnd.reset();
  struct pollfd p = {readEnd.get(), POLLIN, 0};
  int n;
  do {
    n = ::poll(&p, 1, timeoutMs);
  } while (n < 0 && errno == EINTR);
  std::optional<std::string> result;
  if (n == 1) {
    // The answer is one write before the child exits: what is there now is all of it, and a
    // child wedged on its way out (a hung file system) cannot hold this up.
    result.emplace();
    (void)::fcntl(readEnd.get(), F_SETFL, O_NONBLOCK);
    char buffer[512];
    ssize_t got;
    while ((got = ::read(readEnd.get(), buffer, sizeof buffer)) > 0) result->append(buffer, got);
  }
  killAndReap(pid);
  if (result) {
    *result = result->starts_with("=") ? result->substr(1) : "the child ended without an answer";
  }
  return result;
}

// Runs `body` in a child with uid and gid `uid` (no supplementary groups); its result is the
// empty string (passed) or what went wrong.
std::string runAs(uid_t uid, const std::function<std::string()>& body) {
  return *inChild(
      [&] {
        if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
            ::setresuid(uid, uid, uid) != 0) {
          return "cannot switch to uid " + std::to_string(uid) + ": " + errnoName(errno);
        }
        return body();
      },
      -1);
}

// "" when `ret` is -1 with errno `expected` (or succeeded, for expected 0); else what happened.
std::string expectErrno(const std::string& what, long ret, int expected) {
  int err = ret == -1 ? errno : 0;
  if (err == expected) return "";
  return fmt::format("{}: {} (expected {}); ", what, errnoName(err), errnoName(expected));
}

std::string devicesAsRoot(const fs::path& dir) {
  auto node = dir / "char-device";
  std::string failed =
      expectErrno("mknod c 1 3", ::mknod(node.c_str(), S_IFCHR | 0600, makedev(1, 3)), 0);
  struct stat st {};
  if (failed.empty() &&
      (::stat(node.c_str(), &st) != 0 || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))) {
    failed += "stat shows no char device 1:3; ";
  }
  auto fifo = dir / "fifo";
  failed += expectErrno("mkfifo", ::mkfifo(fifo.c_str(), 0600), 0);
  ::unlink(node.c_str());
  ::unlink(fifo.c_str());
  return failed;
}

std::string devicesAsUser(const fs::path& dir) {
  auto node = dir / "char-device-user";
  return expectErrno("mknod c 1 3", ::mknod(node.c_str(), S_IFCHR | 0600, makedev(1, 3)), EPERM);
}

std::string longNames(const fs::path& dir) {
  std::string failed;
  for (size_t length : {256, 300, 1024}) {
    auto path = dir / std::string(length, 'n');
    auto l = std::to_string(length);
    failed += expectErrno("mkdir " + l, ::mkdir(path.c_str(), 0755), ENAMETOOLONG);
    failed +=
        expectErrno("create " + l, ::open(path.c_str(), O_CREAT | O_WRONLY, 0644), ENAMETOOLONG);
    failed += expectErrno("symlink " + l, ::symlink("x", path.c_str()), ENAMETOOLONG);
    failed += expectErrno("unlink " + l, ::unlink(path.c_str()), ENAMETOOLONG);
  }
  return failed;
}

// A directory the caller may no longer search hides what is below it, also once the kernel
// has cached those entries.
std::string searchPermission(const fs::path& dir) {
  auto closed = dir / "closed";
  auto file = closed / "file";
  fs::create_directories(closed);
  { UniqueFd fd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666)); }
  ::chmod(file.c_str(), 0666);
  ::chmod(closed.c_str(), 0755);
  std::string failed = runAs(kUser, [&] {  // caches the entries
    return expectErrno("stat while searchable", ::access(file.c_str(), W_OK), 0);
  });
  ::chmod(closed.c_str(), 0700);
  failed += runAs(kUser, [&] {
    std::string f;
    f += expectErrno("open", ::open(file.c_str(), O_RDONLY), EACCES);
    f += expectErrno("chmod", ::chmod(file.c_str(), 0644), EACCES);
    f += expectErrno("link", ::link(file.c_str(), (closed.parent_path() / "l").c_str()), EACCES);
    f += expectErrno("truncate", ::truncate(file.c_str(), 0), EACCES);
    return f;
  });
  fs::remove_all(closed);
  return failed;
}

// A write by a non-owner clears the set-id bits and succeeds.
std::string setIdOnWrite(const fs::path& dir) {
  auto file = dir / "setid";
  { UniqueFd fd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0666)); }
  if (::chmod(file.c_str(), 06777) != 0) return "chmod 06777: " + errnoName(errno);
  std::string failed = runAs(kUser, [&] {
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return "open for writing: " + errnoName(errno);
    return expectErrno("write", ::write(fd.get(), "x", 1) == 1 ? 0 : -1, 0);
  });
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    failed += "stat: " + errnoName(errno);
  } else if ((st.st_mode & (S_ISUID | S_ISGID)) != 0) {
    failed += fmt::format("mode after the write {:o}, set-id bits kept", st.st_mode & 07777);
  }
  ::unlink(file.c_str());
  return failed;
}

std::vector<Check> posixChecks(const std::string& target, const fs::path& root) {
  auto dir = root / "posix";
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0777);
  std::vector<Check> checks;
  auto add = [&](const std::string& name, uid_t uid, const std::string& failed) {
    checks.push_back({name, target, uid, failed.empty(), failed});
  };
  add("device nodes", 0, devicesAsRoot(dir));
  add("device nodes", kUser, runAs(kUser, [&] { return devicesAsUser(dir); }));
  add("long names", 0, longNames(dir));
  add("long names", kUser, runAs(kUser, [&] { return longNames(dir); }));
  add("search permission", kUser, searchPermission(dir));
  add("set-id bits on write", kUser, setIdOnWrite(dir));
  fs::remove_all(dir);
  return checks;
}

// ---- The run. ----

// Linux's 9p client can hang under the parallel reads (seen here: 256 readers on virtio-9p, all
// waiting for replies QEMU never sends). So each sample runs in a child that is killed if it
// takes longer than any sample should; a target that hung gives no further samples, and the
// results say where it hung.
class SampleRunner {
 public:
  static constexpr int kSampleTimeoutMs = 180'000;

  double take(const std::string& workload, const std::string& target,
              const std::function<double()>& sample) {
    if (hung_.count(target)) return std::nan("");
    (void)std::fprintf(stderr, "volume bench: %s on %s\n", workload.c_str(), target.c_str());
    auto result = inChild(
        [&] {
          try {
            return fmt::format("ok {}", sample());  // exact: per-operation figures are small
          } catch (const std::exception& e) {
            return std::string("error ") + e.what();
          }
        },
        kSampleTimeoutMs);
    if (!result) {
      hung_[target] = workload;
      (void)std::fprintf(stderr, "volume bench: %s on %s hung; killed after %d s\n",
                         workload.c_str(), target.c_str(), kSampleTimeoutMs / 1000);
      return std::nan("");
    }
    if (result->starts_with("ok ")) return std::stod(result->substr(3));
    auto why = result->starts_with("error ") ? result->substr(6) : *result;
    throw Error(fmt::format("{} on {}: {}", workload, target, why));
  }

  // Target -> the workload during which it hung.
  const std::map<std::string, std::string>& hung() const { return hung_; }

 private:
  std::map<std::string, std::string> hung_;
};

// The host's choices, on the kernel command line: fcvm.bench.big_mib=N [fcvm.bench.quick=1].
fsbench::SuiteOptions suiteOptions() {
  std::ifstream in("/proc/cmdline");
  fsbench::SuiteOptions options;
  for (std::string word; in >> word;) {
    if (word == "fcvm.bench.quick=1") options.quick = true;
    if (word.starts_with("fcvm.bench.big_mib=")) {
      options.bigSize = std::stoul(word.substr(word.find('=') + 1)) << 20;
    }
  }
  options.operations = options.quick ? 0.05 : 0.2;  // TCG: a round trip costs tens of us
  return options;
}

json measure() {
  agent::mountInitramfsBasics();
  if (int failed = agent::loadModules("/fcvm/modules.order", "/fcvm"); failed != 0) {
    throw Error(fmt::format("{} kernel module(s) did not load (see the console)", failed));
  }
  agent::waitForDevice("/dev/vda", kDeviceTimeout);
  fs::create_directories("/mnt/disk");
  checkSys(::mount("/dev/vda", "/mnt/disk", "ext4", 0, nullptr), "mount /dev/vda (ext4)");
  fs::create_directories("/mnt/9p");
  checkSys(::mount("fcvm9p", "/mnt/9p", "9p", 0, "trans=virtio,version=9p2000.L,msize=524288"),
           "mount the 9p share");
  agent::VolumeSpec volume{"v0", "/data", false, 0};
  agent::LinuxGuestSystem().mountVolume(volume);
  const fs::path fusePipe = std::string(agent::kVolumeMountRoot) + "/v0";

  auto options = suiteOptions();
  options.changeBig = [](const fs::path& dir) {
    if (::utimensat(AT_FDCWD, (dir / "big").c_str(), nullptr, 0) != 0) {
      throw SysError(errno, "utimensat " + (dir / "big").string());
    }
  };
  SampleRunner runner;
  options.takeSample = [&](const std::string& workload, const std::string& target,
                           const std::function<double()>& sample) {
    return runner.take(workload, target, sample);
  };
  fsbench::makeData("/mnt/disk/data", options.bigSize);  // the host made the shares' data
  std::vector<fs::path> targets = {"/mnt/disk/data", "/mnt/9p", fusePipe};
  std::vector<std::string> names = {"disk", "9p", "fuse-pipe"};
  auto rows = fsbench::runSuite(targets, names, options);

  json result;
  struct utsname uts {};
  ::uname(&uts);
  result["kernel"] = uts.release;
  result["big_mib"] = options.bigSize >> 20;
  result["targets"] = names;
  for (const auto& r : rows) {
    result["rows"].push_back({{"workload", r.workload},
                              {"per_operation", r.kind == fsbench::RowKind::kPerOperation},
                              {"unit", r.unit},
                              {"scale", r.scale},
                              {"seconds", r.figures}});  // NaN is JSON's null
  }
  result["hung"] = runner.hung();
  result["posix"] = json::array();
  for (size_t t = 0; t < targets.size(); ++t) {
    if (runner.hung().count(names[t])) continue;  // its file system may be wedged
    for (const auto& c : posixChecks(names[t], targets[t])) {
      result["posix"].push_back({{"check", c.name},
                                 {"target", c.target},
                                 {"uid", c.uid},
                                 {"ok", c.ok},
                                 {"detail", c.detail}});
    }
  }
  return result;
}

void send(const json& message) {
  auto port = agent::openControlPort("fcvm.bench", kDeviceTimeout);
  auto line = message.dump() + "\n";
  kj::FdOutputStream(port.get()).write(line.data(), line.size());
}

int run() {
  json result;
  try {
    result = measure();
  } catch (const std::exception& e) {
    result = {{"error", e.what()}};
  } catch (const kj::Exception& e) {
    result = {{"error", e.getDescription().cStr()}};
  }
  try {
    send(result);
  } catch (const kj::Exception& e) {
    (void)std::fprintf(stderr, "volume bench: cannot send the results: %s\n",
                       e.getDescription().cStr());
  }
  agent::powerOff();
  return 1;  // PID 1 exiting panics the kernel, which also ends the VM
}

}  // namespace
}  // namespace fcvm::testing

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == fcvm::agent::kVolumeMountCommand) {
    return fcvm::agent::runVolumeClient(argc - 1, argv + 1);
  }
  return fcvm::testing::run();
}
