// One CLI's connection to the supervisor: an event loop, the socket and the Supervisor capability.
#pragma once

#include <kj/async-io.h>

#include <filesystem>
#include <string>

#include "ipc/rpc_client.h"
#include "ipc/supervisor.capnp.h"

namespace fcvm::cli {

class SupervisorSession {
 public:
  explicit SupervisorSession(const std::filesystem::path& socket);

  rpc::Supervisor::Client& api() { return api_; }
  kj::WaitScope& waitScope() { return io_.waitScope; }
  kj::AsyncIoContext& io() { return io_; }

 private:
  kj::AsyncIoContext io_;
  ipc::RpcClient rpc_;
  rpc::Supervisor::Client api_;
};

// The message of a failed call as the user should read it (without kj's "remote exception:").
std::string describe(const kj::Exception& e);

}  // namespace fcvm::cli
