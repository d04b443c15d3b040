// The host side of the agent channel against hostile and well-behaved peers over a socketpair.
// "FakeAgent" below is a protocol peer written for these tests (it frames messages the way
// fc-agent does); it is not the agent.
#include "worker/agent_channel.h"

#include <capnp/serialize-async.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <kj/async-io.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>
#include <random>

#include "ipc/agent.capnp.h"

namespace fcvm::worker {
namespace {

using agent::Message;

class AgentChannelTest : public ::testing::Test {
 protected:
  AgentChannelTest() : io_(kj::setupAsyncIo()) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
      throw std::runtime_error("socketpair failed");
    }
    channel_ = kj::heap<AgentChannel>(
        io_.lowLevelProvider->wrapSocketFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP),
        "test-host");
    peer_ = io_.lowLevelProvider->wrapSocketFd(fds[1], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    writer_ = kj::heap<agent::FrameWriter>(*peer_);
  }
  ~AgentChannelTest() noexcept override {}

  // The fake agent's side of the handshake: reads the host's hello, answers with `version`.
  void handshake(uint32_t version = agent::wire::PROTOCOL_VERSION) {
    auto hello = channel_->handshake();
    writer_->send(agent::Hello{version, "fake-agent"}).wait(ws());
    auto fromHost = agent::readMessage(*peer_).wait(ws());
    auto* m = (fromHost ? &*fromHost : nullptr);
    ASSERT_NE(m, nullptr);
    ASSERT_TRUE(std::holds_alternative<agent::Hello>(*m));
    EXPECT_EQ(std::get<agent::Hello>(*m).agentVersion, "test-host");
    auto got = hello.wait(ws());
    EXPECT_EQ(got.agentVersion, "fake-agent");
  }

  // What the fake agent receives next from the host.
  Message receiveOnPeer() {
    auto m = agent::readMessage(*peer_).wait(ws());
    auto* p = (m ? &*m : nullptr);
    if (p == nullptr) throw std::runtime_error("host closed the channel");
    return std::move(*p);
  }

  void sendRaw(kj::ArrayPtr<const kj::byte> bytes) {
    peer_->write(bytes.begin(), bytes.size()).wait(ws());
  }
  void sendRaw(const std::string& s) {
    sendRaw(kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size()));
  }
  void sendBuilt(capnp::MessageBuilder& builder) {
    capnp::writeMessage(*peer_, builder).wait(ws());
  }

  // Asserts that the host's next() rejects with a message containing `what`, and that the
  // channel then stays closed (the peer sees end of stream).
  void expectRejected(const std::string& what) {
    try {
      channel_->next().wait(ws());
      ADD_FAILURE() << "next() accepted a frame that should be rejected (" << what << ")";
    } catch (const kj::Exception& e) {
      std::string description = e.getDescription().cStr();
      EXPECT_NE(description.find("agent channel: "), std::string::npos) << description;
      EXPECT_NE(description.find(what), std::string::npos) << description;
    }
    EXPECT_FALSE(channel_->failure().empty());
    EXPECT_THROW(channel_->next().wait(ws()), kj::Exception);
    EXPECT_THROW(channel_->powerOff().wait(ws()), kj::Exception);
    // The host shut its side: the peer reads a clean end of stream.
    char c;
    EXPECT_EQ(peer_->tryRead(&c, 1, 1).wait(ws()), 0u);
  }

  // The fake agent reads frames until powerOff, counting stdin frames.
  kj::Promise<void> drainOnPeer(size_t* stdinFrames) {
    return agent::readMessage(*peer_).then([this, stdinFrames](std::optional<Message> m) {
      if (!m || std::holds_alternative<agent::PowerOff>(*m))
        return kj::Promise<void>(kj::READY_NOW);
      if (std::holds_alternative<agent::Stdin>(*m)) ++*stdinFrames;
      return drainOnPeer(stdinFrames);
    });
  }

  AgentEvent nextEvent() {
    auto e = channel_->next().wait(ws());
    auto* p = (e ? &*e : nullptr);
    if (p == nullptr) throw std::runtime_error("agent closed the channel");
    return std::move(*p);
  }

  void startContainer() {
    auto sent = channel_->runContainer(agent::RunPlan{.image = "img"});
    sent.wait(ws());
    ASSERT_TRUE(std::holds_alternative<agent::RunPlan>(receiveOnPeer()));
    writer_->send(agent::ContainerStarted{}).wait(ws());
    ASSERT_TRUE(std::holds_alternative<agent::ContainerStarted>(nextEvent()));
  }

  kj::WaitScope& ws() { return io_.waitScope; }

  kj::AsyncIoContext io_;
  kj::Own<AgentChannel> channel_;
  kj::Own<kj::AsyncIoStream> peer_;
  kj::Own<agent::FrameWriter> writer_;
};

// A one-segment frame header claiming `words` words.
std::string header(uint32_t segmentsMinusOne, uint32_t words) {
  std::string h(8, '\0');
  for (int i = 0; i < 4; ++i) {
    h[i] = static_cast<char>(segmentsMinusOne >> (8 * i));
    h[4 + i] = static_cast<char>(words >> (8 * i));
  }
  return h;
}

TEST_F(AgentChannelTest, HandshakeExchangesHellos) { handshake(); }

TEST_F(AgentChannelTest, VersionMismatchIsACleanError) {
  auto hello = channel_->handshake();
  writer_->send(agent::Hello{agent::wire::PROTOCOL_VERSION + 1, "future-agent"}).wait(ws());
  try {
    hello.wait(ws());
    ADD_FAILURE() << "mismatched version accepted";
  } catch (const kj::Exception& e) {
    auto expected = "protocol version " + std::to_string(agent::wire::PROTOCOL_VERSION + 1);
    EXPECT_NE(std::string(e.getDescription().cStr()).find(expected), std::string::npos)
        << e.getDescription().cStr();
  }
  EXPECT_THROW(channel_->powerOff().wait(ws()), kj::Exception);
}

TEST_F(AgentChannelTest, FirstMessageMustBeHello) {
  auto hello = channel_->handshake();
  writer_->send(agent::Log{"hi"}).wait(ws());
  EXPECT_THROW(hello.wait(ws()), kj::Exception);
  EXPECT_NE(channel_->failure().find("not hello"), std::string::npos) << channel_->failure();
}

TEST_F(AgentChannelTest, OversizedFrameRejectedBeforeItsBodyArrives) {
  handshake();
  sendRaw(header(0, agent::wire::MAX_FRAME_WORDS + 1));  // no body follows: must not wait for it
  expectRejected("frame too large");
}

TEST_F(AgentChannelTest, OversizedAcrossSegmentsRejected) {
  handshake();
  std::string frame =
      header(1, agent::wire::MAX_FRAME_WORDS) + header(0, 1).substr(4) + std::string(4, '\0');
  sendRaw(frame);
  expectRejected("frame too large");
}

TEST_F(AgentChannelTest, TooManySegmentsRejected) {
  handshake();
  sendRaw(header(0xFFFFFFFF, 1));
  expectRejected("too many segments");
}

TEST_F(AgentChannelTest, TruncatedFrameRejected) {
  handshake();
  sendRaw(header(0, 10) + std::string(24, '\0'));
  peer_->shutdownWrite();
  expectRejected("stream ended inside a frame");
}

TEST_F(AgentChannelTest, TruncatedHeaderRejected) {
  handshake();
  sendRaw(std::string(5, '\0'));
  peer_->shutdownWrite();
  expectRejected("stream ended inside a frame");
}

TEST_F(AgentChannelTest, UnknownUnionTagRejected) {
  handshake();
  capnp::MallocMessageBuilder builder;
  builder.initRoot<agent::wire::Message>().initLog().setLine("x");
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  // Frame: 8-byte table, root pointer (word 0), then Message's data section whose first 16 bits
  // are the union discriminant.
  ASSERT_EQ(bytes[16], static_cast<kj::byte>(agent::wire::Message::LOG));
  bytes[16] = 99;
  sendRaw(bytes);
  expectRejected("unknown message type");
}

TEST_F(AgentChannelTest, HostOnlyMessageFromAgentRejected) {
  handshake();
  writer_->send(agent::PowerOff{}).wait(ws());
  expectRejected("may not send: powerOff");
}

TEST_F(AgentChannelTest, SecondHelloRejected) {
  handshake();
  writer_->send(agent::Hello{agent::wire::PROTOCOL_VERSION, "again"}).wait(ws());
  expectRejected("may not send: hello");
}

TEST_F(AgentChannelTest, OutputForUnknownStreamRejected) {
  handshake();
  startContainer();
  writer_->send(agent::Output{7, agent::OutputKind::kStdout, "x"}).wait(ws());
  expectRejected("output for unknown stream 7");
}

TEST_F(AgentChannelTest, ContainerOutputBeforeStartRejected) {
  handshake();
  writer_->send(agent::Output{0, agent::OutputKind::kStdout, "x"}).wait(ws());
  expectRejected("output for unknown stream 0");
}

TEST_F(AgentChannelTest, ContainerStartedWithoutRunPlanRejected) {
  handshake();
  writer_->send(agent::ContainerStarted{}).wait(ws());
  expectRejected("unexpected containerStarted");
}

TEST_F(AgentChannelTest, ExitForUnknownStreamRejected) {
  handshake();
  writer_->send(agent::Exit{3, 0, 0}).wait(ws());
  expectRejected("exit for unknown stream 3");
}

TEST_F(AgentChannelTest, OutputAfterExitRejected) {
  handshake();
  startContainer();
  writer_->send(agent::Exit{0, 0, 0}).wait(ws());
  EXPECT_TRUE(std::holds_alternative<agent::Exit>(nextEvent()));
  writer_->send(agent::Output{0, agent::OutputKind::kStdout, "late"}).wait(ws());
  expectRejected("output for unknown stream 0");
}

TEST_F(AgentChannelTest, StderrOnTtyStreamRejected) {
  handshake();
  channel_->exec(agent::ExecRequest{.id = 5, .command = {"sh"}, .tty = true}).wait(ws());
  receiveOnPeer();
  writer_->send(agent::Output{5, agent::OutputKind::kStderr, "x"}).wait(ws());
  expectRejected("stderr output on tty stream 5");
}

TEST_F(AgentChannelTest, InvalidUtf8TextRejected) {
  handshake();
  capnp::MallocMessageBuilder builder;
  builder.initRoot<agent::wire::Message>().initLog().setLine("bad \xff\xfe text");
  sendBuilt(builder);
  expectRejected("not valid UTF-8");
}

TEST_F(AgentChannelTest, OverlongUtf8Rejected) {
  handshake();
  capnp::MallocMessageBuilder builder;
  builder.initRoot<agent::wire::Message>().initLog().setLine("\xc0\xaf");  // overlong '/'
  sendBuilt(builder);
  expectRejected("not valid UTF-8");
}

TEST_F(AgentChannelTest, NulInTextRejected) {
  handshake();
  capnp::MallocMessageBuilder builder;
  std::string withNul("a\0b", 3);
  builder.initRoot<agent::wire::Message>().initLog().setLine(
      capnp::Text::Reader(withNul.data(), 3));
  sendBuilt(builder);
  expectRejected("NUL in text field");
}

TEST_F(AgentChannelTest, OverlongTextRejected) {
  handshake();
  capnp::MallocMessageBuilder builder;
  std::string longLine(agent::wire::MAX_TEXT_BYTES + 1, 'a');
  builder.initRoot<agent::wire::Message>().initLog().setLine(longLine);
  sendBuilt(builder);
  expectRejected("text field too long");
}

TEST_F(AgentChannelTest, OversizedOutputDataRejected) {
  handshake();
  startContainer();
  capnp::MallocMessageBuilder builder;
  auto out = builder.initRoot<agent::wire::Message>().initOutput();
  out.setStreamId(0);
  out.initData(agent::wire::MAX_DATA_BYTES + 1);
  sendBuilt(builder);
  expectRejected("data field too long");
}

TEST_F(AgentChannelTest, EmptyOutputDataRejected) {
  handshake();
  startContainer();
  capnp::MallocMessageBuilder builder;
  builder.initRoot<agent::wire::Message>().initOutput().setStreamId(0);
  sendBuilt(builder);
  expectRejected("empty output data");
}

TEST_F(AgentChannelTest, UnknownEnumValueRejected) {
  handshake();
  startContainer();
  capnp::MallocMessageBuilder builder;
  auto out = builder.initRoot<agent::wire::Message>().initOutput();
  out.setStreamId(0);
  out.setKind(static_cast<agent::wire::OutputKind>(7));
  out.setData(kj::StringPtr("x").asBytes());
  sendBuilt(builder);
  expectRejected("unknown output kind");
}

TEST_F(AgentChannelTest, NestingBombRejected) {
  handshake();
  // A Log whose root pointer points at itself: traversal never ends without limits.
  std::string frame = header(0, 1);
  // struct pointer, offset -1 (points to itself), data 0 words, 1 pointer.
  uint64_t self = (uint64_t{0xFFFFFFFF} << 2 & 0xFFFFFFFCu) | (uint64_t{1} << 48);
  frame.append(reinterpret_cast<const char*>(&self), 8);
  sendRaw(frame);
  try {
    channel_->next().wait(ws());
    ADD_FAILURE() << "self-referencing frame accepted";
  } catch (const kj::Exception& e) {
    EXPECT_NE(std::string(e.getDescription().cStr()).find("agent channel: "), std::string::npos);
  }
}

TEST_F(AgentChannelTest, GarbageBytesRejected) {
  for (uint32_t seed = 0; seed < 64; ++seed) {
    SCOPED_TRACE(seed);
    // A fresh channel per seed: each garbage stream must close its channel.
    writer_ = nullptr;
    peer_ = nullptr;
    channel_ = nullptr;
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    channel_ = kj::heap<AgentChannel>(
        io_.lowLevelProvider->wrapSocketFd(fds[0], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP),
        "test-host");
    peer_ = io_.lowLevelProvider->wrapSocketFd(fds[1], kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    writer_ = kj::heap<agent::FrameWriter>(*peer_);
    handshake();

    std::mt19937 rng(seed);
    std::string garbage(4096, '\0');
    for (auto& c : garbage) c = static_cast<char>(rng());
    if (seed % 2 == 1) {
      // Half the seeds get a plausible header so the garbage reaches the decoder.
      garbage = header(0, 511) + garbage.substr(0, 511 * 8);
    }
    sendRaw(garbage);
    peer_->shutdownWrite();
    EXPECT_THROW(
        {
          // Whatever decodes must fail somewhere before end of stream: no valid event is
          // possible from random bytes in this state.
          for (;;) {
            auto e = channel_->next().wait(ws());
            if (!e) break;
          }
        },
        kj::Exception);
  }
}

TEST_F(AgentChannelTest, HostMessagesRoundTrip) {
  handshake();
  agent::RunPlan plan{.image = "localhost/busybox:latest",
                      .command = {"sh", "-c", "echo héllo"},
                      .env = {"A=1", "B=two"},
                      .user = "1000:1000",
                      .workdir = "/srv",
                      .privileged = true,
                      .volumes = {{"vol0", "/data", true}, {"vol1", "/rw", false}},
                      .network = agent::NetworkMode::kHost,
                      .clockRealtimeNs = 1'700'000'000'123'456'789};
  channel_->runContainer(plan).wait(ws());
  EXPECT_EQ(std::get<agent::RunPlan>(receiveOnPeer()), plan);

  agent::ExecRequest exec{.id = 9,
                          .inContainer = true,
                          .command = {"cat"},
                          .env = {"X=y"},
                          .tty = true,
                          .rows = 24,
                          .cols = 80,
                          .stdin = true};
  channel_->exec(exec).wait(ws());
  EXPECT_EQ(std::get<agent::ExecRequest>(receiveOnPeer()), exec);

  channel_->sendStdin(9, "input\n", false).wait(ws());
  EXPECT_EQ(std::get<agent::Stdin>(receiveOnPeer()), (agent::Stdin{9, "input\n", false}));
  channel_->sendStdin(9, "", true).wait(ws());
  EXPECT_EQ(std::get<agent::Stdin>(receiveOnPeer()), (agent::Stdin{9, "", true}));
  EXPECT_THROW(channel_->sendStdin(9, "after eof", false).wait(ws()), kj::Exception);

  channel_->resize(9, 50, 132).wait(ws());
  EXPECT_EQ(std::get<agent::WindowSize>(receiveOnPeer()), (agent::WindowSize{9, 50, 132}));
  channel_->setClock(42).wait(ws());
  EXPECT_EQ(std::get<agent::SetClock>(receiveOnPeer()), agent::SetClock{42});
  channel_->powerOff().wait(ws());
  EXPECT_TRUE(std::holds_alternative<agent::PowerOff>(receiveOnPeer()));
  // Local misuse is refused without closing the channel.
  EXPECT_THROW(channel_->exec(exec).wait(ws()), kj::Exception);
  EXPECT_THROW(channel_->resize(4, 1, 1).wait(ws()), kj::Exception);
  EXPECT_TRUE(channel_->failure().empty());
}

TEST_F(AgentChannelTest, AgentMessagesRoundTrip) {
  handshake();
  startContainer();
  channel_->exec(agent::ExecRequest{.id = 3, .command = {"ls"}}).wait(ws());
  receiveOnPeer();
  writer_->send(agent::Output{0, agent::OutputKind::kStdout, "out"}).wait(ws());
  writer_->send(agent::Output{3, agent::OutputKind::kStderr, std::string(65536, 'e')}).wait(ws());
  writer_->send(agent::Log{"agent says ✓"}).wait(ws());
  writer_->send(agent::Exit{3, 137, 9}).wait(ws());
  writer_->send(agent::Exit{0, 42, 0}).wait(ws());
  EXPECT_EQ(std::get<agent::Output>(nextEvent()),
            (agent::Output{0, agent::OutputKind::kStdout, "out"}));
  EXPECT_EQ(std::get<agent::Output>(nextEvent()),
            (agent::Output{3, agent::OutputKind::kStderr, std::string(65536, 'e')}));
  EXPECT_EQ(std::get<agent::Log>(nextEvent()).line, "agent says ✓");
  EXPECT_EQ(std::get<agent::Exit>(nextEvent()), (agent::Exit{3, 137, 9}));
  EXPECT_FALSE(channel_->isOpen(3));
  EXPECT_EQ(std::get<agent::Exit>(nextEvent()), (agent::Exit{0, 42, 0}));
  peer_->shutdownWrite();
  EXPECT_FALSE(channel_->next().wait(ws()).has_value());
}

TEST_F(AgentChannelTest, StdinAcksAreConsumedByTheChannel) {
  handshake();
  channel_->exec(agent::ExecRequest{.id = 2, .command = {"cat"}, .stdin = true}).wait(ws());
  receiveOnPeer();
  channel_->sendStdin(2, "0123456789", false).wait(ws());
  receiveOnPeer();
  writer_->send(agent::StdinAck{2, 10}).wait(ws());
  writer_->send(agent::Log{"after ack"}).wait(ws());
  EXPECT_EQ(std::get<agent::Log>(nextEvent()).line, "after ack");
}

TEST_F(AgentChannelTest, StdinWaitsForTheWindow) {
  handshake();
  channel_->exec(agent::ExecRequest{.id = 2, .command = {"cat"}, .stdin = true}).wait(ws());
  receiveOnPeer();
  const std::string chunk(agent::wire::MAX_DATA_BYTES, 'c');
  constexpr int kChunksInWindow = agent::wire::STDIN_WINDOW_BYTES / agent::wire::MAX_DATA_BYTES;
  // The fake agent reads everything the host sends, as it arrives.
  size_t stdinFrames = 0;
  auto drain = drainOnPeer(&stdinFrames).eagerlyEvaluate(nullptr);
  for (int i = 0; i < kChunksInWindow; ++i) channel_->sendStdin(2, chunk, false).wait(ws());
  auto beyond = channel_->sendStdin(2, chunk, false);
  EXPECT_FALSE(beyond.poll(ws()));  // the window is full: nothing more goes out
  EXPECT_EQ(stdinFrames, static_cast<size_t>(kChunksInWindow));
  auto reader = channel_->next().eagerlyEvaluate(nullptr);
  writer_->send(agent::StdinAck{2, static_cast<uint32_t>(chunk.size())}).wait(ws());
  beyond.wait(ws());  // the ack, read by next(), opened the window
  writer_->send(agent::Log{"done"}).wait(ws());
  auto event = reader.wait(ws());
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(std::get<agent::Log>(*event).line, "done");
  channel_->powerOff().wait(ws());  // ends the drain
  drain.wait(ws());
  EXPECT_EQ(stdinFrames, static_cast<size_t>(kChunksInWindow + 1));
}

TEST_F(AgentChannelTest, StdinWaitingForTheWindowFailsWhenTheStreamExits) {
  handshake();
  channel_->exec(agent::ExecRequest{.id = 2, .command = {"cat"}, .stdin = true}).wait(ws());
  receiveOnPeer();
  const std::string chunk(agent::wire::MAX_DATA_BYTES, 'c');
  constexpr int kChunksInWindow = agent::wire::STDIN_WINDOW_BYTES / agent::wire::MAX_DATA_BYTES;
  size_t stdinFrames = 0;
  auto drain = drainOnPeer(&stdinFrames).eagerlyEvaluate(nullptr);
  for (int i = 0; i < kChunksInWindow; ++i) channel_->sendStdin(2, chunk, false).wait(ws());
  auto beyond = channel_->sendStdin(2, chunk, false);
  writer_->send(agent::Exit{2, 0, 0}).wait(ws());
  EXPECT_TRUE(std::holds_alternative<agent::Exit>(nextEvent()));
  EXPECT_THROW(beyond.wait(ws()), kj::Exception);
  EXPECT_TRUE(channel_->failure().empty());
}

TEST_F(AgentChannelTest, AckForMoreThanSentRejected) {
  handshake();
  channel_->exec(agent::ExecRequest{.id = 2, .command = {"cat"}, .stdin = true}).wait(ws());
  receiveOnPeer();
  channel_->sendStdin(2, "abc", false).wait(ws());
  receiveOnPeer();
  writer_->send(agent::StdinAck{2, 4}).wait(ws());
  expectRejected("stdinAck for more bytes than sent on stream 2");
}

TEST_F(AgentChannelTest, AckForUnknownStreamRejected) {
  handshake();
  writer_->send(agent::StdinAck{6, 1}).wait(ws());
  expectRejected("stdinAck for unknown stream 6");
}

uint64_t fnv1a(uint64_t hash, std::string_view data) {
  for (unsigned char c : data) hash = (hash ^ c) * 0x100000001b3ULL;
  return hash;
}

TEST_F(AgentChannelTest, HundredMegabytesOfOutputArriveIntact) {
  handshake();
  startContainer();
  static constexpr size_t kTotal = 100u << 20;
  static constexpr size_t kChunk = agent::wire::MAX_DATA_BYTES;
  std::mt19937_64 rng(7);
  uint64_t sentHash = 0xcbf29ce484222325ULL;
  // The fake agent writes every chunk as the host reads: both ends share this event loop, and
  // the socket's buffer gives back-pressure.
  auto produce =
      kj::evalLater([&]() -> kj::Promise<void> {
        auto sendFrom = kj::heap<std::function<kj::Promise<void>(size_t)>>();
        auto& loop = *sendFrom;
        loop = [&](size_t offset) -> kj::Promise<void> {
          if (offset >= kTotal) return writer_->send(agent::Exit{0, 0, 0});
          std::string chunk(std::min(kChunk, kTotal - offset), '\0');
          for (size_t i = 0; i + 8 <= chunk.size(); i += 8) {
            uint64_t r = rng();
            std::memcpy(&chunk[i], &r, 8);
          }
          sentHash = fnv1a(sentHash, chunk);
          return writer_->send(agent::Output{0, agent::OutputKind::kStdout, std::move(chunk)})
              .then([&loop, offset]() { return loop(offset + kChunk); });
        };
        return loop(0).attach(kj::mv(sendFrom));
      }).eagerlyEvaluate(nullptr);

  uint64_t receivedHash = 0xcbf29ce484222325ULL;
  size_t received = 0;
  for (;;) {
    auto event = nextEvent();
    if (auto* out = std::get_if<agent::Output>(&event)) {
      received += out->data.size();
      receivedHash = fnv1a(receivedHash, out->data);
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<agent::Exit>(event));
    break;
  }
  produce.wait(ws());
  EXPECT_EQ(received, kTotal);
  EXPECT_EQ(receivedHash, sentHash);
}

}  // namespace
}  // namespace fcvm::worker
