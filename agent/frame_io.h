// Frames on the host <-> agent stream: the standard Cap'n Proto stream framing (segment table,
// then segments), read with hard bounds checked before anything is allocated, and written in
// order by one writer that any number of producers share.
#pragma once

#include <capnp/message.h>
#include <kj/async-io.h>

#include <optional>

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

 private:
  kj::AsyncOutputStream& out_;
  kj::ForkedPromise<void> tail_;
};

}  // namespace fcvm::agent
