// Session: serves one client connection. A reader thread (the caller of run()) reads and
// bounds-checks frames and queues them; a pool of worker threads performs them concurrently and
// writes each reply as soon as it is ready, so replies go out in completion order, tagged with
// their request ids. A malformed frame (oversized length, truncated frame, reply flag set) closes
// the connection; a malformed request body gets an error reply (see RequestHandler).
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "fuse-pipe/filesystem.h"
#include "fuse-pipe/request_handler.h"
#include "fuse-pipe/transport.h"
#include "fuse-pipe/unique_fd.h"

namespace fcvm::fusepipe {

struct SessionOptions {
  bool readOnly = false;
  unsigned workers = 4;
  // The reader stops reading while this many requests, or this many payload bytes, wait.
  size_t maxQueuedRequests = 256;
  size_t maxQueuedBytes = 32u << 20;
};

class Session {
 public:
  Session(UniqueFd stream, Filesystem& fs, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Handshakes, then serves until the peer closes the stream, breaks the protocol or stop() is
  // called. Returns after every worker has finished. Errors are logged, not thrown.
  void run();

  // Callable from any thread: makes run() return soon.
  void stop();

 private:
  void workerLoop();
  void closeQueue();

  const UniqueFd stream_;
  const SessionOptions options_;
  RequestHandler handler_;
  FrameWriter writer_;

  std::mutex mutex_;  // guards queue_, queuedBytes_ and closed_
  std::condition_variable queueChanged_;
  std::deque<Frame> queue_;
  size_t queuedBytes_ = 0;
  bool closed_ = false;
};

}  // namespace fcvm::fusepipe
