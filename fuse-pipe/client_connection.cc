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
  call(opcode, payload, std::move(done), reserveRequestId());
}

void ClientConnection::call(Opcode opcode, std::span<const uint8_t> payload, Completion done,
                            uint64_t id) {
  flushDeferred();
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
  write(opcode, id, payload);
}

void ClientConnection::send(Opcode opcode, std::span<const uint8_t> payload) {
  flushDeferred();
  if (!dead_) write(opcode, kNoReply, payload);
}

void ClientConnection::defer(Opcode opcode, std::vector<uint8_t> payload) {
  std::lock_guard lock(mutex_);
  if (!dead_) deferred_.push_back({opcode, std::move(payload)});
}

void ClientConnection::flushDeferred() {
  std::vector<Deferred> batch;
  {
    std::lock_guard lock(mutex_);
    if (deferred_.empty()) return;
    batch.swap(deferred_);
  }
  for (auto& d : batch) send(d.opcode, d.payload);
}

void ClientConnection::write(Opcode opcode, uint64_t requestId, std::span<const uint8_t> payload) {
  try {
    writer_.write({.opcode = static_cast<uint16_t>(opcode), .requestId = requestId}, payload);
  } catch (const std::exception& e) {
    fail(std::string("cannot send request: ") + e.what());  // completes pending requests too
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
        fail("malformed reply to " + std::string(opcodeName(frame->header.opcode)));
        WireReader empty({});
        done(EIO, empty);  // after fail(): the connection is already marked dead
        return;
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
    deferred_.clear();
  }
  ::shutdown(stream_.get(), SHUT_RDWR);
  for (auto& [id, done] : orphans) {
    WireReader empty({});
    done(EIO, empty);
  }
}

}  // namespace fcvm::fusepipe
