#include "ipc/rpc_server.h"

#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>

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

}  // namespace

RpcServer::RpcServer(std::string name, BootstrapFactory factory, capnp::ReaderOptions limits,
                     unsigned maxFdsPerMessage)
    : name_(std::move(name)),
      factory_(std::move(factory)),
      limits_(limits),
      maxFds_(maxFdsPerMessage),
      connections_(*this) {}

RpcServer::~RpcServer() = default;

kj::Promise<void> RpcServer::listen(kj::ConnectionReceiver& listener) {
  return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream> stream) {
    try {
      auto bootstrap = factory_(*stream);
      auto connection = kj::heap<Connection>(kj::mv(stream), kj::mv(bootstrap), limits_, maxFds_);
      auto done = connection->network.onDisconnect();
      connections_.add(done.attach(kj::mv(connection)));
    } catch (const kj::Exception& e) {
      spdlog::warn("{}: refused a connection: {}", name_, e.getDescription().cStr());
    } catch (const std::exception& e) {
      spdlog::warn("{}: refused a connection: {}", name_, e.what());
    }
    return listen(listener);
  });
}

void RpcServer::taskFailed(kj::Exception&& e) {
  spdlog::warn("{}: a connection ended with an error: {}", name_, e.getDescription().cStr());
}

}  // namespace fcvm::ipc
