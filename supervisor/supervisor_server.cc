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
// Connections one non-root user may hold at once: a shell full of `logs -f`, `exec` and
// foreground runs stays far below; a client opening thousands is refused at the door.
constexpr unsigned kMaxConnectionsPerUid = 128;
// Unanswered calls one connection may have, in words: a client that floods calls is no longer
// read until answers go out, and other clients are served meanwhile.
constexpr size_t kMaxInFlightWordsPerConnection = 1 << 19;  // 4 MiB

}  // namespace

SupervisorServer::SupervisorServer(SupervisorContext& context, kj::Timer& timer)
    : rpc_(
          "supervisor socket",
          [&context](kj::AsyncIoStream& peer) -> capnp::Capability::Client {
            Caller caller = peerCredentials(peer);
            spdlog::debug("connection from uid {} pid {}", caller.uid, caller.pid);
            return kj::heap<SupervisorService>(context, caller);
          },
          capnp::ReaderOptions{kMaxClientMessageWords, kMaxClientNesting}, kMaxClientFds,
          ipc::ConnectionLimits{kMaxConnectionsPerUid, kMaxInFlightWordsPerConnection, &timer}) {}

kj::Promise<void> SupervisorServer::listen(kj::ConnectionReceiver& listener) {
  return rpc_.listen(listener);
}

}  // namespace fcvm::supervisor
