// Owns one memory mapping; unmapping is the destructor's single job.
#pragma once

#include <cstddef>
#include <utility>

namespace fcvm::uffd {

class Mapping {
 public:
  Mapping() = default;
  // mmap(nullptr, length, prot, flags, fd, 0); throws fcvm::SysError naming `what` on failure.
  Mapping(size_t length, int prot, int flags, int fd, const char* what);
  Mapping(Mapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  std::byte* data() const { return static_cast<std::byte*>(addr_); }
  size_t size() const { return length_; }
  explicit operator bool() const { return addr_ != nullptr; }

 private:
  void reset();

  void* addr_ = nullptr;
  size_t length_ = 0;
};

}  // namespace fcvm::uffd
