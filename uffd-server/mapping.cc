#include "uffd-server/mapping.h"

#include <sys/mman.h>

#include "base/error.h"

namespace fcvm::uffd {

Mapping::Mapping(size_t length, int prot, int flags, int fd, const char* what) {
  void* addr = ::mmap(nullptr, length, prot, flags, fd, 0);
  if (addr == MAP_FAILED) throw SysError(errno, fmt::format("mmap {} ({} bytes)", what, length));
  addr_ = addr;
  length_ = length;
}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    reset();
    addr_ = std::exchange(other.addr_, nullptr);
    length_ = std::exchange(other.length_, 0);
  }
  return *this;
}

void Mapping::reset() {
  if (addr_) ::munmap(addr_, length_);
  addr_ = nullptr;
  length_ = 0;
}

}  // namespace fcvm::uffd
