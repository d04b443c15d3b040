// Session: serves one client connection with a pool of threads that take turns reading: the
// thread holding the stream reads and bounds-checks one frame, hands the stream to the next
// thread and performs the request itself, then writes the reply (leader/followers). A quick
// request (see isQuickRequest) with no further bytes already read is performed without handing
// the stream on, which would wake a thread for nothing on a quiet connection. No request waits
// in a queue for another thread to wake up, and replies go out in completion order, tagged
// with their request ids; at most `workers` requests run at once, which bounds what the server
// takes in. A malformed frame (oversized length, truncated frame, reply flag set) closes the
// connection; a malformed request body gets an error reply (see RequestHandler).
//
// Requests that may block indefinitely (lock waits) do not run on the worker pool, where a few of
// them could starve the requests that would release their locks: each runs on a thread of its
// own (at most maxBlockingRequests at once; beyond that they fail with ENOLCK) and a kInterrupt
// naming its request id cancels it (it then answers EINTR). When the session ends, every one of
// them is cancelled, so that run() returns promptly.
#pragma once

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "fuse-pipe/filesystem.h"
#include "fuse-pipe/request_handler.h"
#include "fuse-pipe/transport.h"

namespace fcvm::fusepipe {

struct SessionOptions {
  bool readOnly = false;
  unsigned workers = 4;
  size_t maxBlockingRequests = 64;
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
  // One thread of the pool: reads a frame when it is its turn, performs it, repeats.
  void serveLoop();
  // Takes the stream's next frame, dispatching interrupts and blocking requests on the way; null
  // once the session is over (the caller holds readMutex_).
  std::optional<Frame> nextRequest();
  void close();
  void reply(const Frame& frame, const std::optional<std::vector<uint8_t>>& payload);
  // Runs a blocking request on a thread of its own (reader thread only).
  void startBlocking(Frame frame);
  void interrupt(uint64_t requestId);
  // Joins the blocking requests' threads that have finished (all of them with `all`, after
  // cancelling those still waiting).
  void reapBlocking(bool all);

  struct BlockingRequest {
    uint64_t requestId = 0;
    Cancellation cancellation;
    std::atomic<bool> finished = false;
    std::thread thread;
  };

  const UniqueFd stream_;
  const SessionOptions options_;
  RequestHandler handler_;
  FrameWriter writer_;

  std::mutex readMutex_;  // held by the thread whose turn it is to read; guards reader_
  FrameReader reader_;
  std::atomic<bool> closed_ = false;

  std::mutex blockingMutex_;  // guards blocking_; the list is changed by the reader thread only
  std::list<std::unique_ptr<BlockingRequest>> blocking_;
};

}  // namespace fcvm::fusepipe
