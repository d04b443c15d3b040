#include "cli/supervisor_session.h"

namespace fcvm::cli {
namespace {

// Files the CLI opened with the user's rights (an image archive, volume directories) go to the
// supervisor as fds in one request.
constexpr unsigned kFdsPerMessage = 32;

}  // namespace

SupervisorSession::SupervisorSession(const std::filesystem::path& socket)
    : io_(kj::setupAsyncIo()),
      rpc_(io_, socket, kFdsPerMessage),
      api_(rpc_.bootstrap<rpc::Supervisor>()) {}

std::string describe(const kj::Exception& e) {
  std::string text = e.getDescription().cStr();
  constexpr std::string_view kRemote = "remote exception: ";
  if (text.starts_with(kRemote)) text.erase(0, kRemote.size());
  return text;
}

}  // namespace fcvm::cli
