// The Worker capability (ipc/worker.capnp) a worker gives each connection on its socket: the
// supervisor that started it, or a restarted one. Only the supervisor's uid can reach the socket.
#pragma once

#include "ipc/worker.capnp.h"
#include "worker/vm_runner.h"

namespace fcvm::worker {

class WorkerService final : public rpc::Worker::Server {
 public:
  // `restoreInfo`: what the VM's clones need to start (JSON), kept with each snapshot.
  WorkerService(VmRunner& runner, const std::string& restoreInfo)
      : runner_(runner), restoreInfo_(restoreInfo) {}

  kj::Promise<void> attach(AttachContext context) override;
  kj::Promise<void> wait(WaitContext context) override;
  kj::Promise<void> exec(ExecContext context) override;
  kj::Promise<void> logs(LogsContext context) override;
  kj::Promise<void> stop(StopContext context) override;
  kj::Promise<void> snapshot(SnapshotContext context) override;
  kj::Promise<void> snapshotBeforeContainer(SnapshotBeforeContainerContext context) override;
  kj::Promise<void> memory(MemoryContext context) override;

 private:
  VmRunner& runner_;
  const std::string& restoreInfo_;
};

}  // namespace fcvm::worker
