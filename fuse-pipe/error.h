// Errors of fuse-pipe: errno values on the wire, protocol violations, and failed system calls
// (base's SysError, whose message names the operation, its subject and the errno text).
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>

#include "base/error.h"

namespace fcvm::fusepipe {

// 0 on success, otherwise a positive errno value. Filesystem operations return this so that the
// server can put it on the wire unchanged.
using Errno = int;

// Throws SysError whose message reads "OPERATION SUBJECT: errno text".
[[noreturn]] inline void throwErrno(std::string_view operation, std::string_view subject,
                                    int err = errno) {
  std::string context(operation);
  if (!subject.empty()) {
    context += ' ';
    context += subject;
  }
  throw SysError(err, context);
}

// Thrown when the peer breaks the protocol (bad length, bad handshake, unknown reply id).
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace fcvm::fusepipe
