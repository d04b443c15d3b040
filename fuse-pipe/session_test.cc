#include "fuse-pipe/session.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "fuse-pipe/passthrough_fs.h"
#include "fuse-pipe/test_util.h"

namespace fcvm::fusepipe {
namespace {

// A server Session on one end of a socketpair, running on its own thread, and a raw client on
// the other end.
class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directory(tmp_ / "root");
    fs_ = std::make_unique<PassthroughFs>(tmp_ / "root", PassthroughOptions{});
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    client_.reset(fds[0]);
    session_ = std::make_unique<Session>(UniqueFd(fds[1]), *fs_, SessionOptions{.workers = 4});
    server_ = std::thread([this] { session_->run(); });
  }

  void TearDown() override {
    session_->stop();
    server_.join();
  }

  void send(Opcode opcode, uint64_t id, const std::function<void(WireWriter&)>& body) {
    WireWriter w;
    encodeCredentials(
        w, Credentials{.uid = ::getuid(), .gid = ::getgid(), .pid = 1, .umask = 022, .groups = {}});
    body(w);
    FrameWriter(client_.get())
        .write({.opcode = static_cast<uint16_t>(opcode), .requestId = id}, w.buffer());
  }

  // The server's inode of root/NAME, looked up with request id `id`; throws on failure.
  InodeId lookupInRoot(const std::string& name, uint64_t id) {
    send(Opcode::kLookup, id, [&](WireWriter& w) {
      w.u64(kRootInode.value);
      w.string(name);
    });
    Frame looked = receive();
    WireReader r(looked.payload);
    if (r.i32() != 0) throw std::runtime_error("lookup of " + name + " failed");
    return decodeEntry(r).inode;
  }

  // A read-only handle of `inode`, opened with request id `id`; throws on failure.
  uint64_t openReadOnly(InodeId inode, uint64_t id) {
    send(Opcode::kOpen, id, [&](WireWriter& w) {
      w.u64(inode.value);
      w.u32(O_RDONLY);
    });
    Frame opened = receive();
    WireReader r(opened.payload);
    if (r.i32() != 0) throw std::runtime_error("open failed");
    return r.u64();
  }

  Frame receive() {
    auto frame = FrameReader(client_.get(), kMaxFramePayload, 0).read();
    if (!frame) throw std::runtime_error("server closed the stream");
    return std::move(*frame);
  }

  // True once the server has closed its end (read sees end of stream).
  bool serverClosed() {
    try {
      return !FrameReader(client_.get(), kMaxFramePayload, 0).read().has_value();
    } catch (const std::exception&) {
      return true;
    }
  }

  testing::TempDir tmp_;
  std::unique_ptr<PassthroughFs> fs_;
  UniqueFd client_;
  std::unique_ptr<Session> session_;
  std::thread server_;
};

TEST_F(SessionTest, AnswersLookupAfterHandshake) {
  clientHandshake(client_.get());
  std::ofstream(tmp_ / "root/hello") << "hi";
  send(Opcode::kLookup, 7, [](WireWriter& w) {
    w.u64(kRootInode.value);
    w.string("hello");
  });
  Frame reply = receive();
  EXPECT_EQ(reply.header.requestId, 7u);
  EXPECT_EQ(reply.header.flags, kFrameReply);
  EXPECT_EQ(reply.header.opcode, static_cast<uint16_t>(Opcode::kLookup));
  WireReader r(reply.payload);
  ASSERT_EQ(r.i32(), 0);
  Entry entry = decodeEntry(r);
  EXPECT_TRUE(r.finish());
  EXPECT_EQ(entry.attr.size, 2u);
}

// Ignores SIGIO, which the kernel sends the holder of a lease that is being broken, for the
// object's lifetime.
class IgnoredSigio {
 public:
  IgnoredSigio() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigaction(SIGIO, &ignore, &previous_);
  }
  ~IgnoredSigio() { ::sigaction(SIGIO, &previous_, nullptr); }
  IgnoredSigio(const IgnoredSigio&) = delete;
  IgnoredSigio& operator=(const IgnoredSigio&) = delete;

 private:
  struct sigaction previous_ {};
};

// A request that waits (a truncate breaking a host process's lease) must not hold up a later one:
// the later one is answered first, the truncate once the lease is given up. Deterministic: the
// lease decides. Leases are on by default (fs.leases-enable) on every filesystem that has them.
TEST_F(SessionTest, RepliesAreSentInCompletionOrder) {
  clientHandshake(client_.get());
  std::ofstream(tmp_ / "root/leased") << "data";
  const InodeId file = lookupInRoot("leased", 1);

  // A read lease held here makes the server's truncate wait until it is given up: a request that
  // takes as long as the test wants.
  IgnoredSigio ignored;
  UniqueFd leaseHolder(::open((tmp_ / "root/leased").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(leaseHolder);
  ASSERT_EQ(::fcntl(leaseHolder.get(), F_SETLEASE, F_RDLCK), 0) << std::strerror(errno);
  send(Opcode::kSetattr, 100, [&](WireWriter& w) {
    w.u64(file.value);
    w.u32(kSetSize);
    w.u8(0);  // no handle
    w.u64(0);
    w.u32(0);  // mode, uid, gid
    w.u32(0);
    w.u32(0);
    w.u64(1);  // size
    w.i64(0);  // atime, mtime
    w.u32(0);
    w.i64(0);
    w.u32(0);
  });
  // Until the lease is given up (after the reply to 101 arrived), the truncate cannot finish: a
  // server that took requests one at a time would answer neither until the lease timed out.
  send(Opcode::kGetattr, 101, [](WireWriter& w) {
    w.u64(kRootInode.value);
    w.u8(0);
    w.u64(0);
  });
  Frame first = receive();
  EXPECT_EQ(first.header.requestId, 101u);
  ASSERT_EQ(::fcntl(leaseHolder.get(), F_SETLEASE, F_UNLCK), 0);
  Frame second = receive();
  EXPECT_EQ(second.header.requestId, 100u);
  WireReader r(second.payload);
  EXPECT_EQ(r.i32(), 0);
  EXPECT_EQ(std::filesystem::file_size(tmp_ / "root/leased"), 1u);
}

TEST_F(SessionTest, RequestsWithoutAnIdGetNoReply) {
  clientHandshake(client_.get());
  std::ofstream(tmp_ / "root/f") << "x";
  const InodeId inode = lookupInRoot("f", 1);
  const uint64_t handle = openReadOnly(inode, 2);
  // Released without a reply; a release of an unknown handle fails silently just the same. The
  // next frame the server sends answers the request after them.
  send(Opcode::kRelease, kNoReply, [&](WireWriter& w) { w.u64(handle); });
  send(Opcode::kRelease, kNoReply, [&](WireWriter& w) { w.u64(handle + 100); });
  send(Opcode::kStatfs, 3, [](WireWriter& w) { w.u64(kRootInode.value); });
  Frame statfs = receive();
  EXPECT_EQ(statfs.header.requestId, 3u);
  WireReader sr(statfs.payload);
  EXPECT_EQ(sr.i32(), 0);
}

TEST_F(SessionTest, ManyRequestsInFlightAllGetTheirReplies) {
  clientHandshake(client_.get());
  constexpr uint64_t kCount = 500;
  std::thread sender([&] {
    for (uint64_t id = 1; id <= kCount; ++id) {
      send(Opcode::kGetattr, id, [](WireWriter& w) {
        w.u64(kRootInode.value);
        w.u8(0);
        w.u64(0);
      });
    }
  });
  std::vector<bool> seen(kCount + 1);
  for (uint64_t i = 0; i < kCount; ++i) {
    Frame reply = receive();
    ASSERT_GE(reply.header.requestId, 1u);
    ASSERT_LE(reply.header.requestId, kCount);
    EXPECT_FALSE(seen[reply.header.requestId]);
    seen[reply.header.requestId] = true;
  }
  sender.join();
}

TEST_F(SessionTest, OversizedFrameClosesTheConnection) {
  clientHandshake(client_.get());
  uint8_t raw[kFrameHeaderSize];
  encodeFrameHeader({.payloadLength = kMaxFramePayload + 1, .opcode = 2, .requestId = 1}, raw);
  ASSERT_EQ(::write(client_.get(), raw, sizeof raw), static_cast<ssize_t>(sizeof raw));
  EXPECT_TRUE(serverClosed());
}

TEST_F(SessionTest, FrameWithReplyFlagClosesTheConnection) {
  clientHandshake(client_.get());
  FrameWriter(client_.get()).write({.opcode = 2, .flags = kFrameReply, .requestId = 1}, {});
  EXPECT_TRUE(serverClosed());
}

TEST_F(SessionTest, GarbageInsteadOfHandshakeClosesTheConnection) {
  std::vector<uint8_t> garbage(64, 0x41);
  ASSERT_EQ(::write(client_.get(), garbage.data(), garbage.size()),
            static_cast<ssize_t>(garbage.size()));
  EXPECT_TRUE(serverClosed());
}

TEST_F(SessionTest, TruncatedFrameThenHangupEndsTheSession) {
  clientHandshake(client_.get());
  uint8_t raw[kFrameHeaderSize];
  encodeFrameHeader({.payloadLength = 100, .opcode = 2, .requestId = 1}, raw);
  ASSERT_EQ(::write(client_.get(), raw, sizeof raw), static_cast<ssize_t>(sizeof raw));
  ::shutdown(client_.get(), SHUT_WR);
  EXPECT_TRUE(serverClosed());
}

TEST_F(SessionTest, MalformedBodyGetsAnErrorReplyAndTheSessionGoesOn) {
  clientHandshake(client_.get());
  FrameWriter(client_.get())
      .write({.opcode = static_cast<uint16_t>(Opcode::kLookup), .requestId = 5},
             std::vector<uint8_t>{1, 2, 3});
  Frame bad = receive();
  EXPECT_EQ(bad.header.requestId, 5u);
  WireReader r(bad.payload);
  EXPECT_EQ(r.i32(), EPROTO);
  FrameWriter(client_.get()).write({.opcode = 4242, .requestId = 6}, {});
  Frame unknown = receive();
  WireReader u(unknown.payload);
  EXPECT_EQ(u.i32(), ENOSYS);
  send(Opcode::kStatfs, 8, [](WireWriter& w) { w.u64(kRootInode.value); });
  Frame ok = receive();
  WireReader o(ok.payload);
  EXPECT_EQ(o.i32(), 0);
}

TEST_F(SessionTest, ClientHangupReleasesEverything) {
  clientHandshake(client_.get());
  std::ofstream(tmp_ / "root/f") << "x";
  send(Opcode::kLookup, 1, [](WireWriter& w) {
    w.u64(kRootInode.value);
    w.string("f");
  });
  receive();
  send(Opcode::kOpen, 2, [](WireWriter& w) {
    w.u64(2);
    w.u32(O_RDONLY);
  });
  receive();
  EXPECT_EQ(fs_->openFileCount(), 1u);
  client_.reset();
  server_.join();  // run() returns on its own once the client is gone
  server_ = std::thread([] {});
  EXPECT_EQ(fs_->openFileCount(), 1u);  // handles belong to the filesystem of this session...
  fs_.reset();                          // ...and go with it
}

TEST_F(SessionTest, BlockingLockWaitsDoNotHoldWorkersAndInterruptsCancelThem) {
  clientHandshake(client_.get());
  std::ofstream(tmp_ / "root/f") << "x";
  UniqueFd onHost(::open((tmp_ / "root/f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::flock(onHost.get(), LOCK_EX), 0);
  const InodeId inode = lookupInRoot("f", 1);
  // More blocked requests than there are workers, each on its own open file.
  constexpr uint64_t kWaiters = 6;
  for (uint64_t i = 0; i < kWaiters; ++i) {
    const uint64_t handle = openReadOnly(inode, 100 + i);
    send(Opcode::kFlock, 200 + i, [&](WireWriter& w) {
      w.u64(handle);
      w.u32(LOCK_EX);
    });
  }
  // The workers still answer.
  send(Opcode::kStatfs, 300, [](WireWriter& w) { w.u64(kRootInode.value); });
  Frame statfs = receive();
  EXPECT_EQ(statfs.header.requestId, 300u);
  // Interrupts for unknown ids are ignored; each real one gets its request answered EINTR.
  send(Opcode::kInterrupt, 0, [](WireWriter& w) { w.u64(999); });
  std::set<uint64_t> answered;
  for (uint64_t i = 0; i < kWaiters; ++i) {
    send(Opcode::kInterrupt, 0, [&](WireWriter& w) { w.u64(200 + i); });
    Frame reply = receive();
    WireReader r(reply.payload);
    EXPECT_EQ(r.i32(), EINTR);
    answered.insert(reply.header.requestId);
  }
  EXPECT_EQ(answered.size(), kWaiters);
  EXPECT_EQ(*answered.begin(), 200u);
}

TEST_F(SessionTest, TheEndOfTheStreamCancelsBlockedRequests) {
  clientHandshake(client_.get());
  std::ofstream(tmp_ / "root/f") << "x";
  UniqueFd onHost(::open((tmp_ / "root/f").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::flock(onHost.get(), LOCK_EX), 0);
  const InodeId inode = lookupInRoot("f", 1);
  const uint64_t handle = openReadOnly(inode, 2);
  send(Opcode::kFlock, 3, [&](WireWriter& w) {
    w.u64(handle);
    w.u32(LOCK_EX);
  });
  client_.reset();  // the client goes away; run() must return (TearDown joins it)
  server_.join();
  server_ = std::thread([] {});
}

}  // namespace
}  // namespace fcvm::fusepipe
