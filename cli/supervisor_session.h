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

  // A new connection (to a supervisor that replaced the one before) on the same event loop; what
  // was obtained through the old one is lost with it.
  void reconnect(const std::filesystem::path& socket);

  rpc::Supervisor::Client& api() { return api_; }
  kj::WaitScope& waitScope() { return io_.waitScope; }
  kj::AsyncIoContext& io() { return io_; }

 private:
  kj::AsyncIoContext io_;
  kj::Own<ipc::RpcClient> rpc_;
  rpc::Supervisor::Client api_;
};

// The message of a failed call as the user should read it (without kj's "remote exception:").
std::string describe(const kj::Exception& e);

// Whether the call failed because the connection to the supervisor went away (it stopped or
// restarted), rather than with the supervisor's own answer.
bool isLostConnection(const kj::Exception& e);

// What describe() says then.
inline constexpr char kLostConnection[] =
    "lost the connection to fcvm-supervisor (it stopped or restarted)";

}  // namespace fcvm::cli
