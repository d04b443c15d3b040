// QEMU (microvm machine) as fcvm's VMM: the command line for a VM's configuration, and the QEMU
// process itself, killed and reaped when its owner lets go.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/spawn.h"
#include "ipc/vm_spec.h"
#include "worker/vmm.h"

namespace fcvm::worker {

// A virtio-serial port the guest finds by `name` under /sys/class/virtio-ports; QEMU connects it
// to the Unix socket at `socket`, where the host already listens.
struct SerialChannel {
  std::string name;
  std::filesystem::path socket;  // QEMU connects to this Unix socket, where the host listens; or
  int fd = -1;                   // QEMU's number of a connected socket it inherits (inheritedFds);
  bool discard = false;          // or nothing: what the guest writes there is dropped
};

// A further virtio-blk disk; the guest sees them as /dev/vdb, /dev/vdc, ... in this order.
struct ExtraDisk {
  std::filesystem::path path;
  bool readOnly = true;
};

// A host directory shared through QEMU's own virtio-9p server, which opens the host's files
// itself: only the baseline of `make bench-volumes`. fcvm's volumes are fuse-pipe (a jailed
// QEMU sees no host directory).
struct NinePShare {
  std::filesystem::path dir;
  std::string tag;  // the guest mounts it by this name: mount -t 9p TAG DIR
};

// The VM's network card (virtio-net) and what is behind it.
struct NetworkDevice {
  std::string mode = "none";  // bridged: a TAP from netd; rootless: QEMU's user-mode stack
  int tapFd = -1;             // bridged: QEMU's fd number of the TAP (see inheritedFds)
  std::vector<ipc::PortMapping> forwards;  // rootless: host ports forwarded to the guest
  std::string mac;                         // the card's address; a clone keeps its snapshot's
};

// Where a VM's QEMU runs (worker/qemu_jail.h): as `uid`/`gid`, without capabilities, in
// namespaces of its own, with a root built on `dir` (an empty directory) that holds none of the
// host's files but its programs and libraries; the VM's own files come in as fds.
struct QemuJail {
  uid_t uid = 0;
  gid_t gid = 0;
  std::filesystem::path dir;
  int lock = -1;  // the uid's lock for QEMU to hold (JailIdentity::lockForQemu), or none
};

// The translated-code cache a TCG guest gets. Most of QEMU's own memory under TCG is this cache
// (the code podman's start-up ran, kept after it); a smaller one is flushed and refilled when
// full, at the price of translating again. Measured (bench-density, 8 idle clones; bench-run):
// QEMU's default 184 MiB PSS per VM; 64 MiB 155 MiB, run ~10% slower; 32 MiB 118 MiB, ~30%
// slower; 16 MiB 99 MiB, ~50% slower.
inline constexpr unsigned kTcgCacheMib = 64;

struct QemuConfig {
  std::string qemu = "qemu-system-x86_64";
  // QEMU's -name: the VM's runtime directory, so ps, audits and tests tell which VM a QEMU runs
  // (a jailed QEMU names no other file of the VM's).
  std::string name;
  std::string accel = "tcg";  // "kvm" or "tcg", from chooseAccelerator()
  // Under TCG, the size of QEMU's cache of translated guest code (-accel tcg,tb-size=); 0 keeps
  // QEMU's default (1 GiB of address space, touched as the guest runs new code).
  unsigned tcgCacheMib = kTcgCacheMib;
  unsigned cpus = 1;  // under TCG more vCPUs are no faster and risk soft lockups
  unsigned memoryMib = 256;
  std::filesystem::path kernel;
  std::filesystem::path initramfs;
  std::filesystem::path rootDisk;
  bool rootDiskSnapshot = false;  // guest writes go to a throwaway overlay, never to rootDisk
  // Guest RAM in this file, anonymous if empty. Mapped shared (a VM that can be snapshotted: its
  // RAM is the file), or private (a clone: the snapshot's image, copy-on-write per clone).
  std::filesystem::path memoryFile;
  bool memoryShared = true;
  // QEMU's monitor (QMP) connects to this Unix socket, where the host already listens; or it
  // inherits a connected one as fd `qmpFd` (inheritedFds).
  std::filesystem::path qmpSocket;
  int qmpFd = -1;
  // Waits for its device state (QMP migrate-incoming) instead of booting: a clone.
  bool incoming = false;
  // The kernel command line as another VM had it (a clone keeps its snapshot's); empty: build it.
  std::string kernelCommandLine;
  std::vector<ExtraDisk> extraDisks;
  std::vector<NinePShare> ninePShares;
  std::vector<SerialChannel> channels;
  // The guest's serial console (ttyS0): QEMU's number of a connected socket it inherits
  // (inheritedFds), whose other end records it; else the file `consoleLog`, which also names
  // QEMU's own diagnostics (consoleLog + ".qemu").
  int consoleFd = -1;
  std::filesystem::path consoleLog;
  std::string extraKernelArgs;
  std::map<int, int> inheritedFds;  // QEMU's fd number -> ours, for fds named on its command line
  // QEMU's fd number -> the fd set (-add-fd) it goes in: a disk at /dev/fdset/N is that fd.
  std::map<int, int> fdSets;
  std::optional<QemuJail> jail;  // none: QEMU runs as we do (the guest tests' bare VMs)
  NetworkDevice network;
};

// The kernel command line for a guest under `accel` (TCG needs the host's TSC rate spelled out).
std::string kernelCommandLine(const QemuConfig& config);
std::vector<std::string> qemuCommandLine(const QemuConfig& config);

// The host TSC rate in kHz, as the guest kernel should assume it under TCG.
unsigned hostTscKhz();

// A running QEMU. Destroying it kills QEMU (SIGKILL) and reaps it; so does the death of the
// thread that started it.
class QemuProcess final : public VmmProcess {
 public:
  explicit QemuProcess(const QemuConfig& config);

  std::string name() const override { return "qemu"; }
  pid_t pid() const override { return child_.pid(); }
  int pidfd() const override { return child_.pidfd(); }
  std::optional<int> waitExit(std::chrono::milliseconds timeout) override;
  void kill() override { child_.kill(); }

 private:
  ChildProcess child_;
};

}  // namespace fcvm::worker
