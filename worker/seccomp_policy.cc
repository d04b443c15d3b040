#include "worker/seccomp_policy.h"

#include <errno.h>
#include <seccomp.h>
#include <sys/socket.h>

#include <memory>

#include "base/error.h"

namespace fcvm::worker {
namespace {

// What a kj event loop, Cap'n Proto RPC, spdlog and the worker's own file handling call after
// setup. Kept as small as the worker runs with: measured by running the VM tests with the filter.
constexpr const char* kAllowed[] = {
    // memory and threads of the C++ runtime
    "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "futex", "set_robust_list", "rseq",
    "sched_yield", "getrandom",
    // time
    "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
    // signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
    // the event loop
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "eventfd2", "signalfd4", "poll",
    "ppoll",
    // bytes on fds it holds: sockets, the container log, the worker log
    "read", "readv", "pread64", "write", "writev", "pwrite64", "lseek", "close", "fcntl", "ioctl",
    "fstat", "newfstatat", "statx", "fsync", "fdatasync", "dup", "dup3", "accept4", "recvmsg",
    "sendmsg", "recvfrom", "sendto", "shutdown", "getsockopt", "setsockopt", "getsockname",
    "getpeername",
    // its own files: the final state (write, rename) and cleanup of its runtime dir
    "openat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "getdents64",
    // snapshots: guest memory copied sparsely (lseek SEEK_DATA/SEEK_HOLE, pread/pwrite above),
    // the disk reflinked (ioctl FICLONE, above) or copied
    "copy_file_range", "ftruncate",
    // the HTTP health check: a TCP connection to a published port (socket() is limited to
    // AF_INET streams below)
    "connect",
    // QEMU: signal, watch and reap it
    "kill", "tgkill", "pidfd_send_signal", "wait4", "waitid",
    // identity, exit
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "exit", "exit_group"};

struct FilterDeleter {
  void operator()(scmp_filter_ctx ctx) const { seccomp_release(ctx); }
};

}  // namespace

void confineWorker() {
  std::unique_ptr<void, FilterDeleter> filter(seccomp_init(SCMP_ACT_ERRNO(EPERM)));
  if (!filter) throw Error("seccomp: cannot create a filter");
  for (const char* name : kAllowed) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    int rc = seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, nr, 0);
    if (rc < 0) throw SysError(-rc, fmt::format("seccomp: allow {}", name));
  }
  // socket(AF_INET, SOCK_STREAM[|flags], 0) only: nothing else can be opened afresh.
  for (scmp_datum_t type :
       {scmp_datum_t{SOCK_STREAM}, scmp_datum_t{SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC},
        scmp_datum_t{SOCK_STREAM | SOCK_CLOEXEC}, scmp_datum_t{SOCK_STREAM | SOCK_NONBLOCK}}) {
    int rc =
        seccomp_rule_add(filter.get(), SCMP_ACT_ALLOW, SCMP_SYS(socket), 2,
                         SCMP_A0(SCMP_CMP_EQ, scmp_datum_t{AF_INET}), SCMP_A1(SCMP_CMP_EQ, type));
    if (rc < 0) throw SysError(-rc, "seccomp: allow socket");
  }
  int rc = seccomp_load(filter.get());
  if (rc < 0) throw SysError(-rc, "seccomp: load the worker's filter");
}

}  // namespace fcvm::worker
