// The VMM a worker runs, whichever it is: QEMU (microvm) first, Firecracker later. A worker needs
// only this of it once the VM is started: to know when it exits, and to kill it. Configuration
// and start-up are the backend's own (QemuConfig / QemuProcess); the guest's channels are Unix
// sockets the host listens on, whatever transport the backend maps them to (virtio-serial here,
// hybrid vsock for Firecracker).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>

namespace fcvm::worker {

class VmmProcess {
 public:
  virtual ~VmmProcess() = default;

  virtual std::string name() const = 0;  // "qemu", for messages
  virtual pid_t pid() const = 0;
  // Readable once the VMM has exited (for an event loop); waitExit() then reaps it at once.
  virtual int pidfd() const = 0;
  // Waits up to `timeout` for the VMM to exit; returns its wait status, or nullopt on timeout.
  virtual std::optional<int> waitExit(std::chrono::milliseconds timeout) = 0;
  virtual void kill() = 0;
};

}  // namespace fcvm::worker
