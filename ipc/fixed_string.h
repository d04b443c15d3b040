// A NUL-terminated string of at most N-1 bytes stored inline, so records that hold it are
// trivially copyable and can live in shared memory. Bytes read from shared memory are untrusted:
// view() never reads past N, valid() checks termination.
#pragma once

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <string_view>

namespace fcvm::ipc {

template <size_t N>
struct FixedString {
  static_assert(N % 8 == 0, "keep records 8-byte aligned");
  std::array<char, N> bytes{};

  static constexpr size_t capacity() { return N - 1; }

  // Returns false (and stores nothing) when s does not fit or holds a NUL.
  bool assign(std::string_view s) {
    if (s.size() > capacity() || s.find('\0') != std::string_view::npos) return false;
    bytes.fill('\0');
    std::copy(s.begin(), s.end(), bytes.begin());
    return true;
  }
  // Keeps the first capacity() bytes; for free text such as a failure reason.
  void assignTruncated(std::string_view s) {
    s = s.substr(0, std::min(s.size(), capacity()));
    s = s.substr(0, s.find('\0'));
    bytes.fill('\0');
    std::copy(s.begin(), s.end(), bytes.begin());
  }
  std::string_view view() const { return {bytes.data(), ::strnlen(bytes.data(), N)}; }
  std::string str() const { return std::string(view()); }
  bool valid() const { return ::memchr(bytes.data(), '\0', N) != nullptr; }
  bool empty() const { return bytes[0] == '\0'; }
};

}  // namespace fcvm::ipc
