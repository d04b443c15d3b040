// Firecracker's side of a served snapshot: each connection on the uffd socket is one Firecracker
// process (its `Uffd` memory backend) that sends the handshake and then faults pages in. Each is
// served on a thread of its own, so a slow or hostile peer stalls nobody else: the handshake has
// a deadline, only root and the snapshot's owner are served (SO_PEERCRED), and a peer that breaks
// the protocol is dropped (and its faults would stay unserved: Firecracker then hangs alone).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "uffd-server/memory_image.h"

namespace fcvm::uffd {

class FirecrackerPeers {
 public:
  // `image` must outlive this object.
  FirecrackerPeers(const MemoryImage& image, uid_t owner);
  // Stops serving every peer and joins their threads.
  ~FirecrackerPeers();
  FirecrackerPeers(const FirecrackerPeers&) = delete;
  FirecrackerPeers& operator=(const FirecrackerPeers&) = delete;

  // Serves one accepted connection (blocking or not) on a new thread.
  void serve(UniqueFd connection);

  uint32_t active() const { return active_.load(); }
  uint64_t pagesServed() const { return pagesServed_.load(); }

 private:
  void run(UniqueFd connection);

  const MemoryImage& image_;
  const uid_t owner_;
  UniqueFd stop_;  // an eventfd: readable once every peer must stop
  std::atomic<uint32_t> active_{0};
  std::atomic<uint64_t> pagesServed_{0};
  struct Peer {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::mutex mutex_;         // guards peers_
  std::vector<Peer> peers_;  // finished ones are joined when the next one comes
};

}  // namespace fcvm::uffd
