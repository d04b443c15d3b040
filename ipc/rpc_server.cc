#include "ipc/rpc_server.h"

#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

namespace fcvm::ipc {
namespace {

// One connection: its RPC system lives exactly as long as the stream. A Unix socket's accepted
// stream is a capability stream (as capnp's own listenCapStreamReceiver relies on), so fds can
// ride along, within the server's limit.
struct Connection {
  Connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap,
             capnp::ReaderOptions limits, unsigned maxFds)
      : stream(kj::mv(s)),
        network(kj::downcast<kj::AsyncCapabilityStream>(*stream), maxFds,
                capnp::rpc::twoparty::Side::SERVER, limits),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

// How long a failed accept (out of fds) waits before trying again.
constexpr auto kAcceptRetryDelay = 100 * kj::MILLISECONDS;

}  // namespace

RpcServer::RpcServer(std::string name, BootstrapFactory factory, capnp::ReaderOptions limits,
                     unsigned maxFdsPerMessage, ConnectionLimits connectionLimits)
    : name_(std::move(name)),
      factory_(std::move(factory)),
      limits_(limits),
      maxFds_(maxFdsPerMessage),
      connectionLimits_(connectionLimits),
      connections_(*this) {}

RpcServer::~RpcServer() = default;

kj::Promise<void> RpcServer::listen(kj::ConnectionReceiver& listener) {
  auto accepted = listener.accept().then([this](kj::Own<kj::AsyncIoStream> stream) {
    try {
      serve(kj::mv(stream));
    } catch (const kj::Exception& e) {
      spdlog::warn("{}: refused a connection: {}", name_, e.getDescription().cStr());
    } catch (const std::exception& e) {
      spdlog::warn("{}: refused a connection: {}", name_, e.what());
    }
  });
  if (connectionLimits_.timer != nullptr) {
    accepted = accepted.catch_([this](kj::Exception&& e) {
      spdlog::warn("{}: accept failed, retrying shortly: {}", name_, e.getDescription().cStr());
      return connectionLimits_.timer->afterDelay(kAcceptRetryDelay);
    });
  }
  return accepted.then([this, &listener] { return listen(listener); });
}

void RpcServer::serve(kj::Own<kj::AsyncIoStream> stream) {
  struct ucred peer {};
  uint length = sizeof peer;
  stream->getsockopt(SOL_SOCKET, SO_PEERCRED, &peer, &length);
  KJ_REQUIRE(length == sizeof peer, "SO_PEERCRED answered a short credential", length);
  bool counted = connectionLimits_.perUid != 0 && peer.uid != 0;
  if (counted && connectionsOf_[peer.uid] >= connectionLimits_.perUid) {
    KJ_FAIL_REQUIRE("uid has the most connections it may hold", peer.uid, peer.pid,
                    connectionLimits_.perUid);
  }
  auto bootstrap = factory_(*stream);
  auto connection = kj::heap<Connection>(kj::mv(stream), kj::mv(bootstrap), limits_, maxFds_);
  if (connectionLimits_.inFlightWords != 0) {
    connection->rpc.setFlowLimit(connectionLimits_.inFlightWords);
  }
  auto done = connection->network.onDisconnect();
  if (counted) {
    ++connectionsOf_[peer.uid];
    done = done.attach(kj::defer([this, uid = peer.uid] {
      if (--connectionsOf_[uid] == 0) connectionsOf_.erase(uid);
    }));
  }
  connections_.add(done.attach(kj::mv(connection)));
}

void RpcServer::taskFailed(kj::Exception&& e) {
  spdlog::warn("{}: a connection ended with an error: {}", name_, e.getDescription().cStr());
}

}  // namespace fcvm::ipc
