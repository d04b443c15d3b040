// Serves one peer's userfaultfd (one Firecracker restored from the snapshot) from a MemoryImage.
//
// Events, as Firecracker asks for them (it calls UFFDIO_API itself, with UFFD_FEATURE_EVENT_REMOVE
// only, and registers its regions with UFFDIO_REGISTER_MODE_MISSING):
//  - PAGEFAULT: the page is copied from the image (UFFDIO_COPY), or answered with a zero page
//    (UFFDIO_ZEROPAGE, or a copy of zeros for huge pages) when the image has a hole there or when
//    the page's image content was used up already (see REMOVE).
//  - REMOVE (madvise(MADV_DONTNEED), e.g. balloon inflation): the pages' image content is used up;
//    the next fault there reads zeros, as anonymous memory would. A page that is served once and
//    faults again without a REMOVE was dropped some other way (MADV_FREE), so it reads zeros too.
//    All REMOVEs read in a batch are applied before its faults are served, and a copy refused
//    with EAGAIN (a REMOVE is in flight) is retried after reading again, as the kernel requires.
//  - FORK, REMAP, UNMAP: Firecracker never enables them; a peer that did is refused (a FORK's new
//    userfaultfd, which the kernel installs in this process on read, is closed at once).
// A peer is refused, and served no more, when it faults outside the regions it declared, asks for
// write-protect or minor faults, or its userfaultfd misbehaves. handleEvents() never throws for
// what a peer does; it throws fcvm::Error only for failures of this process.
//
// Peer death: verified on Linux 6.18, a userfaultfd whose process has exited shows nothing (poll
// reports no event, read gives EAGAIN); only a copy for a fault read before the death fails, with
// ESRCH, which stops the handler. Watch Handshake::peerPidfd to learn of the exit. After a stop,
// kill the peer: its unserved faults hang while it holds its own copy of the userfaultfd (as
// Firecracker does), and would silently read as zeros once every copy is closed.
#pragma once

#include <linux/userfaultfd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "uffd-server/mapping.h"
#include "uffd-server/memory_image.h"
#include "uffd-server/uffd_handshake.h"

namespace fcvm::uffd {

struct FaultStats {
  uint64_t pagesCopied = 0;          // from the image
  uint64_t pagesZeroed = 0;          // holes, removed pages, pages dropped since served
  uint64_t pagesAlreadyPresent = 0;  // EEXIST: another fault on the same page was served first
  uint64_t removeEvents = 0;
  uint64_t copyRetries = 0;  // EAGAIN: a REMOVE was in flight
};

class FaultHandler {
 public:
  // `regions` as decodeHandshake returned them for this image (sorted, disjoint, inside it);
  // throws fcvm::Error when they are not. `image` must outlive the handler.
  FaultHandler(const MemoryImage& image, std::vector<GuestRegion> regions, UniqueFd uffd);

  // The non-blocking userfaultfd: poll it for POLLIN, then call handleEvents().
  int fd() const { return uffd_.get(); }

  // Reads every pending event and serves it. Returns false once the handler has stopped (see
  // stopReason()); it then serves nothing more. May spin briefly (sched_yield) while the kernel
  // finishes a REMOVE that made a copy fail with EAGAIN.
  bool handleEvents();

  bool stopped() const { return !stopReason_.empty(); }
  const std::string& stopReason() const { return stopReason_; }
  const FaultStats& stats() const { return stats_; }  // on the thread that calls handleEvents

 private:
  enum class Outcome { kServed, kRetry, kStop };

  // Reads until EAGAIN; faults go to `faults`, other events are applied at once. False on stop.
  bool readEvents(std::vector<uffd_msg>& faults);
  Outcome serveFault(const uffd_msg& msg);
  void applyRemove(uint64_t start, uint64_t end);
  // UFFDIO_COPY of `source`, or a zero page when source is null; returns 0 or an errno.
  int place(uint64_t address, const std::byte* source);
  const GuestRegion* regionOf(uint64_t address) const;
  bool stop(std::string reason);

  // Constant after construction.
  const MemoryImage& image_;
  const std::vector<GuestRegion> regions_;  // sorted by base, disjoint
  const UniqueFd uffd_;
  const uint64_t pageSize_;
  const bool zeropageWorks_;  // UFFDIO_ZEROPAGE exists for base pages only, not huge pages
  Mapping zeros_;             // a page of zeros to copy where UFFDIO_ZEROPAGE does not work

  std::vector<bool> usedUp_;  // per image page: served or removed, so it now reads as zeros
  FaultStats stats_;
  std::string stopReason_;
};

}  // namespace fcvm::uffd
