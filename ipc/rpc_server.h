// Serves Cap'n Proto two-party RPC on every connection a Unix-socket listener accepts. Each
// connection gets the bootstrap capability the factory makes for it (the factory may look at the
// peer, e.g. its SO_PEERCRED, or refuse it by throwing) and lives exactly as long as its stream.
#pragma once

#include <capnp/capability.h>
#include <capnp/message.h>
#include <kj/async-io.h>

#include <functional>
#include <string>

namespace fcvm::ipc {

class RpcServer final : private kj::TaskSet::ErrorHandler {
 public:
  using BootstrapFactory = std::function<capnp::Capability::Client(kj::AsyncIoStream& peer)>;

  // `name` is for log lines; `limits` bound every message a peer sends, `maxFdsPerMessage` the
  // file descriptors it may pass (SCM_RIGHTS) in one message: 0 refuses them all.
  RpcServer(std::string name, BootstrapFactory factory, capnp::ReaderOptions limits,
            unsigned maxFdsPerMessage = 0);
  ~RpcServer();

  // Serves connections from `listener` until the returned promise is dropped.
  kj::Promise<void> listen(kj::ConnectionReceiver& listener);

 private:
  void taskFailed(kj::Exception&& e) override;

  std::string name_;
  BootstrapFactory factory_;
  capnp::ReaderOptions limits_;
  unsigned maxFds_;
  kj::TaskSet connections_;
};

}  // namespace fcvm::ipc
