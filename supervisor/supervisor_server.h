// Accepts connections on the supervisor socket and gives each its own SupervisorService, bound to
// the caller's SO_PEERCRED credentials.
#pragma once

#include <kj/async-io.h>

#include "ipc/rpc_server.h"
#include "supervisor/supervisor_service.h"

namespace fcvm::supervisor {

class SupervisorServer {
 public:
  // `timer` paces retries of a failed accept (ipc::ConnectionLimits).
  SupervisorServer(SupervisorContext& context, kj::Timer& timer);

  // Serves connections from `listener` until the returned promise is dropped.
  kj::Promise<void> listen(kj::ConnectionReceiver& listener);

 private:
  ipc::RpcServer rpc_;
};

}  // namespace fcvm::supervisor
