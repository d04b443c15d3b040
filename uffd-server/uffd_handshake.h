// The one message Firecracker's `Uffd` memory backend sends when it restores a snapshot: on a
// Unix stream socket it connected to, a JSON array with one object per guest memory region, and
// the userfaultfd that covers those regions as SCM_RIGHTS in the same sendmsg. Everything in it
// comes from a process the server does not trust, so it is checked before anything is served.
//
// Wire format (Firecracker src/vmm/src/persist.rs, GuestRegionUffdMapping):
//   [{"base_host_virt_addr": u64, "size": u64, "offset": u64, "page_size": u64}, ...]
// Firecracker 1.7-1.11 send the page size as "page_size_kib", and later versions send both
// fields; despite its name that field holds bytes too (Firecracker's changelog says so), and it
// is read as bytes here. When both are present they must agree.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"

namespace fcvm::uffd {

// One guest memory region: the peer's [base, base + size) is backed by the image's
// [offset, offset + size).
struct GuestRegion {
  uint64_t base = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  uint64_t pageSize = 0;

  bool operator==(const GuestRegion&) const = default;
};

constexpr size_t kMaxGuestRegions = 64;
constexpr size_t kMaxHandshakeBytes = 64 * 1024;

// Decodes and validates the JSON part; pure, so it can be fuzzed. Returns the regions sorted by
// base. Throws fcvm::Error with a one-line reason when: the text is not JSON or not an array; it
// holds no region or more than kMaxGuestRegions; a region is not an object, lacks a field, has a
// field that is not an unsigned integer, repeats a field, or has a field not named above (a field
// this code does not know might change what the others mean, so it is refused rather than
// ignored); the page size differs from `expectedPageSize` (the snapshot's); base, size or offset
// is not page-aligned; size is 0; base + size or offset + size overflows; offset + size exceeds
// `imageSize`; two regions overlap in the peer's address space or in the image.
std::vector<GuestRegion> decodeHandshake(std::string_view json, uint64_t imageSize,
                                         uint64_t expectedPageSize);

struct Handshake {
  std::vector<GuestRegion> regions;  // as decodeHandshake returns them
  UniqueFd uffd;                     // checked to be a userfaultfd; set non-blocking, close-on-exec
  ucred peer{};                      // SO_PEERCRED: who connected
  // Readable once the peer process has exited. Watch it: a userfaultfd shows nothing when its
  // process dies (poll reports no event, read gives EAGAIN). From SO_PEERPIDFD (Linux 6.5+, no pid
  // reuse race), else pidfd_open(peer.pid).
  UniqueFd peerPidfd;
};

// Reads the handshake from a connected Unix stream socket (which it does not own), waiting at most
// `timeout` in all. Reads until the bytes form a complete JSON value, so a message that arrives in
// pieces is still read whole. Throws fcvm::Error (after closing every fd it received) when: the
// peer sends more than kMaxHandshakeBytes, closes early, or is too slow; no fd came ("missing
// userfaultfd"); more than one fd came, or so many that the control data was truncated; the fd is
// not a userfaultfd; decodeHandshake refuses the JSON.
Handshake readHandshake(int socketFd, uint64_t imageSize, uint64_t pageSize,
                        std::chrono::milliseconds timeout);

}  // namespace fcvm::uffd
