#include "supervisor/supervisor_server.h"

#include <capnp/rpc-twoparty.h>
#include <spdlog/spdlog.h>

namespace fcvm::supervisor {
namespace {

// Largest message a client may send; the API carries names and small specs, never bulk data.
constexpr uint64_t kMaxClientMessageWords = 1 << 20;  // 8 MiB
constexpr int kMaxClientNesting = 64;

// One client connection: its RPC system lives exactly as long as the stream.
struct Connection {
  Connection(kj::Own<kj::AsyncIoStream> s, capnp::Capability::Client bootstrap)
      : stream(kj::mv(s)),
        network(*stream, capnp::rpc::twoparty::Side::SERVER,
                capnp::ReaderOptions{kMaxClientMessageWords, kMaxClientNesting}),
        rpc(capnp::makeRpcServer(network, kj::mv(bootstrap))) {}
  kj::Own<kj::AsyncIoStream> stream;
  capnp::TwoPartyVatNetwork network;
  capnp::RpcSystem<capnp::rpc::twoparty::VatId> rpc;
};

}  // namespace

SupervisorServer::SupervisorServer(SupervisorContext& context)
    : context_(context), connections_(*this) {}

kj::Promise<void> SupervisorServer::listen(kj::ConnectionReceiver& listener) {
  return listener.accept().then([this, &listener](kj::Own<kj::AsyncIoStream> stream) {
    try {
      Caller caller = peerCredentials(*stream);
      spdlog::debug("connection from uid {} pid {}", caller.uid, caller.pid);
      auto connection =
          kj::heap<Connection>(kj::mv(stream), kj::heap<SupervisorService>(context_, caller));
      auto done = connection->network.onDisconnect();
      connections_.add(done.attach(kj::mv(connection)));
    } catch (const kj::Exception& e) {
      spdlog::warn("refused a connection: {}", e.getDescription().cStr());
    }
    return listen(listener);
  });
}

void SupervisorServer::taskFailed(kj::Exception&& e) {
  spdlog::warn("connection ended with an error: {}", e.getDescription().cStr());
}

}  // namespace fcvm::supervisor
