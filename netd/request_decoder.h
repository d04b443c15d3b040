// A createNetwork request as netd takes it off the wire: every field copied out of the message and
// checked (the id, each port, each resolver) before netd touches the host. netd trusts no caller's
// checks, not even the supervisor's.
#pragma once

#include "ipc/netd.capnp.h"
#include "netd/network_plan.h"

namespace fcvm::netd {

// Throws fcvm::Error for a field that does not check out, kj::Exception for a malformed message.
NetworkRequest decodeNetworkRequest(rpc::NetworkRequest::Reader in);

}  // namespace fcvm::netd
