#include "base/error.h"

#include <cstring>

namespace fcvm {

std::string errnoText(int err) {
  char buf[256];
  // GNU strerror_r returns the message, not always in buf.
  return ::strerror_r(err, buf, sizeof buf);
}

SysError::SysError(int err, const std::string& context)
    : Error(context + ": " + errnoText(err)), code_(err) {}

}  // namespace fcvm
