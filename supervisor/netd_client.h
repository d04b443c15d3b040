// The supervisor's side of fcvm-netd: started on demand (only a root supervisor has one), found
// again by its socket (whose peer credentials name its pid) so a restarted supervisor re-adopts
// it, even one a killed supervisor started and never got to record, and started again if it dies
// (its own records make that safe). Every network a VM gets goes through here.
#pragma once

#include <kj/async-io.h>
#include <kj/async-unix.h>

#include <string>
#include <vector>

#include "base/paths.h"
#include "base/unique_fd.h"
#include "ipc/netd.capnp.h"
#include "ipc/records.h"
#include "ipc/rpc_client.h"
#include "ipc/vm_spec.h"

namespace fcvm::supervisor {

struct VmNetwork {
  std::string netns;
  std::string hostIp;
  std::string nsIp;
  std::string guestIp;
  UniqueFd tap;  // for the VM's QEMU
};

class NetdClient : private kj::TaskSet::ErrorHandler {
 public:
  NetdClient(kj::AsyncIoContext& io, Paths paths);
  ~NetdClient();

  // Re-adopts a running netd of a previous supervisor, if any; then keeps only the networks of
  // `liveVms` (every other one belongs to a VM that is gone).
  void adopt(const std::vector<std::string>& liveVms);

  kj::Promise<VmNetwork> createNetwork(const std::string& vmId,
                                       const std::vector<ipc::PortMapping>& ports,
                                       const std::vector<std::string>& dns);
  // Removes the VM's network (nothing if it has none); resolves once netd has, or failed to
  // (which is logged: it never rejects).
  kj::Promise<void> destroyNetwork(const std::string& vmId);

  ipc::ProcessId process() const { return process_; }

 private:
  kj::Promise<rpc::Netd::Client> ensure();
  // Adopts the netd that answers on the runtime dir's socket, if one does; true then.
  bool adoptServing();
  // Drops everything held of the netd before (observer first, then its fd).
  void forget();
  void watch();
  void taskFailed(kj::Exception&& e) override;

  kj::AsyncIoContext& io_;
  const Paths paths_;
  ipc::ProcessId process_;
  UniqueFd pidfd_;
  kj::Own<kj::UnixEventPort::FdObserver> exitObserver_;
  kj::Promise<void> watching_ = nullptr;  // after the observer: cancelled before it goes
  kj::Own<ipc::RpcClient> connection_;
  kj::Maybe<rpc::Netd::Client> netd_;
  kj::Maybe<kj::ForkedPromise<void>> starting_;
  uint64_t generation_ = 0;  // which netd the pending cleanup after an exit is for
  kj::TaskSet tasks_{*this};
};

}  // namespace fcvm::supervisor
