#include "worker/agent_channel.h"

#include <kj/debug.h>

#include "ipc/agent.capnp.h"

namespace fcvm::worker {
namespace {

kj::Exception channelError(const std::string& reason) {
  return kj::Exception(kj::Exception::Type::FAILED, __FILE__, __LINE__,
                       kj::str("agent channel: ", reason.c_str()));
}

}  // namespace

AgentChannel::AgentChannel(kj::Own<kj::AsyncIoStream> stream, std::string hostVersion)
    : stream_(kj::mv(stream)), writer_(*stream_), hostVersion_(std::move(hostVersion)) {}

void AgentChannel::fail(const std::string& reason) {
  markFailed(reason);
  kj::throwFatalException(channelError(failure_));
}

void AgentChannel::markFailed(const std::string& reason) {
  if (failure_.empty()) {
    failure_ = reason;
    // Close both directions so the guest sees the channel end; the stream object itself stays
    // alive for writes still queued (they now fail).
    kj::runCatchingExceptions([this]() { stream_->shutdownWrite(); });
    kj::runCatchingExceptions([this]() { stream_->abortRead(); });
    while (!streams_.empty()) closeStream(streams_.begin()->first, "the channel failed");
  }
}

void AgentChannel::requireUsable() const {
  if (!failure_.empty()) kj::throwFatalException(channelError(failure_));
}

kj::Promise<void> AgentChannel::send(const agent::Message& message) {
  return kj::evalNow([&]() {
    requireUsable();
    return writer_.send(message).catch_([this](kj::Exception&& e) -> kj::Promise<void> {
      markFailed(kj::str("write failed: ", e.getDescription()).cStr());
      return channelError(failure_);
    });
  });
}

kj::Promise<agent::Hello> AgentChannel::handshake() {
  return kj::evalNow([&]() {
    KJ_REQUIRE(!handshakeDone_, "agent channel: handshake done twice");
    auto sent = send(agent::Hello{agent::wire::PROTOCOL_VERSION, hostVersion_});
    return agent::readMessage(*stream_)
        .then(
            [this](std::optional<agent::Message> message) -> agent::Hello {
              auto* m = (message ? &*message : nullptr);
              if (m == nullptr) fail("agent closed the channel before its hello");
              auto* hello = std::get_if<agent::Hello>(m);
              if (hello == nullptr) {
                fail(std::string("agent's first message is ") + agent::messageName(*m) +
                     ", not hello");
              }
              if (hello->protocolVersion != agent::wire::PROTOCOL_VERSION) {
                fail("agent speaks protocol version " + std::to_string(hello->protocolVersion) +
                     ", this host speaks " + std::to_string(agent::wire::PROTOCOL_VERSION));
              }
              handshakeDone_ = true;
              return std::move(*hello);
            },
            [this](kj::Exception&& e) -> agent::Hello {
              requireUsable();
              fail(e.getDescription().cStr());
            })
        .then([sent = kj::mv(sent)](agent::Hello hello) mutable {
          return sent.then([hello = std::move(hello)]() mutable { return std::move(hello); });
        });
  });
}

kj::Promise<void> AgentChannel::runContainer(const agent::RunPlan& plan) {
  return kj::evalNow([&]() {
    requireUsable();
    KJ_REQUIRE(handshakeDone_, "agent channel: runContainer before handshake");
    KJ_REQUIRE(!runPlanSent_, "agent channel: the container was already started");
    runPlanSent_ = true;
    streams_[agent::kContainerStream] = StreamState{};
    return send(plan);
  });
}

kj::Promise<void> AgentChannel::exec(const agent::ExecRequest& request) {
  return kj::evalNow([&]() {
    requireUsable();
    KJ_REQUIRE(handshakeDone_, "agent channel: exec before handshake");
    KJ_REQUIRE(request.id != agent::kContainerStream, "agent channel: exec id 0 is the container");
    KJ_REQUIRE(streams_.count(request.id) == 0, "agent channel: exec id already open", request.id);
    StreamState state;
    state.tty = request.tty;
    state.stdinOpen = request.stdin;
    streams_[request.id] = std::move(state);
    return send(request);
  });
}

kj::Promise<void> AgentChannel::sendStdin(uint32_t streamId, std::string data, bool eof) {
  return kj::evalNow([&]() {
    requireUsable();
    auto it = streams_.find(streamId);
    KJ_REQUIRE(it != streams_.end() && it->second.stdinOpen,
               "agent channel: stream has no open stdin", streamId);
    KJ_REQUIRE(data.size() <= agent::wire::MAX_DATA_BYTES, "agent channel: stdin chunk too large",
               data.size());
    auto& st = it->second;
    KJ_REQUIRE(!st.creditWaiter, "agent channel: one sendStdin at a time per stream", streamId);
    if (eof) st.stdinOpen = false;
    uint64_t size = data.size();
    kj::Promise<void> credit = kj::READY_NOW;
    if (st.unacked + size > agent::wire::STDIN_WINDOW_BYTES) {
      auto paf = kj::newPromiseAndFulfiller<void>();
      st.creditWaiter = kj::mv(paf.fulfiller);
      st.waitingFor = size;
      credit = kj::mv(paf.promise);
    }
    return credit.then([this, streamId, size, eof, data = std::move(data)]() mutable {
      requireUsable();
      auto it = streams_.find(streamId);
      KJ_REQUIRE(it != streams_.end(), "agent channel: stream exited", streamId);
      it->second.unacked += size;
      return send(agent::Stdin{streamId, std::move(data), eof});
    });
  });
}

void AgentChannel::closeStream(uint32_t streamId, const char* why) {
  auto it = streams_.find(streamId);
  if (it == streams_.end()) return;
  if (it->second.creditWaiter) {
    it->second.creditWaiter->reject(channelError(std::string("stdin not sent: ") + why));
  }
  streams_.erase(it);
}

kj::Promise<void> AgentChannel::resize(uint32_t streamId, uint16_t rows, uint16_t cols) {
  return kj::evalNow([&]() {
    requireUsable();
    auto it = streams_.find(streamId);
    KJ_REQUIRE(it != streams_.end() && it->second.tty, "agent channel: not an open tty stream",
               streamId);
    return send(agent::WindowSize{streamId, rows, cols});
  });
}

kj::Promise<void> AgentChannel::setClock(int64_t realtimeNs) {
  return kj::evalNow([&]() {
    requireUsable();
    return send(agent::SetClock{realtimeNs});
  });
}

kj::Promise<void> AgentChannel::powerOff() {
  return kj::evalNow([&]() {
    requireUsable();
    return send(agent::PowerOff{});
  });
}

kj::Promise<void> AgentChannel::freeze() {
  return kj::evalNow([&]() {
    requireUsable();
    KJ_REQUIRE(handshakeDone_ && (containerStarted_ || !runPlanSent_),
               "agent channel: freeze while the container starts");
    KJ_REQUIRE(!freezing_ && !writer_.held(), "agent channel: already frozen");
    freezing_ = true;
    auto sent = send(agent::Freeze{});
    writer_.hold();
    return sent;
  });
}

kj::Promise<void> AgentChannel::thaw(int64_t realtimeNs) {
  return kj::evalNow([&]() {
    requireUsable();
    KJ_REQUIRE(writer_.held(), "agent channel: thaw without freeze");
    auto sent = writer_.sendWhileHeld(agent::Thaw{realtimeNs});
    writer_.release();
    return sent;
  });
}

kj::Promise<void> AgentChannel::resume(const agent::Resume& identity, bool containerRunning) {
  return kj::evalNow([&]() {
    requireUsable();
    KJ_REQUIRE(handshakeDone_ && !runPlanSent_, "agent channel: resume out of order");
    if (containerRunning) {
      runPlanSent_ = true;
      containerStarted_ = true;
      streams_[agent::kContainerStream] = StreamState{};
    }
    return send(identity);
  });
}

kj::Promise<std::optional<AgentEvent>> AgentChannel::next() {
  return kj::evalNow([&]() {
    requireUsable();
    KJ_REQUIRE(handshakeDone_, "agent channel: next() before handshake");
    return readUntilEvent().then([this]() { return std::exchange(nextEvent_, std::nullopt); });
  });
}

kj::Promise<void> AgentChannel::readUntilEvent() {
  return agent::readMessage(*stream_).then(
      [this](std::optional<agent::Message> message) -> kj::Promise<void> {
        requireUsable();
        if (!message) return kj::READY_NOW;  // clean end: nextEvent_ stays empty
        nextEvent_ = check(std::move(*message));
        if (!nextEvent_) return readUntilEvent();  // flow control, handled: read on
        return kj::READY_NOW;
      },
      [this](kj::Exception&& e) -> kj::Promise<void> {
        requireUsable();
        fail(e.getDescription().cStr());
      });
}

std::optional<AgentEvent> AgentChannel::check(agent::Message message) {
  if (auto* ack = std::get_if<agent::StdinAck>(&message)) {
    auto it = streams_.find(ack->streamId);
    if (it == streams_.end()) fail("stdinAck for unknown stream " + std::to_string(ack->streamId));
    auto& st = it->second;
    if (ack->bytes > st.unacked) {
      fail("stdinAck for more bytes than sent on stream " + std::to_string(ack->streamId));
    }
    st.unacked -= ack->bytes;
    if (st.creditWaiter && st.unacked + st.waitingFor <= agent::wire::STDIN_WINDOW_BYTES) {
      st.creditWaiter->fulfill();
      st.creditWaiter = nullptr;
    }
    return std::nullopt;
  }
  if (auto* out = std::get_if<agent::Output>(&message)) {
    auto it = streams_.find(out->streamId);
    if (it == streams_.end()) fail("output for unknown stream " + std::to_string(out->streamId));
    if (it->second.tty && out->kind == agent::OutputKind::kStderr) {
      fail("stderr output on tty stream " + std::to_string(out->streamId));
    }
    return std::move(*out);
  }
  if (auto* exit = std::get_if<agent::Exit>(&message)) {
    if (streams_.count(exit->streamId) == 0) {
      fail("exit for unknown stream " + std::to_string(exit->streamId));
    }
    closeStream(exit->streamId, "the stream exited");
    if (exit->signal < 0 || exit->signal > 64) {
      fail("exit with impossible signal " + std::to_string(exit->signal));
    }
    return *exit;
  }
  if (std::holds_alternative<agent::ContainerStarted>(message)) {
    // It may follow the container's first output, but never its exit or a second one.
    if (!runPlanSent_ || containerStarted_ || !isOpen(agent::kContainerStream)) {
      fail("unexpected containerStarted");
    }
    containerStarted_ = true;
    return agent::ContainerStarted{};
  }
  if (auto* log = std::get_if<agent::Log>(&message)) return std::move(*log);
  if (auto* frozen = std::get_if<agent::Frozen>(&message)) {
    if (!freezing_) fail("frozen without a freeze");
    freezing_ = false;
    return std::move(*frozen);
  }
  fail(std::string("agent sent a message it may not send: ") + agent::messageName(message));
}

}  // namespace fcvm::worker
