#include "fuse-pipe/server.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fuse-pipe/error.h"

namespace fcvm::fusepipe {

Server::Server(UniqueFd listener, ServerOptions options)
    : listener_(std::move(listener)), options_(std::move(options)) {
  // Fail early, with the path in the error, if the root cannot be served.
  PassthroughFs probe(options_.rootPath, {});
}

Server::~Server() {
  for (auto& c : connections_) c->session->stop();
  for (auto& c : connections_) c->thread.join();
}

void Server::run(int stopFd) {
  while (true) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stopFd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      throwErrno("poll", "listening socket");
    }
    if (fds[1].revents) return;
    if (fds[0].revents & POLLIN) accept();
    reapFinished();
  }
}

namespace {

PassthroughOptions passthroughOptions(const ServerOptions& options) {
  return {.switchCredentials = ::geteuid() == 0, .readOnly = options.readOnly};
}

SessionOptions sessionOptions(const ServerOptions& options) {
  return {.readOnly = options.readOnly, .workers = options.workersPerSession};
}

}  // namespace

void serveStream(UniqueFd stream, const ServerOptions& options, int stopFd) {
  PassthroughFs fs(options.rootPath, passthroughOptions(options));
  Session session(std::move(stream), fs, sessionOptions(options));
  UniqueFd ended(::eventfd(0, EFD_CLOEXEC));
  if (!ended) throwErrno("eventfd", "");
  std::thread serving([&] {
    session.run();
    uint64_t one = 1;
    (void)!::write(ended.get(), &one, sizeof one);
  });
  while (true) {
    pollfd fds[2] = {{ended.get(), POLLIN, 0}, {stopFd, POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || fds[1].revents != 0) session.stop();
    break;
  }
  serving.join();
}

void Server::accept() {
  UniqueFd stream(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!stream) {
    spdlog::warn("fuse-pipe server: accept: {}", std::strerror(errno));
    return;
  }
  auto connection = std::make_unique<Connection>();
  try {
    connection->fs =
        std::make_unique<PassthroughFs>(options_.rootPath, passthroughOptions(options_));
  } catch (const std::exception& e) {
    spdlog::error("fuse-pipe server: refusing connection: {}", e.what());
    return;
  }
  connection->session =
      std::make_unique<Session>(std::move(stream), *connection->fs, sessionOptions(options_));
  Connection* c = connection.get();
  connection->thread = std::thread([c] {
    c->session->run();
    c->finished = true;
  });
  connections_.push_back(std::move(connection));
  spdlog::info("fuse-pipe server: client connected ({} active)", connections_.size());
}

void Server::reapFinished() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->finished) {
      (*it)->thread.join();
      it = connections_.erase(it);
      spdlog::info("fuse-pipe server: client disconnected ({} active)", connections_.size());
    } else {
      ++it;
    }
  }
}

}  // namespace fcvm::fusepipe
