#include "cli/supervisor_session.h"

#include "ipc/rpc_error.h"

namespace fcvm::cli {
namespace {

// Files the CLI opened with the user's rights (an image archive, volume directories) go to the
// supervisor as fds in one request.
constexpr unsigned kFdsPerMessage = 32;

}  // namespace

SupervisorSession::SupervisorSession(const std::filesystem::path& socket)
    : io_(kj::setupAsyncIo()),
      rpc_(kj::heap<ipc::RpcClient>(io_, socket, kFdsPerMessage)),
      api_(rpc_->bootstrap<rpc::Supervisor>()) {}

void SupervisorSession::reconnect(const std::filesystem::path& socket) {
  auto rpc = kj::heap<ipc::RpcClient>(io_, socket, kFdsPerMessage);
  api_ = rpc->bootstrap<rpc::Supervisor>();
  rpc_ = kj::mv(rpc);
}

bool isLostConnection(const kj::Exception& e) {
  // A connection that went away mid-call reaches here as kj's own words ("Peer disconnected.",
  // a writev's "Broken pipe"): what happened is that the supervisor went away.
  std::string text = ipc::messageOf(e);
  bool local = !e.getDescription().startsWith("remote exception: ");
  return e.getType() == kj::Exception::Type::DISCONNECTED ||
         (local && (text.find("Broken pipe") != std::string::npos ||
                    text.find("Connection reset by peer") != std::string::npos));
}

std::string describe(const kj::Exception& e) {
  if (isLostConnection(e)) {
    return std::string(kLostConnection) + "; `fcvm ls` shows what became of the VM";
  }
  return ipc::messageOf(e);
}

}  // namespace fcvm::cli
