// A --map volume on the host side: the directory the user opened, served by a fuse-pipe server
// process of its own over one end of a socket pair; the other end is the VM's virtio-serial port
// for that volume (QEMU's `-chardev socket,fd=N`), where the guest's fuse-pipe client speaks.
//
// The server is sandboxed (fuse-pipe/sandbox.h): PID 1 of new PID, mount, network, IPC and UTS
// namespaces, the directory its only file system, a seccomp allowlist. For a non-root owner's VM
// it runs as that user, so the VM reaches what the user could; for root's VMs it keeps root and
// switches to each guest caller's credentials per request.
//
// Clones. Each volume has two ports (agent.capnp, Volume). A clone's worker starts servers of its
// own on the directories its client opened and puts them on the ports the snapshot did not use;
// the snapshot's ports lead nowhere, so nothing the source's client had under way reaches the
// new servers. The clone's agent ends that client and mounts each volume anew over the old
// mount: the container's bind (rslave) sees the new mount, files it had open there fail with
// ENOTCONN. No server state is carried over.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

#include "base/spawn.h"
#include "base/unique_fd.h"
#include "ipc/vm_spec.h"

namespace fcvm::worker {

class VolumeServer {
 public:
  // Starts the server for volume number `index` of the VM, on `dirFd` (the directory as the client
  // opened it). Its log lines go to `logFd`. Returns once the server is confined and serving;
  // throws fcvm::Error with the reason otherwise (nothing is left running then).
  VolumeServer(size_t index, const ipc::VolumeMapping& volume, int dirFd, const Credentials& owner,
               int logFd);
  ~VolumeServer() = default;  // the ChildProcess kills and reaps the server
  VolumeServer(VolumeServer&&) = default;
  VolumeServer& operator=(VolumeServer&&) = default;

  // The VM's end of the channel, for QEMU's command line (once).
  UniqueFd takeVmEnd() { return std::move(vmEnd_); }
  // The guest names the volume's ports and mount point by this: "v0", "v1", ...
  // (agent::volumePortName).
  const std::string& tag() const { return tag_; }
  pid_t pid() const { return server_.pid(); }
  // Readable once the server has exited; reap() then collects it: its wait status.
  int pidfd() const { return server_.pidfd(); }
  std::optional<int> reap() { return server_.waitFor(std::chrono::milliseconds(0)); }

 private:
  std::string tag_;
  ChildProcess server_;
  UniqueFd vmEnd_;
};

}  // namespace fcvm::worker
