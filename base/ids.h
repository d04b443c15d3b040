// Names and times the supervisor gives the things it makes: random ids, wall-clock stamps; and
// what every decoder accepts as an id or a name. The checks are inline (header-only), so the static
// guest agent uses them too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fcvm {

// 16 lowercase hex digits: what randomHexId() makes, and all a decoder takes as an id.
inline bool isHexId(std::string_view id) {
  return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// A VM's name, a snapshot's tag and the guest's hostname: 1-63 letters, digits, '_', '.' or '-',
// starting with a letter or digit.
inline bool isValidName(std::string_view name) {
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (name.empty() || name.size() > 63 || !alnum(name[0])) return false;
  for (char c : name) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') return false;
  }
  return true;
}

// 16 lowercase hex digits from the kernel's random pool: a VM's, snapshot's or serve's id.
std::string randomHexId();
// CLOCK_REALTIME in nanoseconds since the epoch, as records store times.
int64_t realtimeNs();

}  // namespace fcvm
