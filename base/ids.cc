#include "base/ids.h"

#include <sys/random.h>

#include <chrono>

#include "base/error.h"

namespace fcvm {

std::string randomHexId() {
  uint64_t bits = 0;
  checkSys(::getrandom(&bits, sizeof bits, 0), "getrandom");
  return fmt::format("{:016x}", bits);
}

int64_t realtimeNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fcvm
