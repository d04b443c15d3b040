// The jail a VM's QEMU runs in, after Firecracker's jailer: a uid of its own from a range kept for
// VMMs (never the owner's: an owner could trace a QEMU of theirs), no capabilities, no_new_privs,
// new mount, PID, IPC and UTS namespaces (and network, unless QEMU's own user-mode stack is the
// VM's network), and a root that holds the host's programs and libraries and a few devices but
// nothing of the host's data, other VMs' files included. QEMU gets the VM's own files as fds
// instead: the kernel and initramfs as /dev/fd/N, disks as fd sets, sockets connected, guest
// memory as a file it owns. QEMU's own seccomp filter (-sandbox) comes on top.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <vector>

#include "base/jail_uids.h"
#include "base/spawn.h"
#include "base/unique_fd.h"
#include "worker/qemu_vmm.h"

namespace fcvm::worker {

// One of the jail's uids (base/jail_uids.h), for one VM: held (a shared lock on a file in
// `lockDir`) by this and by the lock QEMU is given (lockForQemu), so that it stays taken until
// both the worker and its QEMU are gone and no two running QEMUs ever share one.
class JailIdentity {
 public:
  static JailIdentity acquire(const std::filesystem::path& lockDir, const JailUids& range);
  uid_t uid() const { return uid_; }
  gid_t gid() const { return static_cast<gid_t>(uid_); }
  // A lock of QEMU's own on the uid (QemuJail::lock): the uid stays taken until the worker and
  // its QEMU are both gone, whichever goes last.
  UniqueFd lockForQemu() const;

 private:
  UniqueFd lock_;
  std::filesystem::path path_;
  uid_t uid_ = 0;
};

// Rewrites `config` (which has a jail) so that QEMU opens nothing of the host by path: each file
// and socket it names is opened (or connected) here and handed over as an inherited fd. The VM's
// new memory file is created owned by the jail's uid. Returns our copies, to close once QEMU is
// started.
std::vector<UniqueFd> openForJail(QemuConfig& config);

// Puts `spec` (QEMU's, from `config` as openForJail left it) into the jail: credentials,
// namespaces, its root, no_new_privs.
void confineInJail(SpawnSpec& spec, const QemuConfig& config);

}  // namespace fcvm::worker
