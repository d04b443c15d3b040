#include "worker/seccomp_policy.h"

#include <sys/socket.h>

#include "base/seccomp_filter.h"

namespace fcvm::worker {

void confineWorker() {
  SeccompFilter filter;
  // What a kj event loop, Cap'n Proto RPC, spdlog and the worker's own file handling call after
  // setup. Kept as small as the worker runs with: measured by running the VM tests with the filter.
  filter.allow({// memory and threads of the C++ runtime
                "brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "futex",
                "set_robust_list", "rseq", "sched_yield", "getrandom",
                // time
                "clock_gettime", "clock_nanosleep", "nanosleep", "gettimeofday",
                // signals
                "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "restart_syscall",
                // the event loop
                "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "eventfd2", "signalfd4",
                "poll", "ppoll",
                // bytes on fds it holds: sockets, the container log, the worker log
                "read", "readv", "pread64", "write", "writev", "pwrite64", "lseek", "close",
                "fcntl", "ioctl", "fstat", "newfstatat", "statx", "fsync", "fdatasync", "dup",
                "dup3", "accept4", "recvmsg", "sendmsg", "recvfrom", "sendto", "shutdown",
                "getsockopt", "setsockopt", "getsockname", "getpeername",
                // its own files: the final state (write, rename) and cleanup of its runtime dir
                "openat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir",
                "getdents64",
                // snapshots: guest memory copied sparsely (lseek SEEK_DATA/SEEK_HOLE, pread/pwrite
                // above), the disk reflinked (ioctl FICLONE, above) or copied
                "copy_file_range", "ftruncate",
                // the HTTP health check: a TCP connection to a published port (socket() is limited
                // to AF_INET streams below)
                "connect",
                // QEMU and the volume servers: signal, watch and reap them
                "kill", "tgkill", "pidfd_send_signal", "wait4", "waitid",
                // identity, exit
                "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "exit",
                "exit_group"});
  // socket(AF_INET, SOCK_STREAM[|flags], 0) only: nothing else can be opened afresh.
  for (scmp_datum_t type :
       {scmp_datum_t{SOCK_STREAM}, scmp_datum_t{SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC},
        scmp_datum_t{SOCK_STREAM | SOCK_CLOEXEC}, scmp_datum_t{SOCK_STREAM | SOCK_NONBLOCK}}) {
    filter.allowIf("socket",
                   {SCMP_A0(SCMP_CMP_EQ, scmp_datum_t{AF_INET}), SCMP_A1(SCMP_CMP_EQ, type)});
  }
  filter.load();
}

}  // namespace fcvm::worker
