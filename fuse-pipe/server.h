// Server: accepts fuse-pipe connections on a listening socket and serves each in its own Session
// over its own PassthroughFs on the same root (inode and handle ids are per connection).
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <string>
#include <thread>

#include "base/unique_fd.h"
#include "fuse-pipe/passthrough_fs.h"
#include "fuse-pipe/session.h"

namespace fcvm::fusepipe {

struct ServerOptions {
  std::string rootPath;
  bool readOnly = false;
  unsigned workersPerSession = 4;
};

class Server {
 public:
  // Checks that the root can be opened; throws SysError naming it otherwise.
  Server(UniqueFd listener, ServerOptions options);
  // Stops every session and waits for them.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Accepts and serves connections until `stopFd` becomes readable (or hangs up).
  void run(int stopFd);

 private:
  struct Connection {
    std::unique_ptr<PassthroughFs> fs;
    std::unique_ptr<Session> session;
    std::atomic<bool> finished = false;
    std::thread thread;  // runs session->run(); joined before the members above are destroyed
  };

  void accept();
  void reapFinished();

  const UniqueFd listener_;
  const ServerOptions options_;
  std::list<std::unique_ptr<Connection>> connections_;  // only touched by run()'s thread
};

// Serves one stream that is already connected (a VM channel's host end) until the client ends it
// or `stopFd` becomes readable. Throws SysError if the root cannot be served.
void serveStream(UniqueFd stream, const ServerOptions& options, int stopFd);

}  // namespace fcvm::fusepipe
