// Serves Cap'n Proto two-party RPC on every connection a Unix-socket listener accepts. Each
// connection gets the bootstrap capability the factory makes for it (the factory may look at the
// peer, e.g. its SO_PEERCRED, or refuse it by throwing) and lives exactly as long as its stream.
#pragma once

#include <capnp/capability.h>
#include <capnp/message.h>
#include <kj/async-io.h>
#include <kj/timer.h>
#include <sys/types.h>

#include <functional>
#include <map>
#include <string>

namespace fcvm::ipc {

// What a server facing many, possibly hostile, local clients bounds besides each message.
struct ConnectionLimits {
  // Connections one non-root uid (SO_PEERCRED) may hold at once; one more is closed as soon as
  // it is accepted. 0: no limit. Root, who can stop the server anyway, is not counted.
  unsigned perUid = 0;
  // Words of calls a connection may have unanswered before the server stops reading it
  // (RpcSystem::setFlowLimit): a client that floods calls waits, others go on. 0: no limit.
  size_t inFlightWords = 0;
  // With a timer, a failed accept (out of fds: EMFILE, ENFILE) is logged and retried after a
  // pause instead of ending listen(): running out of fds for a moment must not end the service.
  kj::Timer* timer = nullptr;
};

class RpcServer final : private kj::TaskSet::ErrorHandler {
 public:
  using BootstrapFactory = std::function<capnp::Capability::Client(kj::AsyncIoStream& peer)>;

  // `name` is for log lines; `limits` bound every message a peer sends, `maxFdsPerMessage` the
  // file descriptors it may pass (SCM_RIGHTS) in one message: 0 refuses them all.
  RpcServer(std::string name, BootstrapFactory factory, capnp::ReaderOptions limits,
            unsigned maxFdsPerMessage = 0, ConnectionLimits connectionLimits = {});
  ~RpcServer();

  // Serves connections from `listener` until the returned promise is dropped.
  kj::Promise<void> listen(kj::ConnectionReceiver& listener);

 private:
  // Takes one accepted connection into service; throws if it is refused.
  void serve(kj::Own<kj::AsyncIoStream> stream);
  void taskFailed(kj::Exception&& e) override;

  std::string name_;
  BootstrapFactory factory_;
  capnp::ReaderOptions limits_;
  unsigned maxFds_;
  ConnectionLimits connectionLimits_;
  std::map<uid_t, unsigned> connectionsOf_;  // open connections per non-root uid
  kj::TaskSet connections_;
};

}  // namespace fcvm::ipc
