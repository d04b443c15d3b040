// The worker's syscall allowlist (libseccomp). Once QEMU is started and its sockets are bound, a
// worker only moves bytes between sockets and files it holds, writes its logs, signals and reaps
// QEMU: it can no longer execute programs, mount, trace, open network sockets, change credentials
// or load modules. A call outside the list fails with EPERM, so it surfaces as an ordinary error in
// the worker's log instead of a silent kill.
#pragma once

namespace fcvm::worker {

// Applies the allowlist to the calling process (all threads) for good; sets no_new_privs.
// Throws fcvm::Error if the kernel refuses the filter.
void confineWorker();

}  // namespace fcvm::worker
