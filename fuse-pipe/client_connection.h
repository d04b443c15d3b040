// ClientConnection: the client's end of a fuse-pipe stream. Requests from any thread are tagged
// with fresh ids and written whole; one receiver thread reads replies in whatever order the server
// sends them and completes the matching request. When the stream ends or the server breaks the
// protocol, every pending request and every later one completes with EIO.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/unique_fd.h"
#include "fuse-pipe/error.h"
#include "fuse-pipe/protocol.h"
#include "fuse-pipe/transport.h"

namespace fcvm::fusepipe {

class ClientConnection {
 public:
  // `result` holds the reply after its errno field; it is empty when error != 0.
  using Completion = std::function<void(Errno error, WireReader& result)>;

  // Takes a stream on which clientHandshake() succeeded and starts the receiver thread (with all
  // signals blocked, so that process signals reach the main thread).
  explicit ClientConnection(UniqueFd stream);
  // Calls close().
  ~ClientConnection();
  ClientConnection(const ClientConnection&) = delete;
  ClientConnection& operator=(const ClientConnection&) = delete;

  // Sends a request; `done` runs exactly once, on the receiver thread with the reply, or with EIO
  // (possibly on this thread, before call returns) if the server is gone.
  void call(Opcode opcode, std::span<const uint8_t> payload, Completion done);
  // The same with an id from reserveRequestId(), for requests that a kInterrupt may later name.
  void call(Opcode opcode, std::span<const uint8_t> payload, Completion done, uint64_t requestId);
  uint64_t reserveRequestId() { return nextRequestId_++; }
  // Sends a request without asking for a reply (request id kNoReply): for those whose outcome
  // the caller cannot use (forget, release, interrupt). Dropped silently if the server is gone.
  void send(Opcode opcode, std::span<const uint8_t> payload);

  // Queues such a request; the next call() or send() sends it first. For completions: they run on
  // the receiver thread, which must never block writing to the stream (the server may be waiting
  // for it to read).
  void defer(Opcode opcode, std::vector<uint8_t> payload);

  // Shuts the stream down, joins the receiver and completes what is pending with EIO; later calls
  // complete with EIO at once. Idempotent; not to be called from a completion.
  void close();

  bool alive() const { return !dead_; }

 private:
  void receiveLoop();
  // Sends what defer() queued.
  void flushDeferred();
  void write(Opcode opcode, uint64_t requestId, std::span<const uint8_t> payload);
  // Marks the server gone and completes every pending request with EIO.
  void fail(const std::string& why);

  const UniqueFd stream_;
  FrameWriter writer_;
  std::atomic<bool> dead_ = false;
  std::atomic<bool> closing_ = false;  // the destructor runs: the end of the stream is expected
  std::atomic<uint64_t> nextRequestId_ = 1;

  struct Deferred {
    Opcode opcode;
    std::vector<uint8_t> payload;
  };

  std::mutex mutex_;  // guards pending_ and deferred_; never held while a completion runs
  std::unordered_map<uint64_t, Completion> pending_;
  std::vector<Deferred> deferred_;

  std::mutex closeMutex_;  // serialises close()
  std::thread receiver_;   // last: started after everything above exists
};

}  // namespace fcvm::fusepipe
