#include "fuse-pipe/transport.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "base/unique_fd.h"
#include "fuse-pipe/error.h"

namespace fcvm::fusepipe {
namespace {

struct SocketPair {
  SocketPair() {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
      throw std::runtime_error("socketpair");
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
  UniqueFd a, b;
};

void writeRaw(int fd, const std::vector<uint8_t>& bytes) {
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
}

std::vector<uint8_t> rawHeader(uint32_t length, uint16_t opcode, uint16_t flags, uint64_t id) {
  std::vector<uint8_t> raw(kFrameHeaderSize);
  encodeFrameHeader({length, opcode, flags, id}, raw.data());
  return raw;
}

TEST(TransportTest, FramesRoundTripInOrder) {
  SocketPair s;
  FrameWriter writer(s.a.get());
  std::vector<uint8_t> payload = {1, 2, 3, 4, 5};
  writer.write({.opcode = 2, .requestId = 10}, payload);
  writer.write({.opcode = 3, .flags = kFrameReply, .requestId = 11}, {});
  FrameReader reader(s.b.get());
  auto first = reader.read();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->header.opcode, 2);
  EXPECT_EQ(first->header.requestId, 10u);
  EXPECT_EQ(first->payload, payload);
  auto second = reader.read();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->header.flags, kFrameReply);
  EXPECT_TRUE(second->payload.empty());
  s.a.reset();
  EXPECT_FALSE(reader.read());  // clean end of stream at a frame boundary
}

TEST(TransportTest, BufferedReaderSplitsBurstsAndLargeFramesExactly) {
  SocketPair s;
  FrameWriter writer(s.a.get());
  std::vector<uint8_t> big(200000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 13);
  // Small frames around a large one, all written before anything is read, with a tiny buffer so
  // that frames straddle buffer boundaries.
  std::thread sender([&] {
    for (uint64_t id = 1; id <= 50; ++id) {
      writer.write({.opcode = 2, .requestId = id}, std::vector<uint8_t>(id % 7, uint8_t(id)));
    }
    writer.write({.opcode = 3, .requestId = 51}, big);
    writer.write({.opcode = 4, .requestId = 52}, std::vector<uint8_t>{9});
    s.a.reset();
  });
  FrameReader reader(s.b.get(), kMaxFramePayload, /*bufferSize=*/40);
  for (uint64_t id = 1; id <= 50; ++id) {
    auto frame = reader.read();
    ASSERT_TRUE(frame);
    EXPECT_EQ(frame->header.requestId, id);
    EXPECT_EQ(frame->payload, std::vector<uint8_t>(id % 7, uint8_t(id)));
  }
  auto large = reader.read();
  ASSERT_TRUE(large);
  EXPECT_EQ(large->payload, big);
  auto last = reader.read();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->payload, std::vector<uint8_t>{9});
  sender.join();
  EXPECT_FALSE(reader.read());
}

TEST(TransportTest, ReceiveTimeoutBoundsTheWaitForAFrame) {
  SocketPair s;
  timeval timeout{0, 20000};
  ASSERT_EQ(::setsockopt(s.b.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout), 0);
  try {
    FrameReader(s.b.get()).read();
    FAIL() << "read returned without a frame";
  } catch (const SysError& e) {
    EXPECT_EQ(e.code(), EAGAIN);
  }
}

TEST(TransportTest, LargeFrameSurvivesPartialWrites) {
  SocketPair s;
  std::vector<uint8_t> payload(kMaxIoSize);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  std::thread writerThread([&] { FrameWriter(s.a.get()).write({.opcode = 16}, payload); });
  auto frame = FrameReader(s.b.get()).read();
  writerThread.join();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->payload, payload);
}

TEST(TransportTest, OversizedLengthIsRejectedBeforeReadingThePayload) {
  SocketPair s;
  writeRaw(s.a.get(), rawHeader(kMaxFramePayload + 1, 2, 0, 1));
  FrameReader reader(s.b.get());
  EXPECT_THROW(reader.read(), ProtocolError);
}

TEST(TransportTest, MaximalLengthFieldIsRejected) {
  SocketPair s;
  writeRaw(s.a.get(), rawHeader(0xffffffff, 2, 0, 1));
  EXPECT_THROW(FrameReader(s.b.get()).read(), ProtocolError);
}

TEST(TransportTest, StreamEndingInsideTheHeaderIsAnError) {
  SocketPair s;
  auto header = rawHeader(4, 2, 0, 1);
  header.resize(7);
  writeRaw(s.a.get(), header);
  s.a.reset();
  EXPECT_THROW(FrameReader(s.b.get()).read(), ProtocolError);
}

TEST(TransportTest, StreamEndingInsideThePayloadIsAnError) {
  SocketPair s;
  auto raw = rawHeader(100, 2, 0, 1);
  raw.insert(raw.end(), 50, 0xaa);
  writeRaw(s.a.get(), raw);
  s.a.reset();
  EXPECT_THROW(FrameReader(s.b.get()).read(), ProtocolError);
}

TEST(TransportTest, WritingToAClosedPeerThrowsInsteadOfRaisingSigpipe) {
  SocketPair s;
  s.b.reset();
  EXPECT_THROW(FrameWriter(s.a.get()).write({.opcode = 2}, {}), SysError);
}

TEST(HandshakeTest, SucceedsAndCarriesTheServerFlags) {
  SocketPair s;
  std::thread server([&] { serverHandshake(s.b.get(), kHelloReadOnly); });
  Hello hello = clientHandshake(s.a.get());
  EXPECT_EQ(hello.flags, kHelloReadOnly);
  server.join();
}

TEST(HandshakeTest, ServerRejectsWrongMagicAndTellsTheClient) {
  SocketPair s;
  WireWriter w;
  encodeHello(w, Hello{.magic = 0x12345678});
  FrameWriter(s.a.get()).write({.opcode = static_cast<uint16_t>(Opcode::kHello)}, w.buffer());
  EXPECT_THROW(serverHandshake(s.b.get()), ProtocolError);
  auto reply = FrameReader(s.a.get()).read();
  ASSERT_TRUE(reply);
  WireReader r(reply->payload);
  EXPECT_EQ(r.i32(), EPROTONOSUPPORT);
}

TEST(HandshakeTest, VersionMismatchFailsOnBothSides) {
  SocketPair s;
  std::thread client([&] {
    WireWriter w;
    encodeHello(w, Hello{.version = kProtocolVersion + 1});
    FrameWriter(s.a.get()).write({.opcode = static_cast<uint16_t>(Opcode::kHello)}, w.buffer());
  });
  EXPECT_THROW(serverHandshake(s.b.get()), ProtocolError);
  client.join();
}

TEST(HandshakeTest, FirstFrameMustBeHello) {
  SocketPair s;
  FrameWriter(s.a.get()).write({.opcode = static_cast<uint16_t>(Opcode::kLookup)}, {});
  EXPECT_THROW(serverHandshake(s.b.get()), ProtocolError);
}

TEST(HandshakeTest, OversizedHelloIsRejected) {
  SocketPair s;
  writeRaw(s.a.get(), rawHeader(65, static_cast<uint16_t>(Opcode::kHello), 0, 0));
  EXPECT_THROW(serverHandshake(s.b.get()), ProtocolError);
}

TEST(HandshakeTest, ClientFailsWhenServerHangsUp) {
  SocketPair s;
  s.b.reset();
  EXPECT_ANY_THROW(clientHandshake(s.a.get()));
}

TEST(HandshakeTest, ClientRejectsAMalformedReply) {
  SocketPair s;
  std::thread server([&] {
    FrameReader(s.b.get()).read();
    FrameWriter(s.b.get()).write(
        {.opcode = static_cast<uint16_t>(Opcode::kHello), .flags = kFrameReply}, {});
  });
  EXPECT_THROW(clientHandshake(s.a.get()), ProtocolError);
  server.join();
}

}  // namespace
}  // namespace fcvm::fusepipe
