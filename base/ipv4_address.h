// What every decoder that takes an IPv4 address from a client, a guest or a file accepts: a
// dotted quad and nothing else. inet_pton reads a C string, so a text with a NUL inside
// ("1.2.3.4\0\n-A ...") would pass on its first part alone and carry the rest into whatever is
// built from it (iptables-restore input, resolv.conf); the whole text is checked here instead.
// Header-only, so the static guest agent uses it too.
#pragma once

#include <arpa/inet.h>

#include <cstring>
#include <string_view>

namespace fcvm {

inline bool isIpv4Address(std::string_view text) {
  constexpr size_t kLongest = 15;  // 255.255.255.255
  if (text.empty() || text.size() > kLongest || text.find('\0') != std::string_view::npos) {
    return false;
  }
  char copy[kLongest + 1] = {};
  std::memcpy(copy, text.data(), text.size());
  in_addr addr{};
  return ::inet_pton(AF_INET, copy, &addr) == 1;
}

}  // namespace fcvm
