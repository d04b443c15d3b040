// Shared by the uffd-server tests and firecracker_peer: temporary directories, memory images with
// known pages, the userfaultfd set-up Firecracker does, and sending a message with descriptors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "base/unique_fd.h"
#include "uffd-server/uffd_handshake.h"

namespace fcvm::uffd::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// The byte at `index` of image page `page` when that page holds data: never a whole zero page.
std::byte patternByte(uint64_t page, uint64_t index);

// Writes an image of `pages` pages of `pageSize` bytes: page i holds the pattern, or is a hole
// (never written) when i % holeEvery == holeEvery - 1; holeEvery 0 means no holes.
void writeImage(const std::string& path, uint64_t pages, uint64_t pageSize, uint64_t holeEvery);

// What Firecracker does: userfaultfd(O_CLOEXEC | O_NONBLOCK), then UFFDIO_API with `features`.
// Throws fcvm::SysError saying why when the kernel refuses (no root, vm.unprivileged_userfaultfd).
// `userModeOnly` adds UFFD_USER_MODE_ONLY (faults from user mode only), which the kernel grants an
// unprivileged process even when vm.unprivileged_userfaultfd is 0.
UniqueFd createUserfaultfd(uint64_t features, bool userModeOnly = false);

// UFFDIO_REGISTER of [addr, addr + length) for missing-page faults.
void registerMissing(int uffd, const void* addr, size_t length);

// Firecracker's message for `regions` (field "page_size").
std::string encodeRegions(const std::vector<GuestRegion>& regions);

// One sendmsg of `bytes` with `fds` as SCM_RIGHTS (none when empty).
void sendWithFds(int socketFd, std::string_view bytes, const std::vector<int>& fds);

// A Unix stream socket listening at `path`.
UniqueFd listenUnix(const std::string& path);

// A Unix stream socket connected to `path`.
UniqueFd connectUnix(const std::string& path);

}  // namespace fcvm::uffd::testing
