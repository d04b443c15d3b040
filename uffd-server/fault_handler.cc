#include "uffd-server/fault_handler.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>

#include "base/error.h"

namespace fcvm::uffd {
namespace {

constexpr std::chrono::seconds kRetryLimit{5};

const char* eventName(uint8_t event) {
  switch (event) {
    case UFFD_EVENT_FORK:
      return "fork (UFFD_FEATURE_EVENT_FORK)";
    case UFFD_EVENT_REMAP:
      return "mremap of guest memory (UFFD_FEATURE_EVENT_REMAP)";
    case UFFD_EVENT_UNMAP:
      return "munmap of guest memory (UFFD_FEATURE_EVENT_UNMAP)";
    default:
      return "unknown event";
  }
}

}  // namespace

FaultHandler::FaultHandler(const MemoryImage& image, std::vector<GuestRegion> regions,
                           UniqueFd uffd)
    : image_(image),
      regions_(std::move(regions)),
      uffd_(std::move(uffd)),
      pageSize_(image.pageSize()),
      zeropageWorks_(pageSize_ == static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))),
      usedUp_(image.size() / image.pageSize()) {
  // decodeHandshake guarantees these; the page index into usedUp_ relies on them.
  for (size_t i = 0; i < regions_.size(); ++i) {
    const GuestRegion& r = regions_[i];
    const bool fits = r.pageSize == pageSize_ && r.offset % pageSize_ == 0 &&
                      r.size <= image.size() && r.offset <= image.size() - r.size;
    const bool sorted = i == 0 || regions_[i - 1].base + regions_[i - 1].size <= r.base;
    if (!fits || !sorted) {
      throw Error(fmt::format("uffd region {:#x}+{:#x} (page size {}) is not one of image {}",
                              r.base, r.size, r.pageSize, image.name()));
    }
  }
  if (!zeropageWorks_) {
    // Never written, so every read of it sees zeros without using memory.
    zeros_ = Mapping(pageSize_, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
                     "zero page source");
  }
}

bool FaultHandler::stop(std::string reason) {
  if (stopReason_.empty()) stopReason_ = std::move(reason);
  return false;
}

bool FaultHandler::handleEvents() {
  if (stopped()) return false;
  std::vector<uffd_msg> faults;
  auto lastProgress = std::chrono::steady_clock::now();
  for (;;) {
    const size_t pending = faults.size();
    const uint64_t removes = stats_.removeEvents;
    if (!readEvents(faults)) return false;
    const bool readNew = faults.size() != pending || stats_.removeEvents != removes;
    size_t done = 0;
    Outcome outcome = Outcome::kServed;
    while (done < faults.size() && (outcome = serveFault(faults[done])) == Outcome::kServed) ++done;
    if (outcome == Outcome::kStop) return false;
    faults.erase(faults.begin(), faults.begin() + static_cast<ptrdiff_t>(done));
    if (faults.empty()) return true;
    // A REMOVE is pending or its madvise has not returned yet (the kernel refuses copies until
    // then): read again, let that thread run, retry. Only a kernel that never lets go ends this.
    const auto now = std::chrono::steady_clock::now();
    if (done > 0 || readNew) lastProgress = now;
    if (now - lastProgress > kRetryLimit) {
      return stop(fmt::format("copies refused with EAGAIN for {} s", kRetryLimit.count()));
    }
    ++stats_.copyRetries;
    ::sched_yield();
  }
}

bool FaultHandler::readEvents(std::vector<uffd_msg>& faults) {
  std::array<uffd_msg, 32> batch;
  for (;;) {
    const ssize_t n = ::read(uffd_.get(), batch.data(), sizeof batch);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n < 0 && errno == EINVAL) return stop("the peer's userfaultfd is not initialised");
    if (n < 0) return stop("read userfaultfd: " + errnoText(errno));
    if (n == 0 || n % sizeof(uffd_msg) != 0) return stop("short read from the userfaultfd");
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(uffd_msg); ++i) {
      const uffd_msg& msg = batch[i];
      if (msg.event == UFFD_EVENT_PAGEFAULT) {
        faults.push_back(msg);
      } else if (msg.event == UFFD_EVENT_REMOVE) {
        ++stats_.removeEvents;
        applyRemove(msg.arg.remove.start, msg.arg.remove.end);
      } else {
        // A fork event has installed the child's new userfaultfd in this process: close it.
        UniqueFd forked(msg.event == UFFD_EVENT_FORK ? static_cast<int>(msg.arg.fork.ufd) : -1);
        stop(fmt::format("the peer's userfaultfd reported {}", eventName(msg.event)));
      }
    }
    if (stopped()) return false;
  }
}

void FaultHandler::applyRemove(uint64_t start, uint64_t end) {
  // Only the parts inside declared regions matter; the kernel reports page-aligned ranges.
  for (const GuestRegion& r : regions_) {
    const uint64_t from = std::max(start, r.base);
    const uint64_t to = std::min(end, r.base + r.size);
    for (uint64_t a = from - from % pageSize_; a < to; a += pageSize_) {
      usedUp_[(r.offset + (a - r.base)) / pageSize_] = true;
    }
  }
}

const GuestRegion* FaultHandler::regionOf(uint64_t address) const {
  auto it = std::upper_bound(regions_.begin(), regions_.end(), address,
                             [](uint64_t a, const GuestRegion& r) { return a < r.base; });
  if (it == regions_.begin()) return nullptr;
  --it;
  return address - it->base < it->size ? &*it : nullptr;
}

FaultHandler::Outcome FaultHandler::serveFault(const uffd_msg& msg) {
  const uint64_t flags = msg.arg.pagefault.flags;
  if (flags & (UFFD_PAGEFAULT_FLAG_WP | UFFD_PAGEFAULT_FLAG_MINOR)) {
    stop("the peer registered write-protect or minor faults, which this server does not serve");
    return Outcome::kStop;
  }
  const uint64_t address = msg.arg.pagefault.address & ~(pageSize_ - 1);
  const GuestRegion* region = regionOf(address);
  if (!region) {
    stop(fmt::format("fault at {:#x}, outside the regions the peer declared", address));
    return Outcome::kStop;
  }
  const uint64_t offset = region->offset + (address - region->base);
  const size_t index = offset / pageSize_;
  const bool zero = usedUp_[index] || image_.isHole(offset, pageSize_);
  switch (const int err = place(address, zero ? nullptr : image_.page(offset))) {
    case 0:
      ++(zero ? stats_.pagesZeroed : stats_.pagesCopied);
      usedUp_[index] = true;
      return Outcome::kServed;
    case EEXIST: {
      // Served already for an earlier message; wake this fault's thread in case it still waits.
      ++stats_.pagesAlreadyPresent;
      usedUp_[index] = true;
      uffdio_range range{address, pageSize_};
      if (::ioctl(uffd_.get(), UFFDIO_WAKE, &range) != 0 && errno != ESRCH) {
        stop("UFFDIO_WAKE: " + errnoText(errno));
        return Outcome::kStop;
      }
      return Outcome::kServed;
    }
    case EAGAIN:
      return Outcome::kRetry;
    case ENOENT:  // the peer unmapped the page meanwhile; no thread waits for it any more
      return Outcome::kServed;
    case ESRCH:
      stop("the peer exited (its address space is gone)");
      return Outcome::kStop;
    default:
      stop(fmt::format("{} at {:#x}: {}", zero ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY", address,
                       errnoText(err)));
      return Outcome::kStop;
  }
}

int FaultHandler::place(uint64_t address, const std::byte* source) {
  if (!source && zeropageWorks_) {
    uffdio_zeropage zero{};
    zero.range = {address, pageSize_};
    return ::ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &zero) == 0 ? 0 : errno;
  }
  uffdio_copy copy{};
  copy.dst = address;
  copy.src = reinterpret_cast<uint64_t>(source ? source : zeros_.data());
  copy.len = pageSize_;
  return ::ioctl(uffd_.get(), UFFDIO_COPY, &copy) == 0 ? 0 : errno;
}

}  // namespace fcvm::uffd
