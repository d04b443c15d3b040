#include "fuse-pipe/client_connection.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <future>

namespace fcvm::fusepipe {
namespace {

// A ClientConnection on one end of a socketpair; the test plays the server on the other end.
class ClientConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    server_.reset(fds[1]);
    connection_ = std::make_unique<ClientConnection>(UniqueFd(fds[0]));
  }

  // Sends a request whose completion fulfils the returned future with (errno, result u64).
  std::future<std::pair<Errno, uint64_t>> callForU64(Opcode opcode) {
    auto promise = std::make_shared<std::promise<std::pair<Errno, uint64_t>>>();
    auto future = promise->get_future();
    std::vector<uint8_t> payload = {static_cast<uint8_t>(opcode)};
    connection_->call(opcode, payload, [promise](Errno error, WireReader& result) {
      uint64_t value = error ? 0 : result.u64();
      promise->set_value({error, value});
    });
    return future;
  }

  Frame readRequest() {
    auto frame = FrameReader(server_.get(), kMaxFramePayload, 0).read();
    if (!frame) throw std::runtime_error("client closed the stream");
    return std::move(*frame);
  }

  void reply(const Frame& request, int32_t error, std::optional<uint64_t> value) {
    WireWriter w;
    w.i32(error);
    if (value) w.u64(*value);
    FrameWriter(server_.get())
        .write({.opcode = request.header.opcode,
                .flags = kFrameReply,
                .requestId = request.header.requestId},
               w.buffer());
  }

  UniqueFd server_;
  std::unique_ptr<ClientConnection> connection_;
};

TEST_F(ClientConnectionTest, OutOfOrderRepliesReachTheirCallers) {
  auto first = callForU64(Opcode::kGetattr);
  auto second = callForU64(Opcode::kStatfs);
  Frame a = readRequest();
  Frame b = readRequest();
  EXPECT_NE(a.header.requestId, b.header.requestId);
  reply(b, 0, 222);  // the second request is answered first
  EXPECT_EQ(second.get(), std::make_pair(Errno{0}, uint64_t{222}));
  reply(a, ENOENT, std::nullopt);
  EXPECT_EQ(first.get(), std::make_pair(Errno{ENOENT}, uint64_t{0}));
}

TEST_F(ClientConnectionTest, ServerHangupFailsPendingAndLaterCallsWithEio) {
  auto pending = callForU64(Opcode::kGetattr);
  readRequest();
  server_.reset();
  EXPECT_EQ(pending.get().first, EIO);
  auto later = callForU64(Opcode::kGetattr);
  EXPECT_EQ(later.get().first, EIO);
  EXPECT_FALSE(connection_->alive());
}

TEST_F(ClientConnectionTest, ReplyToAnUnknownRequestBreaksTheConnection) {
  auto pending = callForU64(Opcode::kGetattr);
  Frame request = readRequest();
  Frame bogus = request;
  bogus.header.requestId += 1000;
  reply(bogus, 0, 1);
  EXPECT_EQ(pending.get().first, EIO);
  EXPECT_FALSE(connection_->alive());
}

TEST_F(ClientConnectionTest, NegativeErrnoInAReplyBreaksTheConnection) {
  auto pending = callForU64(Opcode::kGetattr);
  Frame request = readRequest();
  reply(request, -5, std::nullopt);
  EXPECT_EQ(pending.get().first, EIO);
  EXPECT_FALSE(connection_->alive());
}

TEST_F(ClientConnectionTest, DeferredRequestsGoOutBeforeTheNextCall) {
  connection_->defer(Opcode::kForget, {1});
  connection_->defer(Opcode::kRelease, {2});
  auto pending = callForU64(Opcode::kStatfs);
  Frame forget = readRequest();
  EXPECT_EQ(forget.header.opcode, static_cast<uint16_t>(Opcode::kForget));
  EXPECT_EQ(forget.header.requestId, kNoReply);
  Frame release = readRequest();
  EXPECT_EQ(release.header.opcode, static_cast<uint16_t>(Opcode::kRelease));
  EXPECT_EQ(release.header.requestId, kNoReply);
  Frame statfs = readRequest();
  EXPECT_EQ(statfs.header.opcode, static_cast<uint16_t>(Opcode::kStatfs));
  reply(statfs, 0, 9);
  EXPECT_EQ(pending.get(), std::make_pair(Errno{0}, uint64_t{9}));
}

TEST_F(ClientConnectionTest, CloseCompletesPendingWithEio) {
  auto pending = callForU64(Opcode::kGetattr);
  readRequest();
  connection_->close();
  EXPECT_EQ(pending.get().first, EIO);
  EXPECT_EQ(callForU64(Opcode::kGetattr).get().first, EIO);
}

}  // namespace
}  // namespace fcvm::fusepipe
