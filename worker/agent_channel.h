// The host side of the control channel to one VM's fc-agent (ipc/agent.capnp). The guest is
// untrusted: every frame it sends is bounded and decoded in full before use (agent/frame_io.h,
// agent/messages.h), and checked against what this side recorded itself — the order (hello
// first), the streams it opened (stream 0 after runContainer, exec ids it chose), tty streams
// having no stderr, stdin acks never exceeding what was sent. Any violation closes the channel
// for good; it never crashes or hangs the worker (a guest that sends nothing at all is the
// caller's deadline: wrap handshake()/next() in kj::Timer::timeoutAfter). All failures are
// kj::Exceptions whose description starts with "agent channel: ".
#pragma once

#include <kj/async-io.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "agent/frame_io.h"
#include "agent/messages.h"

namespace fcvm::worker {

// What the agent may report after its hello.
using AgentEvent =
    std::variant<agent::ContainerStarted, agent::Output, agent::Exit, agent::Log, agent::Frozen>;

class AgentChannel {
 public:
  // `stream` is the connected control stream (the Unix socket behind the VM's virtio-serial port
  // "fcvm.control"). `hostVersion` goes into our hello, for the agent's logs.
  explicit AgentChannel(kj::Own<kj::AsyncIoStream> stream, std::string hostVersion = "fcvm");
  AgentChannel(const AgentChannel&) = delete;
  AgentChannel& operator=(const AgentChannel&) = delete;

  // Sends our hello and waits for the agent's; a protocol version mismatch closes the channel.
  // Must complete before anything else is sent or received.
  kj::Promise<agent::Hello> handshake();

  // Opens stream 0. Once per channel.
  kj::Promise<void> runContainer(const agent::RunPlan& plan);
  // Opens stream request.id (> 0, not open).
  kj::Promise<void> exec(const agent::ExecRequest& request);
  // To an open stream that was started with stdin; at most maxDataBytes. Resolves once sent,
  // which waits while stdinWindowBytes of this stream's stdin are un-acknowledged by the agent:
  // acks are read by next(), so keep a next() pending meanwhile. One call at a time per stream.
  // Rejects if the stream exits first.
  kj::Promise<void> sendStdin(uint32_t streamId, std::string data, bool eof);
  kj::Promise<void> resize(uint32_t streamId, uint16_t rows, uint16_t cols);
  kj::Promise<void> setClock(int64_t realtimeNs);
  kj::Promise<void> powerOff();

  // Around a snapshot (ipc/agent.capnp). freeze() asks the agent to freeze and holds everything
  // sent after it; the agent's answer comes through next() as a Frozen event. thaw() lets the
  // agent and the held frames go on. A freeze comes before the run plan (a start-up snapshot) or
  // once the container has started, never while it starts.
  kj::Promise<void> freeze();
  kj::Promise<void> thaw(int64_t realtimeNs);
  // In a clone restored from a snapshot, after handshake(): gives the guest its identity. With
  // `containerRunning` the container (stream 0) runs on from the snapshot and its output follows;
  // else (a start-up snapshot's clone) runContainer() comes next.
  kj::Promise<void> resume(const agent::Resume& identity, bool containerRunning = true);

  // The agent's next checked event; null when the agent closed the stream cleanly between frames.
  // One call at a time. Flow-control frames (stdinAck) are handled here, never returned.
  kj::Promise<std::optional<AgentEvent>> next();

  bool isOpen(uint32_t streamId) const { return streams_.count(streamId) != 0; }
  // Why the channel was closed, empty while it works.
  const std::string& failure() const { return failure_; }

 private:
  struct StreamState {
    bool tty = false;
    bool stdinOpen = false;
    uint64_t unacked = 0;  // stdin bytes sent, not yet acked by the agent
    kj::Own<kj::PromiseFulfiller<void>> creditWaiter;  // a sendStdin waiting for the window
    uint64_t waitingFor = 0;                           // its size
  };

  kj::Promise<void> send(const agent::Message& message);
  kj::Promise<void> readUntilEvent();  // into nextEvent_; left empty at a clean end
  std::optional<AgentEvent> check(agent::Message message);  // nullopt: handled here
  void closeStream(uint32_t streamId, const char* why);
  [[noreturn]] void fail(const std::string& reason);  // markFailed, then throw
  void markFailed(const std::string& reason);         // closes the channel for good
  void requireUsable() const;

  kj::Own<kj::AsyncIoStream> stream_;
  agent::FrameWriter writer_;
  const std::string hostVersion_;
  bool handshakeDone_ = false;
  bool runPlanSent_ = false;
  bool containerStarted_ = false;
  bool freezing_ = false;                    // a freeze was sent and its Frozen answer not yet read
  std::map<uint32_t, StreamState> streams_;  // opened by us, closed by the agent's exit
  std::string failure_;
  std::optional<AgentEvent> nextEvent_;  // handed from readUntilEvent() to next()
};

}  // namespace fcvm::worker
