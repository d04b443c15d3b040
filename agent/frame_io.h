// Frames on the host <-> agent stream: the standard Cap'n Proto stream framing (segment table,
// then segments), read with hard bounds checked before anything is allocated, and written in
// order by one writer that any number of producers share.
#pragma once

#include <capnp/message.h>
#include <kj/async-io.h>

#include <functional>
#include <optional>
#include <vector>

#include "agent/messages.h"

namespace fcvm::agent {

// Strict options for decoding a frame's contents (traversal and nesting limits).
capnp::ReaderOptions frameReaderOptions();

// Reads one frame. Resolves to null at a clean end of stream (before a frame's first byte).
// Rejects (kj::Exception) a frame with more than maxSegments segments or more than maxFrameWords
// words, and a stream that ends inside a frame.
kj::Promise<kj::Maybe<kj::Own<capnp::MessageReader>>> readFrame(kj::AsyncInputStream& in);

// readFrame + decode: the next checked message, or null at a clean end of stream.
kj::Promise<std::optional<Message>> readMessage(kj::AsyncInputStream& in);

// Serialises writes: frames go out whole and in send() order. A failed write fails every later
// send. Writes proceed even if the caller drops the returned promise.
class FrameWriter {
 public:
  explicit FrameWriter(kj::AsyncOutputStream& out);
  FrameWriter(const FrameWriter&) = delete;
  FrameWriter& operator=(const FrameWriter&) = delete;

  // Resolves when this frame has been written. Rejects without writing anything if `message`
  // breaks the protocol's bounds.
  kj::Promise<void> send(const Message& message);

  // Around a snapshot: while held, frames given to send() wait in a queue (their promises pend)
  // and only sendWhileHeld() frames go out, after everything sent before hold(). release() sends
  // the queued frames that `keep` accepts (all without it), in order, and resolves every queued
  // send (a dropped frame counts as sent: its stream is gone).
  void hold();
  kj::Promise<void> sendWhileHeld(const Message& message);
  void release(const std::function<bool(const Message&)>& keep = nullptr);
  bool held() const { return held_; }

 private:
  struct Queued {
    Message message;
    kj::Own<capnp::MallocMessageBuilder> frame;
    kj::Own<kj::PromiseFulfiller<void>> sent;
  };

  kj::Promise<void> append(kj::Own<capnp::MallocMessageBuilder> frame);

  kj::AsyncOutputStream& out_;
  kj::ForkedPromise<void> tail_;
  bool held_ = false;
  std::vector<Queued> queue_;
};

}  // namespace fcvm::agent
