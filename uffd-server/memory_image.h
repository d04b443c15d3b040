// A snapshot's guest-memory file, mapped read-only: the source of every page the server hands to a
// clone. Constant after construction, so any number of fault handlers on any threads may share one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/unique_fd.h"
#include "uffd-server/mapping.h"

namespace fcvm::uffd {

class MemoryImage {
 public:
  // Opens `path` read-only. Throws fcvm::Error when it cannot be opened or mapped, is empty, or its
  // size is not a multiple of `pageSize` (a power of two, at least the system page size).
  static MemoryImage open(const std::string& path, uint64_t pageSize);

  // The same for a file already open for reading (e.g. inherited from the supervisor, so that no
  // other user can reach the image by path). `name` is used in error messages.
  MemoryImage(UniqueFd fd, uint64_t pageSize, std::string name);

  uint64_t size() const { return mapping_.size(); }
  uint64_t pageSize() const { return pageSize_; }
  const std::string& name() const { return name_; }

  // The page starting at `offset`. Throws fcvm::Error unless `offset` is page-aligned and the whole
  // page lies inside the image. The memory is only read by the kernel in UFFDIO_COPY: touching it
  // directly would SIGBUS this process if someone truncated the file.
  const std::byte* page(uint64_t offset) const;

  // True when [offset, offset + length) holds no data in the file (never written, so it reads as
  // zeros): such pages are answered with a zero page instead of a copy. On filesystems without
  // hole reporting every range counts as data, which is merely slower.
  bool isHole(uint64_t offset, uint64_t length) const;

  // mlock()s the whole image so that serving a fault never waits for the disk. Throws
  // fcvm::SysError (typically RLIMIT_MEMLOCK too small); the image stays usable either way, so
  // callers may log the failure and go on.
  void lockResident();

 private:
  UniqueFd fd_;
  uint64_t pageSize_;
  std::string name_;
  Mapping mapping_;
};

}  // namespace fcvm::uffd
