#include "agent/frame_io.h"

#include <capnp/serialize-async.h>
#include <kj/debug.h>

#include <cstring>

#include "ipc/agent.capnp.h"

namespace fcvm::agent {
namespace {

uint32_t readLe32(const kj::byte* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Reads exactly `size` bytes; a short read means the peer ended the stream inside a frame.
kj::Promise<void> readExactly(kj::AsyncInputStream& in, void* buffer, size_t size) {
  if (size == 0) return kj::READY_NOW;
  return in.tryRead(buffer, size, size).then([size](size_t n) {
    KJ_REQUIRE(n == size, "agent frame: stream ended inside a frame", n, size);
  });
}

struct FrameState {
  kj::byte header[8];
  kj::Array<kj::byte> restOfTable;
  kj::Array<capnp::word> body;
  uint32_t segmentCount = 0;
};

}  // namespace

capnp::ReaderOptions frameReaderOptions() {
  capnp::ReaderOptions options;
  // A decoder that reads each field once traverses about the frame's size; the slack bounds
  // amplification by a frame whose pointers overlap.
  options.traversalLimitInWords = uint64_t{wire::MAX_FRAME_WORDS} * 2;
  options.nestingLimit = static_cast<int>(wire::MAX_NESTING_DEPTH);
  return options;
}

kj::Promise<kj::Maybe<kj::Own<capnp::MessageReader>>> readFrame(kj::AsyncInputStream& in) {
  auto state = kj::heap<FrameState>();
  auto& s = *state;
  // evalNow: a read that fails at once throws from tryRead() itself instead of rejecting.
  return kj::evalNow([&]() { return in.tryRead(s.header, 1, sizeof(s.header)); })
      .then([&in, &s](size_t n) -> kj::Promise<bool> {
        if (n == 0) return false;  // clean end of stream
        return readExactly(in, s.header + n, sizeof(s.header) - n).then([]() { return true; });
      })
      .then([&in, &s](bool more) -> kj::Promise<bool> {
        if (!more) return false;
        uint64_t count = uint64_t{readLe32(s.header)} + 1;
        KJ_REQUIRE(count <= wire::MAX_SEGMENTS, "agent frame: too many segments", count);
        s.segmentCount = static_cast<uint32_t>(count);
        // The table is 4 bytes of count, 4 per segment size, padded to a word; 8 are read.
        size_t tableBytes = (4 + 4 * count + 7) & ~size_t{7};
        s.restOfTable = kj::heapArray<kj::byte>(tableBytes - 8);
        return readExactly(in, s.restOfTable.begin(), s.restOfTable.size()).then([]() {
          return true;
        });
      })
      .then([&in, &s](bool more) -> kj::Promise<bool> {
        if (!more) return false;
        uint64_t total = readLe32(s.header + 4);
        for (uint32_t i = 1; i < s.segmentCount; ++i)
          total += readLe32(&s.restOfTable[4 * (i - 1)]);
        KJ_REQUIRE(total <= wire::MAX_FRAME_WORDS, "agent frame: frame too large", total);
        s.body = kj::heapArray<capnp::word>(total);
        return readExactly(in, s.body.begin(), s.body.size() * sizeof(capnp::word)).then([]() {
          return true;
        });
      })
      .then([&s](bool more) -> kj::Maybe<kj::Own<capnp::MessageReader>> {
        if (!more) return nullptr;
        auto segments = kj::heapArray<kj::ArrayPtr<const capnp::word>>(s.segmentCount);
        size_t offset = 0;
        for (uint32_t i = 0; i < s.segmentCount; ++i) {
          uint32_t words = i == 0 ? readLe32(s.header + 4) : readLe32(&s.restOfTable[4 * (i - 1)]);
          segments[i] = s.body.slice(offset, offset + words);
          offset += words;
        }
        kj::Own<capnp::MessageReader> reader =
            kj::heap<capnp::SegmentArrayMessageReader>(segments.asPtr(), frameReaderOptions())
                .attach(kj::mv(segments), kj::mv(s.body));
        return kj::mv(reader);
      })
      .attach(kj::mv(state));
}

kj::Promise<std::optional<Message>> readMessage(kj::AsyncInputStream& in) {
  return readFrame(in).then([](kj::Maybe<kj::Own<capnp::MessageReader>> frame) {
    std::optional<Message> result;
    KJ_IF_MAYBE (f, frame) {
      result = decode(**f);
    }
    return result;
  });
}

FrameWriter::FrameWriter(kj::AsyncOutputStream& out)
    : out_(out), tail_(kj::Promise<void>(kj::READY_NOW).fork()) {}

kj::Promise<void> FrameWriter::append(kj::Own<capnp::MallocMessageBuilder> frame) {
  auto write = tail_.addBranch().then([this, frame = kj::mv(frame)]() mutable {
    auto& f = *frame;
    return capnp::writeMessage(out_, f).attach(kj::mv(frame));
  });
  tail_ = write.fork();
  return tail_.addBranch();
}

kj::Promise<void> FrameWriter::send(const Message& message) {
  kj::Own<capnp::MallocMessageBuilder> frame;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { frame = encode(message); })) {
    return kj::mv(*e);
  }
  if (!held_) return append(kj::mv(frame));
  auto queued = kj::newPromiseAndFulfiller<void>();
  queue_.push_back({message, kj::mv(frame), kj::mv(queued.fulfiller)});
  return kj::mv(queued.promise);
}

void FrameWriter::hold() { held_ = true; }

kj::Promise<void> FrameWriter::sendWhileHeld(const Message& message) {
  KJ_REQUIRE(held_, "frame writer is not held");
  kj::Own<capnp::MallocMessageBuilder> frame;
  KJ_IF_MAYBE (e, kj::runCatchingExceptions([&]() { frame = encode(message); })) {
    return kj::mv(*e);
  }
  return append(kj::mv(frame));
}

void FrameWriter::release(const std::function<bool(const Message&)>& keep) {
  held_ = false;
  auto queue = kj::mv(queue_);
  for (auto& q : queue) {
    // The write goes on in the writer's own chain; the sender learns at once that it was queued.
    if (!keep || keep(q.message)) auto written = append(kj::mv(q.frame));
    q.sent->fulfill();
  }
}

}  // namespace fcvm::agent
