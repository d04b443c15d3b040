#include "fuse-pipe/session.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "fuse-pipe/error.h"

namespace fcvm::fusepipe {

Session::Session(UniqueFd stream, Filesystem& fs, SessionOptions options)
    : stream_(std::move(stream)),
      options_(options),
      handler_(fs, options.readOnly),
      writer_(stream_.get()),
      reader_(stream_.get()) {}

Session::~Session() = default;

void Session::stop() { close(); }

void Session::close() {
  closed_ = true;
  // Wakes the thread blocked reading, and fails any reply still being written.
  ::shutdown(stream_.get(), SHUT_RDWR);
}

void Session::run() {
  try {
    serverHandshake(stream_.get(), options_.readOnly ? kHelloReadOnly : 0);
  } catch (const std::exception& e) {
    spdlog::warn("fuse-pipe session: handshake failed: {}", e.what());
    close();
    return;
  }
  {
    std::vector<std::jthread> pool;
    for (unsigned i = 1; i < std::max(1u, options_.workers); ++i) {
      pool.emplace_back([this] { serveLoop(); });
    }
    serveLoop();
  }  // the pool joins here
  reapBlocking(/*all=*/true);
}

void Session::serveLoop() {
  while (true) {
    std::optional<Frame> frame;
    {
      std::lock_guard lock(readMutex_);
      while ((frame = nextRequest())) {
        // Handing the stream on wakes a follower, which on a quiet connection finds nothing to
        // read and sleeps again: a quick request with nothing behind it is served by the reading
        // thread itself, without letting go of the stream.
        if (!isQuickRequest(*frame) || reader_.hasBufferedBytes()) break;
        reply(*frame, handler_.handle(*frame));
      }
    }
    if (!frame) return;
    reply(*frame, handler_.handle(*frame));
  }
}

std::optional<Frame> Session::nextRequest() {
  try {
    while (!closed_) {
      auto frame = reader_.read();
      if (!frame) {
        spdlog::debug("fuse-pipe session: client closed the stream");
        break;
      }
      if (frame->header.flags != 0) {
        throw ProtocolError("request frame with flags " + std::to_string(frame->header.flags));
      }
      if (frame->header.opcode == static_cast<uint16_t>(Opcode::kInterrupt)) {
        if (auto target = decodeInterrupt(*frame)) interrupt(*target);
        continue;  // no reply, even to a malformed one: the client expects none
      }
      if (isBlockingRequest(*frame)) {
        // Registered before the next frame is read, so that an interrupt for it finds it.
        startBlocking(std::move(*frame));
        continue;
      }
      return frame;
    }
  } catch (const std::exception& e) {
    if (!closed_) spdlog::warn("fuse-pipe session: closing connection: {}", e.what());
  }
  close();
  return std::nullopt;
}

void Session::startBlocking(Frame frame) {
  reapBlocking(/*all=*/false);
  std::lock_guard lock(blockingMutex_);
  if (blocking_.size() >= options_.maxBlockingRequests) {
    WireWriter w;
    w.i32(ENOLCK);
    reply(frame, w.take());
    return;
  }
  auto request = std::make_unique<BlockingRequest>();
  request->requestId = frame.header.requestId;
  BlockingRequest* r = request.get();
  request->thread = std::thread([this, r, frame = std::move(frame)] {
    reply(frame, handler_.handle(frame, &r->cancellation));
    r->finished = true;
  });
  blocking_.push_back(std::move(request));
}

void Session::interrupt(uint64_t requestId) {
  std::lock_guard lock(blockingMutex_);
  for (auto& r : blocking_) {
    if (r->requestId == requestId && !r->finished) r->cancellation.cancel();
  }
}

void Session::reapBlocking(bool all) {
  std::list<std::unique_ptr<BlockingRequest>> done;
  {
    std::lock_guard lock(blockingMutex_);
    for (auto it = blocking_.begin(); it != blocking_.end();) {
      if (all) (*it)->cancellation.cancel();
      if (all || (*it)->finished) {
        done.push_back(std::move(*it));
        it = blocking_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& r : done) r->thread.join();  // without the mutex: a finishing thread may need it
}

void Session::reply(const Frame& frame, const std::optional<std::vector<uint8_t>>& payload) {
  if (spdlog::should_log(spdlog::level::trace)) {  // `--log-level trace`: every request
    WireReader result(payload ? std::span<const uint8_t>(*payload) : std::span<const uint8_t>());
    spdlog::trace("fuse-pipe session: {} #{} -> errno {}", opcodeName(frame.header.opcode),
                  frame.header.requestId, payload ? result.i32() : 0);
  }
  if (!payload || frame.header.requestId == kNoReply) return;
  try {
    writer_.write(
        {.opcode = frame.header.opcode, .flags = kFrameReply, .requestId = frame.header.requestId},
        *payload);
  } catch (const std::exception& e) {
    spdlog::debug("fuse-pipe session: cannot send {} reply: {}", opcodeName(frame.header.opcode),
                  e.what());
    ::shutdown(stream_.get(), SHUT_RDWR);  // the reader sees the end and stops the session
  }
}

}  // namespace fcvm::fusepipe
