#include "fuse-pipe/session.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "fuse-pipe/error.h"

namespace fcvm::fusepipe {

Session::Session(UniqueFd stream, Filesystem& fs, SessionOptions options)
    : stream_(std::move(stream)),
      options_(options),
      handler_(fs, options.readOnly),
      writer_(stream_.get()) {}

Session::~Session() = default;

void Session::stop() {
  ::shutdown(stream_.get(), SHUT_RDWR);
  closeQueue();
}

void Session::closeQueue() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  queue_.clear();  // requests not yet started are dropped: their client is gone
  queuedBytes_ = 0;
  queueChanged_.notify_all();
}

void Session::run() {
  try {
    serverHandshake(stream_.get(), options_.readOnly ? kHelloReadOnly : 0);
  } catch (const std::exception& e) {
    spdlog::warn("fuse-pipe session: handshake failed: {}", e.what());
    ::shutdown(stream_.get(), SHUT_RDWR);
    return;
  }
  std::vector<std::jthread> workers;
  for (unsigned i = 0; i < std::max(1u, options_.workers); ++i) {
    workers.emplace_back([this] { workerLoop(); });
  }
  FrameReader reader(stream_.get());
  try {
    while (auto frame = reader.read()) {
      if (frame->header.flags != 0) {
        throw ProtocolError("request frame with flags " + std::to_string(frame->header.flags));
      }
      std::unique_lock lock(mutex_);
      const size_t bytes = frame->payload.size();
      queueChanged_.wait(lock, [&] {
        return closed_ || queue_.empty() ||
               (queue_.size() < options_.maxQueuedRequests &&
                queuedBytes_ + bytes <= options_.maxQueuedBytes);
      });
      if (closed_) break;
      queuedBytes_ += bytes;
      queue_.push_back(std::move(*frame));
      queueChanged_.notify_all();
    }
    spdlog::debug("fuse-pipe session: client closed the stream");
  } catch (const std::exception& e) {
    spdlog::warn("fuse-pipe session: closing connection: {}", e.what());
  }
  ::shutdown(stream_.get(), SHUT_RDWR);
  closeQueue();
  // workers join here
}

void Session::workerLoop() {
  while (true) {
    Frame frame;
    {
      std::unique_lock lock(mutex_);
      queueChanged_.wait(lock, [&] { return closed_ || !queue_.empty(); });
      if (queue_.empty()) return;  // closed
      frame = std::move(queue_.front());
      queue_.pop_front();
      queuedBytes_ -= frame.payload.size();
      queueChanged_.notify_all();
    }
    auto reply = handler_.handle(frame);
    if (!reply) continue;
    try {
      writer_.write({.opcode = frame.header.opcode,
                     .flags = kFrameReply,
                     .requestId = frame.header.requestId},
                    *reply);
    } catch (const std::exception& e) {
      spdlog::debug("fuse-pipe session: cannot send {} reply: {}", opcodeName(frame.header.opcode),
                    e.what());
      ::shutdown(stream_.get(), SHUT_RDWR);  // the reader sees the end and stops the session
    }
  }
}

}  // namespace fcvm::fusepipe
