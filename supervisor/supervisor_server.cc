#include "supervisor/supervisor_server.h"

#include <spdlog/spdlog.h>

namespace fcvm::supervisor {
namespace {

// Largest message a client may send; the API carries names and small specs, never bulk data
// beyond exec's 64 KiB stdin chunks.
constexpr uint64_t kMaxClientMessageWords = 1 << 20;  // 8 MiB
constexpr int kMaxClientNesting = 64;
// Files a client opened with its own rights and passes along (an image archive, volume
// directories); more in one message is refused by the RPC layer.
constexpr unsigned kMaxClientFds = 32;

}  // namespace

SupervisorServer::SupervisorServer(SupervisorContext& context)
    : rpc_(
          "supervisor socket",
          [&context](kj::AsyncIoStream& peer) -> capnp::Capability::Client {
            Caller caller = peerCredentials(peer);
            spdlog::debug("connection from uid {} pid {}", caller.uid, caller.pid);
            return kj::heap<SupervisorService>(context, caller);
          },
          capnp::ReaderOptions{kMaxClientMessageWords, kMaxClientNesting}, kMaxClientFds) {}

kj::Promise<void> SupervisorServer::listen(kj::ConnectionReceiver& listener) {
  return rpc_.listen(listener);
}

}  // namespace fcvm::supervisor
