#include "uffd-server/memory_image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>

#include "base/error.h"

namespace fcvm::uffd {
namespace {

uint64_t checkedImageSize(int fd, uint64_t pageSize, const std::string& name) {
  const uint64_t systemPage = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (!std::has_single_bit(pageSize) || pageSize < systemPage) {
    throw Error(fmt::format("memory image {}: page size {} is not a power of two of at least {}",
                            name, pageSize, systemPage));
  }
  struct stat st {};
  checkSys(::fstat(fd, &st), "stat memory image {}", name);
  if (!S_ISREG(st.st_mode)) throw Error(fmt::format("memory image {}: not a regular file", name));
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0 || size % pageSize != 0) {
    throw Error(
        fmt::format("memory image {}: size {} is not a positive multiple of the page size {}", name,
                    size, pageSize));
  }
  return size;
}

}  // namespace

MemoryImage MemoryImage::open(const std::string& path, uint64_t pageSize) {
  UniqueFd fd(retryEintr([&] { return ::open(path.c_str(), O_RDONLY | O_CLOEXEC); }));
  if (!fd) throw SysError(errno, fmt::format("open memory image {}", path));
  return MemoryImage(std::move(fd), pageSize, path);
}

MemoryImage::MemoryImage(UniqueFd fd, uint64_t pageSize, std::string name)
    : fd_(std::move(fd)), pageSize_(pageSize), name_(std::move(name)) {
  const uint64_t size = checkedImageSize(fd_.get(), pageSize_, name_);
  // Shared and read-only: every handler reads the page cache itself, nothing is copied twice.
  mapping_ = Mapping(size, PROT_READ, MAP_SHARED, fd_.get(), name_.c_str());
}

const std::byte* MemoryImage::page(uint64_t offset) const {
  if (offset % pageSize_ != 0 || offset >= size() || size() - offset < pageSize_) {
    throw Error(fmt::format("memory image {}: no page at offset {:#x} (size {:#x})", name_, offset,
                            size()));
  }
  return mapping_.data() + offset;
}

bool MemoryImage::isHole(uint64_t offset, uint64_t length) const {
  if (offset >= size() || length == 0 || size() - offset < length) {
    throw Error(
        fmt::format("memory image {}: range {:#x}+{:#x} outside the image", name_, offset, length));
  }
  // The returned position is all we use, so concurrent callers sharing the fd's offset are fine.
  const off_t data = ::lseek(fd_.get(), static_cast<off_t>(offset), SEEK_DATA);
  if (data == -1) {
    if (errno == ENXIO) return true;  // no data from offset to the end of the file
    throw SysError(errno, fmt::format("seek data in memory image {}", name_));
  }
  return static_cast<uint64_t>(data) >= offset + length;
}

void MemoryImage::lockResident() {
  if (::mlock(mapping_.data(), mapping_.size()) != 0) {
    throw SysError(
        errno, fmt::format("keep memory image {} resident (mlock {} MiB; RLIMIT_MEMLOCK?)", name_,
                           mapping_.size() >> 20));
  }
}

}  // namespace fcvm::uffd
