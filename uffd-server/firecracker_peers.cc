#include "uffd-server/firecracker_peers.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/error.h"
#include "uffd-server/fault_handler.h"
#include "uffd-server/uffd_handshake.h"

namespace fcvm::uffd {
namespace {

constexpr auto kHandshakeDeadline = std::chrono::seconds(10);

}  // namespace

FirecrackerPeers::FirecrackerPeers(const MemoryImage& image, uid_t owner)
    : image_(image), owner_(owner), stop_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!stop_) throw SysError(errno, "eventfd");
}

FirecrackerPeers::~FirecrackerPeers() {
  uint64_t one = 1;
  if (::write(stop_.get(), &one, sizeof one) != sizeof one) {
    spdlog::error("could not tell the uffd peers to stop: {}", errnoText(errno));
  }
  std::lock_guard lock(mutex_);
  for (auto& peer : peers_) peer.thread.join();
}

void FirecrackerPeers::serve(UniqueFd connection) {
  std::lock_guard lock(mutex_);
  std::erase_if(peers_, [](Peer& peer) {
    if (!peer.done->load()) return false;
    peer.thread.join();
    return true;
  });
  auto done = std::make_shared<std::atomic<bool>>(false);
  std::thread thread([this, done, c = std::move(connection)]() mutable {
    run(std::move(c));
    done->store(true);
  });
  peers_.push_back({std::move(thread), std::move(done)});
}

void FirecrackerPeers::run(UniqueFd connection) {
  ++active_;
  try {
    auto handshake =
        readHandshake(connection.get(), image_.size(), image_.pageSize(), kHandshakeDeadline);
    if (handshake.peer.uid != 0 && handshake.peer.uid != owner_) {
      throw Error(fmt::format("uid {} may not use this snapshot", handshake.peer.uid));
    }
    spdlog::info("uffd peer pid {} (uid {}): serving {} regions", handshake.peer.pid,
                 handshake.peer.uid, handshake.regions.size());
    FaultHandler handler(image_, std::move(handshake.regions), std::move(handshake.uffd));
    uint64_t served = 0;
    for (;;) {
      pollfd fds[] = {{handler.fd(), POLLIN, 0},
                      {handshake.peerPidfd.get(), POLLIN, 0},
                      {stop_.get(), POLLIN, 0}};
      int n = retryEintr([&] { return ::poll(fds, 3, -1); });
      checkSys(n, "poll the uffd peer");
      if (fds[2].revents != 0) break;
      if (fds[0].revents != 0 && !handler.handleEvents()) {
        spdlog::warn("uffd peer pid {}: stopped serving: {}", handshake.peer.pid,
                     handler.stopReason());
        break;
      }
      auto now = handler.stats().pagesCopied + handler.stats().pagesZeroed;
      pagesServed_ += now - served;
      served = now;
      if (fds[1].revents != 0) {
        spdlog::info("uffd peer pid {} exited", handshake.peer.pid);
        break;
      }
    }
  } catch (const std::exception& e) {
    spdlog::warn("uffd peer refused: {}", e.what());
  }
  --active_;
}

}  // namespace fcvm::uffd
