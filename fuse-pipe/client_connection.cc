#include "fuse-pipe/client_connection.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

namespace fcvm::fusepipe {

ClientConnection::ClientConnection(UniqueFd stream)
    : stream_(std::move(stream)), writer_(stream_.get()) {
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  receiver_ = std::thread([this] { receiveLoop(); });
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

ClientConnection::~ClientConnection() { close(); }

void ClientConnection::close() {
  std::lock_guard lock(closeMutex_);
  closing_ = true;
  ::shutdown(stream_.get(), SHUT_RDWR);
  if (receiver_.joinable()) receiver_.join();
  fail("connection closed by the client");
}

void ClientConnection::call(Opcode opcode, std::span<const uint8_t> payload, Completion done) {
  uint64_t id = nextRequestId_++;
  {
    std::lock_guard lock(mutex_);
    if (!dead_) {
      pending_.emplace(id, std::move(done));
      done = nullptr;
    }
  }
  if (done) {
    WireReader empty({});
    done(EIO, empty);
    return;
  }
  try {
    writer_.write({.opcode = static_cast<uint16_t>(opcode), .requestId = id}, payload);
  } catch (const std::exception& e) {
    fail(std::string("cannot send request: ") + e.what());  // completes this request too
  }
}

void ClientConnection::send(Opcode opcode, std::span<const uint8_t> payload) {
  if (dead_) return;
  try {
    writer_.write({.opcode = static_cast<uint16_t>(opcode), .requestId = 0}, payload);
  } catch (const std::exception& e) {
    fail(std::string("cannot send request: ") + e.what());
  }
}

void ClientConnection::receiveLoop() {
  FrameReader reader(stream_.get());
  try {
    while (auto frame = reader.read()) {
      if (!(frame->header.flags & kFrameReply)) throw ProtocolError("server sent a request frame");
      Completion done;
      {
        std::lock_guard lock(mutex_);
        auto it = pending_.find(frame->header.requestId);
        if (it == pending_.end()) {
          throw ProtocolError("reply to unknown request " +
                              std::to_string(frame->header.requestId));
        }
        done = std::move(it->second);
        pending_.erase(it);
      }
      WireReader result(frame->payload);
      int32_t error = result.i32();
      if (result.failed() || error < 0) {
        WireReader empty({});
        done(EIO, empty);
        throw ProtocolError("malformed reply");
      }
      if (error != 0) {
        WireReader empty({});
        done(error, empty);
      } else {
        done(0, result);
      }
    }
    fail("server closed the stream");
  } catch (const std::exception& e) {
    fail(e.what());
  }
}

void ClientConnection::fail(const std::string& why) {
  std::unordered_map<uint64_t, Completion> orphans;
  {
    std::lock_guard lock(mutex_);
    if (!dead_.exchange(true)) {
      if (closing_) {
        spdlog::debug("fuse-pipe: connection closed: {}", why);
      } else {
        spdlog::error("fuse-pipe: server connection lost, requests now fail with EIO: {}", why);
      }
    }
    orphans.swap(pending_);
  }
  ::shutdown(stream_.get(), SHUT_RDWR);
  for (auto& [id, done] : orphans) {
    WireReader empty({});
    done(EIO, empty);
  }
}

}  // namespace fcvm::fusepipe
