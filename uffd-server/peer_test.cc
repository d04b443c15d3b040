// End to end: this process is the server (accept, readHandshake, a FaultHandler on its own thread
// in a poll loop) and firecracker_peer, a separate process that does what Firecracker does, is
// the client. The peer checks every page it reads against the image and exits 0 when all match.
#include <gtest/gtest.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <optional>
#include <thread>

#include "base/error.h"
#include "base/subprocess.h"
#include "uffd-server/fault_handler.h"
#include "uffd-server/memory_image.h"
#include "uffd-server/testing.h"
#include "uffd-server/uffd_handshake.h"

namespace fcvm::uffd {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 2048;  // 8 MiB
constexpr int kTimeoutMs = 60'000;

// What the server side saw of one peer.
struct Served {
  std::string error;       // the handshake's refusal, or a failure of the test's server
  std::string stopReason;  // the handler's, if it stopped
  bool peerExited = false;
  FaultStats stats;
};

class PeerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    try {
      testing::createUserfaultfd(UFFD_FEATURE_EVENT_REMOVE);
    } catch (const Error& e) {
      FAIL() << e.what();
    }
    testing::writeImage(imagePath_, kPages, kPage, 3);  // every third page a hole
    image_.emplace(MemoryImage::open(imagePath_, kPage));
    listener_ = testing::listenUnix(socketPath_);
  }

  // Serves one connection until the peer exits or the handler stops; a stopped handler's peer is
  // killed, as the real server must do.
  Served serveOnePeer() {
    Served served;
    try {
      pollfd accept{listener_.get(), POLLIN, 0};
      if (::poll(&accept, 1, kTimeoutMs) != 1) throw Error("the peer never connected");
      UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!connection) throw SysError(errno, "accept");
      Handshake handshake = readHandshake(connection.get(), image_->size(), kPage,
                                          std::chrono::milliseconds(kTimeoutMs));
      FaultHandler handler(*image_, std::move(handshake.regions), std::move(handshake.uffd));
      for (;;) {
        pollfd fds[2] = {{handler.fd(), POLLIN, 0}, {handshake.peerPidfd.get(), POLLIN, 0}};
        if (retryEintr([&] { return ::poll(fds, 2, kTimeoutMs); }) <= 0) {
          throw Error("the peer neither faulted nor exited in time");
        }
        if ((fds[0].revents & POLLIN) && !handler.handleEvents()) {
          ::syscall(SYS_pidfd_send_signal, handshake.peerPidfd.get(), SIGKILL, nullptr, 0);
          break;
        }
        if (fds[1].revents & POLLIN) {
          served.peerExited = true;
          break;
        }
      }
      served.stopReason = handler.stopReason();
      served.stats = handler.stats();
    } catch (const std::exception& e) {
      served.error = e.what();
    }
    return served;
  }

  // Runs firecracker_peer with `extra` arguments while this process serves it.
  std::pair<CommandResult, Served> runPeer(std::vector<std::string> extra) {
    std::vector<std::string> argv = {FIRECRACKER_PEER_BINARY, "--socket", socketPath_, "--image",
                                     imagePath_};
    argv.insert(argv.end(), extra.begin(), extra.end());
    Served served;
    std::thread server([&] { served = serveOnePeer(); });
    CommandResult result =
        runCommand(argv, CommandOptions::withTimeout(std::chrono::milliseconds(kTimeoutMs)));
    server.join();
    return {result, served};
  }

  testing::TempDir dir_;
  std::string imagePath_ = dir_ / "memory";
  std::string socketPath_ = dir_ / "uffd.sock";
  std::optional<MemoryImage> image_;
  UniqueFd listener_;
};

TEST_F(PeerTest, ServesAFirecrackerPeerThatChecksEveryPage) {
  auto [peer, served] = runPeer({"--regions", "2", "--threads", "4", "--dontneed", "32"});
  EXPECT_EQ(peer.exitCode, 0) << peer.output;
  EXPECT_EQ(served.error, "");
  EXPECT_EQ(served.stopReason, "");
  EXPECT_TRUE(served.peerExited);
  const FaultStats& s = served.stats;
  EXPECT_EQ(s.pagesCopied, kPages - kPages / 3 - (32 - 32 / 3)) << "data pages, except the removed "
                                                                   "ones never touched";
  EXPECT_GT(s.pagesZeroed, kPages / 3);  // holes, and removed pages read again
  EXPECT_GE(s.removeEvents, 2u);
}

TEST_F(PeerTest, AFaultOutsideTheDeclaredRegionsStopsServingThatPeer) {
  auto [peer, served] = runPeer({"--mode", "outside-fault"});
  EXPECT_EQ(peer.signal, SIGKILL) << peer.output;
  EXPECT_EQ(served.error, "");
  EXPECT_NE(served.stopReason.find("outside the regions the peer declared"), std::string::npos)
      << served.stopReason;
}

struct Malformed {
  const char* mode;
  const char* refusal;
};
void PrintTo(const Malformed& m, std::ostream* os) { *os << m.mode; }

class MalformedHandshakeTest : public PeerTest, public ::testing::WithParamInterface<Malformed> {};

TEST_P(MalformedHandshakeTest, IsRefusedAndThePeerHungUpOn) {
  auto [peer, served] = runPeer({"--mode", GetParam().mode});
  EXPECT_EQ(peer.exitCode, 0) << peer.output;
  EXPECT_NE(served.error.find(GetParam().refusal), std::string::npos) << served.error;
}

INSTANTIATE_TEST_SUITE_P(Modes, MalformedHandshakeTest,
                         ::testing::Values(Malformed{"bad-json", "not JSON"},
                                           Malformed{"overlap", "overlap in host addresses"},
                                           Malformed{"overflow", "base + size overflows"},
                                           Malformed{"no-fd", "missing userfaultfd"},
                                           Malformed{"page-size",
                                                     "page size 8192 but the snapshot's is 4096"}),
                         [](const auto& info) {
                           std::string name = info.param.mode;
                           std::erase(name, '-');
                           return name;
                         });

}  // namespace
}  // namespace fcvm::uffd
